import { randomBytes } from 'node:crypto';
import { AdaggError, ErrorCode } from '../../src/errors.ts';
import { commitBytes, type CountRead, type CountWrite, type ShardCommit, type StateReader, type StoredShard } from '../../src/model/shard-state.ts';
import type { ShardStore } from '../../src/runtime/shard-store.ts';

const fieldKey = (minute: number, dim: string | null, value: string | null, ad: string): string =>
  `${minute}|${dim ?? ''}|${value ?? ''}|${ad}`;

/**
 * A shard's committed state in memory, applied exactly as the Redis store applies a commit
 * (absolute HSETs of count fields, appends / hash changes / deletes of parts, the head), for pure
 * unit tests of the actor's commit and restore protocol.
 */
export class MemoryState {
  readonly fields = new Map<string, number>();
  readonly logs = new Map<string, Uint8Array>();
  readonly hashes = new Map<string, Map<string, string>>();
  readonly readCalls: CountRead[][] = [];
  seq = 0;
  head: Uint8Array | undefined;
  watermark = -1;
  closedThrough = -1;
  commits = 0;
  /** Bytes carried by each commit (count fields as strings, appended bytes, head). */
  readonly commitSizes: number[] = [];

  readonly readClosed = async (reads: readonly CountRead[]): Promise<number[]> => {
    this.readCalls.push(reads.map((r) => ({ ...r })));
    return reads.map((r) => this.fields.get(fieldKey(r.minute, r.dim, r.value, r.adId)) ?? 0);
  };

  apply(c: ShardCommit): void {
    if (c.seq < this.seq) throw new Error(`seq regression ${c.seq} < ${this.seq}`);
    let bytes = c.head.byteLength;
    for (const w of c.writes) {
      for (let i = 0; i + 1 < w.counts.length; i += 2) {
        this.fields.set(fieldKey(w.minute, w.dim, w.value, w.counts[i] as string), w.counts[i + 1] as number);
        bytes += String(w.counts[i]).length + String(w.counts[i + 1]).length;
      }
    }
    for (const op of c.ops) {
      switch (op.kind) {
        case 'append': {
          const cur = this.logs.get(op.part) ?? new Uint8Array(0);
          const next = new Uint8Array(cur.byteLength + op.bytes.byteLength);
          next.set(cur);
          next.set(op.bytes, cur.byteLength);
          this.logs.set(op.part, next);
          bytes += op.bytes.byteLength;
          break;
        }
        case 'hset': {
          let h = this.hashes.get(op.part);
          if (!h) this.hashes.set(op.part, (h = new Map()));
          for (let i = 0; i + 1 < op.fields.length; i += 2) h.set(String(op.fields[i]), String(op.fields[i + 1]));
          bytes += op.fields.length * 8;
          break;
        }
        case 'hdel': {
          const h = this.hashes.get(op.part);
          for (const f of op.fields) h?.delete(f);
          if (h?.size === 0) this.hashes.delete(op.part);
          break;
        }
        case 'del':
          this.logs.delete(op.part);
          this.hashes.delete(op.part);
          break;
      }
    }
    this.seq = c.seq;
    this.head = c.head;
    this.watermark = c.watermark;
    this.closedThrough = c.closedThrough;
    this.commits++;
    this.commitSizes.push(bytes);
  }

  get(minute: number, ad: string, dim: string | null = null, value: string | null = null): number | undefined {
    return this.fields.get(fieldKey(minute, dim, value, ad));
  }

  /** Every stored field of a minute, as count writes (what RedisShardStore.loadMinutes returns). */
  minuteWrites(minutes: readonly number[]): CountWrite[] {
    const wanted = new Set(minutes);
    const groups = new Map<string, CountWrite>();
    for (const [k, n] of this.fields) {
      const [m, dim, value, ad] = k.split('|') as [string, string, string, string];
      if (!wanted.has(Number(m))) continue;
      const gk = `${m}|${dim}|${value}`;
      let w = groups.get(gk);
      if (!w) groups.set(gk, (w = { minute: Number(m), dim: dim || null, value: dim ? value : null, counts: [] }));
      w.counts.push(ad, n);
    }
    return [...groups.values()];
  }

  reader(): StateReader {
    return {
      logs: async (parts) => parts.map((p) => this.logs.get(p) ?? null),
      hashes: async (parts) => parts.map((p) => (this.hashes.has(p) ? new Map(this.hashes.get(p)) : null)),
      minutes: async (minutes) => this.minuteWrites(minutes),
    };
  }
}

/**
 * A ShardStore over one MemoryState, fenced like the Redis store (a commit under an older epoch is
 * refused with ADAGG_E_FENCED), for unit tests of the shard host. Every unit shares the one state.
 */
export class MemoryShardStore implements ShardStore {
  private epoch = 0;
  /** This store's dedupe secret, as the Redis store keeps one per deployment. */
  readonly secret = new Uint8Array(randomBytes(16));
  constructor(readonly state = new MemoryState()) {}

  async dedupSecret(): Promise<Uint8Array> {
    return this.secret;
  }

  async acquire(): Promise<number> {
    return ++this.epoch;
  }

  async load(): Promise<StoredShard | null> {
    return this.state.head ? { seq: this.state.seq, head: this.state.head } : null;
  }

  reader(): StateReader {
    return this.state.reader();
  }

  async commit(_shard: unknown, epoch: number, c: ShardCommit): Promise<number> {
    if (epoch !== this.epoch) throw new AdaggError(ErrorCode.Fenced, `epoch ${epoch} no longer owns the shard (now ${this.epoch})`);
    this.state.apply(c);
    return commitBytes(c);
  }

  readCounts(_shard: unknown, reads: readonly CountRead[]): Promise<number[]> {
    return this.state.readClosed(reads);
  }

  async loadMinutes(_shard: unknown, from: number, to: number): Promise<CountWrite[]> {
    return this.state.minuteWrites(Array.from({ length: Math.max(0, to - from) }, (_, i) => from + i));
  }

  async closedMinutes(_shard: unknown, minutes: readonly number[]): Promise<() => CountWrite[]> {
    const writes = this.state.minuteWrites(minutes);
    return () => writes;
  }
}
