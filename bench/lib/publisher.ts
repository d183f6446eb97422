/**
 * Publishing through the producer API (ClickProducer) with a window of concurrent publish calls,
 * recording every PubAck (shard, stream sequence, events in the message) so the bench knows the
 * last sequence of each shard subject and how many events a committed sequence covers.
 */
import type { PubAck } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import type { Click } from '../../src/model/click.ts';
import { ClickProducer } from '../../src/runtime/producer.ts';
import type { Topology } from '../../src/runtime/topology.ts';
import type { Workload } from './workload.ts';

/** Rows in an encoded batch `[version, rows]`, read from the MessagePack array header (no decode). */
export function rowsInBatch(data: Uint8Array): number {
  // data[0] = fixarray(2), data[1] = version (positive fixint), data[2..] = array header of rows.
  const h = data[2]!;
  if ((h & 0xf0) === 0x90) return h & 0x0f;
  if (h === 0xdc) return (data[3]! << 8) | data[4]!;
  if (h === 0xdd) return ((data[3]! << 24) | (data[4]! << 16) | (data[5]! << 8) | data[6]!) >>> 0;
  return 0;
}

/** Per shard: the acknowledged messages (stream seq → events), for lag and end-of-run detection. */
export class AckTracker {
  ackedEvents = 0;
  ackedMessages = 0;
  duplicateMessages = 0;
  /** Highest acknowledged stream sequence per shard (0 = none). */
  readonly lastSeq: number[];
  private readonly acks: Array<Array<{ seq: number; n: number }>>;
  private readonly dirty: boolean[];
  private readonly prefix: number[][] = [];

  constructor(readonly shards: number) {
    this.lastSeq = new Array<number>(shards).fill(0);
    this.acks = Array.from({ length: shards }, () => []);
    this.dirty = new Array<boolean>(shards).fill(false);
  }

  onAck(shard: number, ack: PubAck, events: number): void {
    if (ack.duplicate) {
      this.duplicateMessages++;
      return;
    }
    this.ackedEvents += events;
    this.ackedMessages++;
    this.acks[shard]!.push({ seq: ack.seq, n: events });
    this.dirty[shard] = true;
    if (ack.seq > this.lastSeq[shard]!) this.lastSeq[shard] = ack.seq;
  }

  /** Events in messages with sequence <= seqs[shard], summed over shards. */
  eventsThrough(seqs: readonly number[]): number {
    let total = 0;
    for (let s = 0; s < this.shards; s++) {
      const list = this.acks[s]!;
      if (this.dirty[s]) {
        list.sort((a, b) => a.seq - b.seq);
        const p = new Array<number>(list.length + 1);
        p[0] = 0;
        for (let i = 0; i < list.length; i++) p[i + 1] = p[i]! + list[i]!.n;
        this.prefix[s] = p;
        this.dirty[s] = false;
      }
      const seq = seqs[s] ?? 0;
      let lo = 0;
      let hi = list.length;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (list[mid]!.seq <= seq) lo = mid + 1;
        else hi = mid;
      }
      total += this.prefix[s]?.[lo] ?? 0;
    }
    return total;
  }

  messagesOf(shard: number): number {
    return this.acks[shard]!.length;
  }
}

/** ClickProducer whose every acknowledged message is reported to an AckTracker. */
export class TrackingProducer extends ClickProducer {
  constructor(
    nc: NatsConnection,
    topo: Topology,
    shards: number,
    maxBatch: number,
    readonly tracker: AckTracker,
  ) {
    super(nc, topo, { shards, maxBatch });
  }

  override async send(subject: string, data: Uint8Array, msgID: string): Promise<PubAck> {
    const ack = await super.send(subject, data, msgID);
    const shard = Number(subject.slice(subject.lastIndexOf('.') + 1));
    this.tracker.onAck(shard, ack, rowsInBatch(data));
    return ack;
  }
}

/**
 * Sends the workload (or its next `count` events) as fast as it is accepted: per-shard batches of
 * maxBatch clicks, each one `publish` call, at most `window` calls in flight; `onAck` after each
 * acknowledged call. Resolves when every click sent is acknowledged. Clicks still in the
 * generator's partial batches when `count` is reached go out with a later call.
 */
export function publishAll(
  w: Workload,
  producer: ClickProducer,
  window: number,
  opts: { count?: number; onAck?: () => void } = {},
): Promise<void> {
  const target = opts.count === undefined ? Infinity : w.sent + opts.count;
  return new Promise<void>((resolve, reject) => {
    let inflight = 0;
    let failed = false;
    let ended = false;
    const pump = (): void => {
      while (!failed && inflight < window) {
        const b = ended || w.sent >= target ? null : w.nextShardBatch();
        if (!b) {
          ended = true;
          if (inflight === 0) resolve();
          return;
        }
        inflight++;
        producer.publish(b.clicks).then(
          () => {
            inflight--;
            opts.onAck?.();
            // Yield to I/O between generated batches rather than recursing synchronously forever.
            pump();
          },
          (err: unknown) => {
            failed = true;
            reject(err);
          },
        );
      }
    };
    pump();
  });
}

/** Publishes `clicks` (any shards) and returns when acknowledged; for rate-limited senders. */
export function publishClicks(producer: ClickProducer, clicks: readonly Click[]): Promise<unknown> {
  return producer.publish(clicks);
}
