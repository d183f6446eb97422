import { DeliverPolicy, jetstream, jetstreamManager, type Consumer, type JetStreamClient, type JsMsg } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { AdaggError, ErrorCode } from '../errors.ts';
import { decodeBatch } from '../model/batch-codec.ts';
import { isControlMessage } from '../model/hot-messages.ts';
import { isRiskMessage } from '../model/risk-messages.ts';
import type { Click } from '../model/click.ts';
import type { Topology } from './topology.ts';

/**
 * A bounded, read-only scan of the raw clicks stream by stream (store) time, for questions the shard
 * actors do not pre-aggregate. It reads with its own ephemeral ordered consumers and never touches
 * the actors' progress.
 */

export interface RawScanRequest {
  /** Reads only this shard's subject; every shard's (`<prefix>.clicks.*`) when undefined. */
  shard?: number | undefined;
  /**
   * Reads this subject filter instead (e.g. every subject of the stream, or one hot ad's child
   * subjects); batches of hot child subjects then have shard -1 unless `shard` is given.
   */
  subject?: string | undefined;
  /** Stream time window of the messages to read, epoch ms, both ends inclusive. */
  startMs: number;
  endMs: number;
  /**
   * Most messages the scan may read. When the window holds more, the scan ends with
   * `stopped: 'limit'` (without reading anything if the count known at start already exceeds it).
   */
  maxMessages: number;
  /**
   * Most clicks the scan may read (a message holds up to thousands): the scan ends with
   * `stopped: 'limit'` before the message that would exceed it. Unset: no limit.
   */
  maxClicks?: number | undefined;
  /** Most message bytes the scan may read, likewise. Unset: no limit. */
  maxBytes?: number | undefined;
  /** Aborting ends the scan: the returned promise rejects with `signal.reason`. */
  signal?: AbortSignal | undefined;
  /** Called for every message read, before its batch goes to `onBatch` (cheap: copy the fields, no I/O). */
  onProgress?: ((p: RawScanProgress) => void) | undefined;
  /** Messages per pull request. @default 256 */
  fetchSize?: number | undefined;
}

export interface RawBatch {
  /** Stream sequence of the message. */
  seq: number;
  shard: number;
  /** When JetStream stored the message (epoch ms). */
  storedMs: number;
  clicks: Click[];
}

export interface RawScanProgress {
  scannedMessages: number;
  /**
   * Messages of the scanned subject(s) stored in the window up to the stream's last sequence at
   * start (counted when the scan starts; an upper bound if the stream grows meanwhile).
   */
  totalMessages: number;
  scannedClicks: number;
  /** Message bytes read so far. */
  scannedBytes?: number | undefined;
}

export interface RawScanResult extends RawScanProgress {
  /**
   * Why the scan ended: `end_time` when it reached the last message stored at or before `endMs`
   * (or the first one after it), `caught_up` at the stream's last sequence taken at start (or when
   * nothing more is pending), `empty` when the window holds no message, `limit` when it holds more
   * than `maxMessages` (or more clicks or bytes than `maxClicks` / `maxBytes`: see `limitedBy`).
   */
  stopped: 'end_time' | 'caught_up' | 'empty' | 'limit';
  /** Which limit ended the scan, when `stopped` is `limit`. */
  limitedBy?: 'messages' | 'clicks' | 'bytes' | undefined;
  /** First stream sequence at or after `startMs` and the stream's last sequence at start. */
  fromSeq: number;
  lastSeq: number;
}

interface TimeProbe {
  /** First stream sequence stored at or after the time (last + 1 when none). */
  seq: number;
  /** Messages of the subject from `seq` to the end of the stream. */
  pending: number;
}

/**
 * Resolves a stream time to a sequence and a pending count with a `by_start_time` ordered consumer,
 * deleted at once. A fresh consumer reports `delivered.stream_seq` = its start sequence − 1.
 *
 * The scan itself then reads from that sequence with a `by_start_sequence` ordered consumer: the
 * client (@nats-io/jetstream 3.4) recreates an ordered consumer after a gap or missed heartbeats with
 * its original config plus `deliver_policy: by_start_sequence`, which the server refuses while
 * `opt_start_time` is still set, so a `by_start_time` ordered consumer never recovers from a reset.
 */
