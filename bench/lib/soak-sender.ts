/**
 * A rate-holding HTTP sender for the soak scenario: every `tickMs` it owes
 * `rate × (now − t0)` clicks minus what it already sent, and posts what it owes as NDJSON
 * (`POST /v1/clicks`), split over a few keep-alive connections (Node's fetch pools and reuses
 * them; each lane keeps one request in flight, so there are at most `lanes` connections).
 * Event time is the wall clock at generation. A lane still waiting for its reply skips the tick
 * and takes a larger share next time, so short stalls are caught up; what is owed beyond
 * `maxBacklogSec` of clicks is dropped (never sent) and counted, so the sender never bursts by
 * more than that after the service stalled.
 */
import type { Click } from '../../src/model/click.ts';
import type { Workload } from './workload.ts';

export interface SenderOptions {
  url: string;
  rate: number;
  lanes: number;
  /** @default 100 */
  tickMs?: number;
  /** @default 3 */
  maxBacklogSec?: number;
  /** @default 30000 */
  requestTimeoutMs?: number;
  /** Largest body, in lines (the service refuses more than ADAGG_MAX_LINES = 100,000). @default 20000 */
  maxLines?: number;
}

/** Cumulative counters; a sample is the difference of two copies. */
export interface SenderStats {
  /** Clicks put into a request. */
  posted: number;
  /** Clicks the service accepted (its reply's `accepted`). */
  accepted: number;
  /** Lines the service refused (its reply's `rejected`). */
  rejected: number;
  /** Clicks in requests that failed (network error, timeout, non-200). */
  failed: number;
  /** Clicks owed beyond the backlog bound, never sent. */
  dropped: number;
  requests: number;
  failedRequests: number;
  /** NDJSON bytes of all requests / of requests answered 200. */
  bytesPosted: number;
  bytesAccepted: number;
  /** Sum and count of request round trips (ms) answered 200. */
  requestMsSum: number;
  requestMsCount: number;
  /** Largest backlog (clicks owed at a tick, after this tick's share) since the last `takeMaxOwed()`. */
  maxOwed: number;
  firstError: string | null;
  lastError: string | null;
}

/** One NDJSON line; fields in a fixed order (click_id, ad_id, ts, user_id, ip, country). */
export function ndjsonLine(c: Click): string {
  return JSON.stringify({ click_id: c.click_id, ad_id: c.ad_id, ts: c.ts, user_id: c.user_id, ip: c.ip, country: c.country });
}

export class RateSender {
  readonly stats: SenderStats = {
    posted: 0,
    accepted: 0,
    rejected: 0,
    failed: 0,
    dropped: 0,
    requests: 0,
    failedRequests: 0,
    bytesPosted: 0,
    bytesAccepted: 0,
    requestMsSum: 0,
    requestMsCount: 0,
    maxOwed: 0,
    firstError: null,
    lastError: null,
  };
  t0 = 0;
  private timer: NodeJS.Timeout | undefined;
  private readonly busy: boolean[];
  private readonly inflight = new Set<Promise<void>>();
  private readonly o: Required<SenderOptions>;
  private readonly endpoint: string;

  constructor(
    private readonly workload: Workload,
    opts: SenderOptions,
    /** Called (at most once per second) when the backlog passes one second of clicks or clicks are dropped. */
    private readonly onBehind: (owedClicks: number, droppedTotal: number) => void = () => undefined,
  ) {
    this.o = { tickMs: 100, maxBacklogSec: 3, requestTimeoutMs: 30_000, maxLines: 20_000, ...opts };
    this.endpoint = `${opts.url}/v1/clicks`;
    this.busy = Array.from({ length: this.o.lanes }, () => false);
  }

  start(): void {
    if (this.timer) throw new Error('RateSender already started');
    this.t0 = Date.now();
    this.timer = setInterval(() => this.tick(), this.o.tickMs);
  }

  /** Stops ticking and waits for the requests in flight (each bounded by its timeout). */
  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await Promise.allSettled([...this.inflight]);
  }

  /** The largest backlog since the previous call, and resets it. */
  takeMaxOwed(): number {
    const m = this.stats.maxOwed;
    this.stats.maxOwed = 0;
    return m;
  }

  private lastBehindLog = 0;

  private tick(): void {
    const s = this.stats;
    const now = Date.now();
    const target = Math.floor((this.o.rate * (now - this.t0)) / 1000);
    let owed = target - s.posted - s.dropped;
    const cap = Math.ceil(this.o.rate * this.o.maxBacklogSec);
    if (owed > cap) {
      s.dropped += owed - cap;
      owed = cap;
    }
    if (owed > s.maxOwed) s.maxOwed = owed;
    if (owed > this.o.rate && now - this.lastBehindLog >= 1000) {
      this.lastBehindLog = now;
      this.onBehind(owed, s.dropped);
    }
    const idle = this.busy.flatMap((b, i) => (b ? [] : [i]));
    if (owed <= 0 || idle.length === 0) return;
    const share = Math.min(this.o.maxLines, Math.ceil(owed / idle.length));
    for (const lane of idle) {
      const n = Math.min(share, owed);
      if (n <= 0) break;
      const clicks = this.workload.take(n);
      if (clicks.length === 0) return; // workload exhausted (sized with a margin; should not happen)
      owed -= clicks.length;
      this.post(lane, clicks);
    }
  }

  private post(lane: number, clicks: Click[]): void {
    const s = this.stats;
    const body = clicks.map(ndjsonLine).join('\n');
    const bytes = Buffer.byteLength(body);
    s.posted += clicks.length;
    s.bytesPosted += bytes;
    s.requests++;
    this.busy[lane] = true;
    const t = Date.now();
    const fail = (why: string): void => {
      s.failed += clicks.length;
      s.failedRequests++;
      s.firstError ??= why;
      s.lastError = why;
    };
    const p = (async () => {
      try {
        const res = await fetch(this.endpoint, {
          method: 'POST',
          headers: { 'content-type': 'application/x-ndjson' },
          body,
          signal: AbortSignal.timeout(this.o.requestTimeoutMs),
        });
        const text = await res.text();
        if (res.status !== 200) return fail(`HTTP ${res.status} ${text.slice(0, 200)}`);
        const reply = JSON.parse(text) as { accepted?: number; rejected?: unknown[] };
        s.accepted += reply.accepted ?? 0;
        s.rejected += reply.rejected?.length ?? 0;
        s.bytesAccepted += bytes;
        s.requestMsSum += Date.now() - t;
        s.requestMsCount++;
      } catch (err) {
        const e = err as Error & { cause?: { code?: string } };
        fail(`${e.name}: ${e.message}${e.cause?.code ? ` (${e.cause.code})` : ''}`);
      } finally {
        this.busy[lane] = false;
      }
    })();
    this.inflight.add(p);
    void p.finally(() => this.inflight.delete(p));
  }
}
