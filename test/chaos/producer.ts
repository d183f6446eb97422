/**
 * The chaos suite's producer and its truth. It posts NDJSON chunks to the gateway at a steady rate,
 * with exact duplicates, re-sends of clicks acknowledged earlier (across rounds) and late events,
 * and retries a failed post with the same body until it is acknowledged, as a real client does.
 *
 * The truth is built from the producer's side only: a click enters it when the POST carrying it
 * answered 200 and did not list its line in `rejected`. Nothing the service reports is used.
 */
import { rng, Truth, zipf, type GenClick } from '../helpers/click-stream.ts';
import { pace } from '../helpers/wait.ts';

export interface ProducerOptions {
  /** Gateway base URL (read at each post). */
  url: () => string;
  /** Target clicks per second. @default 1500 */
  ratePerSec?: number;
  /** Clicks per POST. @default 150 */
  chunk?: number;
  /** Distinct ads (Zipf, ad-0 the hottest). @default 100 */
  ads?: number;
  /**
   * How far event time trails the wall clock. Past the allowed lateness plus the idle timeout plus
   * one minute, so once the load pauses every minute it touched closes and can be checked final.
   * @default 75000
   */
  eventDelayMs?: number;
}

/** Producer figures, for progress and the summary. */
export interface ProducerStats {
  /** Lines posted and acknowledged (duplicates included). */
  ackedLines: number;
  /** Lines the service refused in an acknowledged POST (none expected). */
  rejected: number;
  posts: number;
  retries: number;
}

const LATE_FRACTION = 0.03;
const MAX_LATE_MS = 4 * 60_000;
const DUP_FRACTION = 0.02;
const RESEND_FRACTION = 0.01;
/** Clicks kept for re-sends: about the last three rounds' traffic. */
const RECENT = 50_000;

export class ChaosProducer {
  readonly truth = new Truth();
  readonly stats: ProducerStats = { ackedLines: 0, rejected: 0, posts: 0, retries: 0 };
  /** Recent post failures (retried), newest last. */
  readonly errors: string[] = [];
  private readonly recent: GenClick[] = [];
  private recentAt = 0;
  private readonly rate: number;
  private readonly chunk: number;
  private readonly ads: number;
  private readonly delay: number;
  private next = 0;
  private loop: Promise<void> | undefined;
  private producing = false;
  private abandoned = false;
  /** Event time of the newest click acknowledged so far. */
  maxTs = 0;
  minTs = Number.POSITIVE_INFINITY;

  constructor(
    private readonly runId: string,
    private readonly opts: ProducerOptions,
  ) {
    this.rate = opts.ratePerSec ?? 1500;
    this.chunk = opts.chunk ?? 150;
    this.ads = opts.ads ?? 100;
    this.delay = opts.eventDelayMs ?? 75_000;
  }

  /** Starts posting with content drawn from `seed` (one seed per round). */
  start(seed: number): void {
    if (this.loop) throw new Error('producer already running');
    this.producing = true;
    this.abandoned = false;
    this.loop = this.run(seed);
  }

  /**
   * Stops making new chunks and resolves once the chunk in flight is acknowledged; false when it
   * still was not after `timeoutMs` (then it is abandoned, and its clicks never enter the truth).
   */
  async drain(timeoutMs: number): Promise<boolean> {
    this.producing = false;
    const loop = this.loop;
    if (!loop) return true;
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<false>((r) => (timer = setTimeout(() => r(false), timeoutMs)));
    const ok = await Promise.race([loop.then(() => true), timedOut]);
    clearTimeout(timer);
    if (!ok) this.abandoned = true;
    await loop;
    this.loop = undefined;
    return ok;
  }

  private async run(seed: number): Promise<void> {
    const rand = rng(seed);
    const pick = zipf(this.ads - 1, 1.1, rand);
    const periodMs = (1000 * this.chunk) / this.rate;
    while (this.producing) {
      const t0 = Date.now();
      const lines: string[] = [];
      const clicks: GenClick[] = [];
      for (let i = 0; i < this.chunk; i++) {
        const c = this.click(rand, pick, t0);
        clicks.push(c);
        lines.push(JSON.stringify(c));
        if (rand() < DUP_FRACTION) {
          clicks.push(c);
          lines.push(JSON.stringify(c));
        }
        if (rand() < RESEND_FRACTION && this.recent.length > 0) {
          const old = this.recent[Math.floor(rand() * this.recent.length)]!;
          clicks.push(old);
          lines.push(JSON.stringify(old));
        }
      }
      await this.postUntilAcked(lines, clicks);
      const wait = t0 + periodMs - Date.now();
      if (wait > 0 && this.producing) await pace(wait); // the load's rate
    }
  }

  private click(rand: () => number, pick: () => number, now: number): GenClick {
    const late = rand() < LATE_FRACTION ? Math.floor(rand() * MAX_LATE_MS) : 0;
    const ad = rand() < 0.2 ? 'ad-0' : `ad-${1 + pick()}`;
    return {
      click_id: `${this.runId}-${this.next++}`,
      ad_id: ad,
      ts: now - this.delay - Math.floor(rand() * 2000) - late,
      user_id: `u${Math.floor(rand() * 5000)}`,
      ip: `10.${Math.floor(rand() * 256)}.${Math.floor(rand() * 256)}.${Math.floor(rand() * 256)}`,
      country: ['US', 'DE', 'FR', 'GB', 'JP'][Math.floor(rand() * 5)]!,
    };
  }

  /** Posts one body until a 200, then adds its accepted clicks to the truth. */
  private async postUntilAcked(lines: string[], clicks: GenClick[]): Promise<void> {
    const body = lines.join('\n');
    for (;;) {
      if (this.abandoned) return;
      this.stats.posts++;
      try {
        const res = await fetch(`${this.opts.url()}/v1/clicks`, {
          method: 'POST',
          headers: { 'content-type': 'application/x-ndjson' },
          body,
          signal: AbortSignal.timeout(30_000),
        });
        const text = await res.text();
        if (res.status === 200) {
          this.acked(clicks, JSON.parse(text) as { accepted: number; rejected: Array<{ line: number }> });
          return;
        }
        this.note(`${res.status} ${text.slice(0, 160)}`);
      } catch (err) {
        this.note(String((err as Error).cause ?? err));
      }
      this.stats.retries++;
      await pace(200); // retry backoff
    }
  }

  private acked(clicks: GenClick[], reply: { accepted: number; rejected: Array<{ line: number }> }): void {
    // `line` is 1-based and there are no blank lines: line i is clicks[i - 1].
    const refused = new Set(reply.rejected.map((r) => r.line - 1));
    this.stats.rejected += refused.size;
    this.stats.ackedLines += clicks.length - refused.size;
    const accepted = clicks.filter((_, i) => !refused.has(i));
    this.truth.add(accepted);
    for (const c of accepted) {
      if (c.ts > this.maxTs) this.maxTs = c.ts;
      if (c.ts < this.minTs) this.minTs = c.ts;
      // A ring: the oldest kept click is overwritten.
      if (this.recent.length < RECENT) this.recent.push(c);
      else this.recent[this.recentAt++ % RECENT] = c;
    }
  }

  private note(e: string): void {
    this.errors.push(`${new Date().toISOString()} ${e}`);
    if (this.errors.length > 20) this.errors.shift();
  }
}