async function probeTime(js: JetStreamClient, stream: string, subject: string, ms: number): Promise<TimeProbe> {
  const c = await js.consumers.get(stream, {
    filter_subjects: subject,
    deliver_policy: DeliverPolicy.StartTime,
    opt_start_time: new Date(Math.max(0, ms)).toISOString(),
  });
  const ci = await c.info(true);
  await c.delete().catch(() => undefined);
  return { seq: ci.delivered.stream_seq + 1, pending: ci.num_pending };
}

/** Consecutive failed pulls before the scan gives up. */
const MAX_FETCH_FAILURES = 3;

/** Wraps errors of the message handler so they are not mistaken for a failed pull (and retried). */
class HandlerFailure {
  constructor(readonly error: unknown) {}
}

function shardOfSubject(subject: string): number {
  // `<prefix>.hot.<adkey>.<gen>.<k>`: a hot child subject belongs to no one shard here.
  if (subject.split('.', 2)[1] === 'hot') return -1;
  return Number(subject.slice(subject.lastIndexOf('.') + 1));
}

/**
 * Reads every message of the subject(s) stored in `[startMs, endMs]` in stream order, decodes it and
 * awaits `onBatch` for it. Stops at the first message stored after `endMs`, or once caught up with the
 * stream's last sequence taken at start (messages stored later are not read). A message that does not
 * decode fails the scan with ADAGG_E_BATCH_CORRUPT naming its sequence.
 */
export async function scanRawClicks(
  nc: NatsConnection,
  topo: Topology,
  req: RawScanRequest,
  onBatch: (b: RawBatch) => void | Promise<void>,
): Promise<RawScanResult> {
  req.signal?.throwIfAborted();
  const subject = req.subject ?? (req.shard === undefined ? topo.clickSubjects : topo.clickSubject(req.shard));
  const plan = await planScan(nc, topo.clicksStream, subject, req);
  req.onProgress?.(plan.progress);
  req.signal?.throwIfAborted();
  const early = plan.earlyEnd();
  if (early) return plan.result(early);
  return new RawScan(jetstream(nc), topo.clicksStream, subject, req, plan, onBatch).run();
}

/** Where a scan starts and stops, found before reading anything. */
class ScanPlan {
  readonly progress: RawScanProgress;
  constructor(
    /** First sequence stored at or after startMs. */
    readonly start: TimeProbe,
    /** First sequence stored after endMs. */
    readonly after: TimeProbe,
    /** The stream's last sequence at start. */
    readonly lastSeq: number,
    private readonly maxMessages: number,
  ) {
    this.progress = { scannedMessages: 0, totalMessages: Math.max(0, start.pending - after.pending), scannedClicks: 0, scannedBytes: 0 };
  }

  /** Messages at or after `after.seq` were stored after endMs: the scan never needs them. */
  get stopSeq(): number {
    return Math.min(this.lastSeq, this.after.seq - 1);
  }

  /** Why the scan ends before reading anything, if it does. */
  earlyEnd(): RawScanResult['stopped'] | undefined {
    if (this.progress.totalMessages === 0 || this.start.seq > this.lastSeq || this.start.seq >= this.after.seq) return 'empty';
    if (this.progress.totalMessages > this.maxMessages) return 'limit';
    return undefined;
  }

  /** Which limit ended the scan (messages when the window's count at start already exceeded it). */
  limitedBy: RawScanResult['limitedBy'] = 'messages';

  result(stopped: RawScanResult['stopped']): RawScanResult {
    const limited = stopped === 'limit' ? { limitedBy: this.limitedBy } : {};
    return { ...this.progress, stopped, ...limited, fromSeq: this.start.seq, lastSeq: this.lastSeq };
  }
}

async function planScan(nc: NatsConnection, stream: string, subject: string, req: RawScanRequest): Promise<ScanPlan> {
  const js = jetstream(nc);
  const jsm = await jetstreamManager(nc);
  // End before start: both counts then include the messages stored between the two probes after the
  // window, so the difference can only over-count (by messages stored within these milliseconds).
  const after = await probeTime(js, stream, subject, req.endMs + 1);
  const start = await probeTime(js, stream, subject, req.startMs);
  const lastSeq = (await jsm.streams.info(stream)).state.last_seq;
  return new ScanPlan(start, after, lastSeq, req.maxMessages);
}

/** One scan's reading loop: pulls from a `by_start_sequence` ordered consumer until the plan's end. */
class RawScan {
  private stop: (() => void) | undefined;
  private failures = 0;

  constructor(
    private readonly js: JetStreamClient,
    private readonly stream: string,
    private readonly subject: string,
    private readonly req: RawScanRequest,
    private readonly plan: ScanPlan,
    private readonly onBatch: (b: RawBatch) => void | Promise<void>,
  ) {}

  async run(): Promise<RawScanResult> {
    const signal = this.req.signal;
    const consumer: Consumer = await this.js.consumers.get(this.stream, {
      filter_subjects: this.subject,
      deliver_policy: DeliverPolicy.StartSequence,
      opt_start_seq: this.plan.start.seq,
    });
    const onAbort = (): void => this.stop?.();
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      if ((await consumer.info(true)).num_pending === 0) return this.plan.result('empty');
      for (;;) {
        signal?.throwIfAborted();
        const pulled = await this.pull(consumer);
        if (pulled === 'retry') continue;
        signal?.throwIfAborted();
        if (pulled.ended) return this.plan.result(pulled.ended);
        // A pull that brought nothing: no message of the subject is pending any more.
        if (pulled.got === 0) return this.plan.result('caught_up');
      }
    } finally {
      signal?.removeEventListener('abort', onAbort);
      await consumer.delete().catch(() => undefined);
    }
  }

  /** One pull request: how many messages it brought and whether the scan ends; `retry` after a failed pull. */
  private async pull(consumer: Consumer): Promise<{ got: number; ended: RawScanResult['stopped'] | undefined } | 'retry'> {
    let got = 0;
    let ended: RawScanResult['stopped'] | undefined;
    try {
      const iter = await consumer.fetch({ max_messages: this.req.fetchSize ?? 256, expires: 5000 });
      this.stop = () => void iter.stop();
      try {
        for await (const m of iter) {
          got++;
          ended = await this.handle(m).catch((err: unknown) => Promise.reject(new HandlerFailure(err)));
          this.failures = 0;
          if (ended) break;
        }
      } finally {
        this.stop = undefined;
        if (ended) iter.stop();
      }
    } catch (err) {
      if (err instanceof HandlerFailure) throw err.error;
      this.req.signal?.throwIfAborted();
      // A failed pull (server restart, missed heartbeats): the ordered consumer resumes after the
      // last message read on the next fetch.
      if (++this.failures > MAX_FETCH_FAILURES) throw err;
      await new Promise((r) => setTimeout(r, 250 * this.failures));
      return 'retry';
    }
    return { got, ended };
  }

  private limit(by: NonNullable<RawScanResult['limitedBy']>): 'limit' {
    this.plan.limitedBy = by;
    return 'limit';
  }

  /** Reads one message; returns why the scan ends after it, if it does. */
  private async handle(m: JsMsg): Promise<RawScanResult['stopped'] | undefined> {
    const { req, plan } = this;
    req.signal?.throwIfAborted();
    if (m.seq > plan.lastSeq) return 'caught_up';
    const storedMs = Math.floor(m.info.timestampNanos / 1_000_000);
    if (storedMs > req.endMs) return 'end_time';
    if (plan.progress.scannedMessages >= req.maxMessages) return this.limit('messages');
    // Bytes before decoding: a message over the byte budget is never decoded.
    const bytes = (plan.progress.scannedBytes ?? 0) + m.data.length;
    if (req.maxBytes !== undefined && bytes > req.maxBytes) return this.limit('bytes');
    let clicks: Click[];
    try {
      // Hot-ad control messages (splits, child reports) and risk messages (rules, presence,
      // verdicts) carry no clicks of their own: a query job counts every deduplicated click.
      clicks = isControlMessage(m.data) || isRiskMessage(m.data) ? [] : decodeBatch(m.data);
    } catch (err) {
      const msg = err instanceof Error ? err.message : String(err);
      throw new AdaggError(ErrorCode.BatchCorrupt, `stream ${this.stream} seq ${m.seq}: ${msg}`, { cause: err, details: { seq: m.seq } });
    }
    if (req.maxClicks !== undefined && plan.progress.scannedClicks + clicks.length > req.maxClicks) return this.limit('clicks');
    plan.progress.scannedMessages++;
    plan.progress.scannedClicks += clicks.length;
    plan.progress.scannedBytes = bytes;
    req.onProgress?.(plan.progress);
    await this.onBatch({ seq: m.seq, shard: req.shard ?? shardOfSubject(m.subject), storedMs, clicks });
    if (m.seq >= plan.stopSeq || m.info.pending === 0) return m.seq < plan.lastSeq && m.seq >= plan.after.seq - 1 ? 'end_time' : 'caught_up';
    return undefined;
  }
}
