/**
 * The dedupe table's change log (click-dedup.ts): per tag (one live bucket each), the ids recorded
 * since the last hand-out, whether the bucket's block holds records (persisted or pending), and the
 * blocks that expired. The table hands these to the store as appends and deletes.
 * @module
 */
import { bytesLE } from './dedup-sort.ts';

export class DedupLog {
  readonly #used = new Uint8Array(256); // per tag: its live block has records, persisted or pending
  readonly #logs = new Array<Uint32Array | undefined>(256); // pending (h, l) per tag
  readonly #len = new Int32Array(256); // u32 words used in #logs
  #dropped: number[] = [];

  /** Logs (h, l) for the block of tag `t`. */
  record(t: number, h: number, l: number): void {
    let log = this.#logs[t];
    const n = this.#len[t]!;
    if (log === undefined || n === log.length) {
      const bigger = new Uint32Array(Math.max(64, 2 * n));
      if (log !== undefined) bigger.set(log);
      this.#logs[t] = log = bigger;
    }
    (log[n] = h), (log[n + 1] = l), (this.#len[t] = n + 2), (this.#used[t] = 1);
  }

  /** Sizes tag `t`'s log for `ids` records (a whole-table image about to be logged). */
  reserve(t: number, ids: number): void {
    this.#logs[t] = new Uint32Array(2 * ids);
  }

  /** Tag `t`'s block holds persisted records (a table rebuilt from blocks). */
  markUsed(t: number): void {
    this.#used[t] = 1;
  }

  /** Whether tag `t`'s block holds records, persisted or pending. */
  used(t: number): boolean {
    return this.#used[t] === 1;
  }

  /** Tag `t`'s bucket expired: its block (first minute `block`) is to be deleted, its pending records forgotten. */
  expire(t: number, block: number): void {
    if (this.#used[t] === 0) return;
    this.#dropped.push(block);
    (this.#used[t] = 0), (this.#logs[t] = undefined), (this.#len[t] = 0);
  }

  /** Tag `t`'s pending records as 8-byte records (a view of the log on little-endian platforms), and forgets them; undefined when none. */
  take(t: number): Uint8Array | undefined {
    const n = this.#len[t]!;
    if (n === 0) return undefined;
    const bytes = bytesLE(this.#logs[t]!, n);
    (this.#logs[t] = undefined), (this.#len[t] = 0);
    return bytes;
  }

  /** The blocks that expired since the last call, and forgets them. */
  takeDropped(): number[] {
    const d = this.#dropped;
    this.#dropped = [];
    return d;
  }

  /** The first inconsistency with a table of `size` ids, or null: a log without a block, a block in an empty table. */
  check(size: number): string | null {
    for (let t = 0; t < 256; t++) {
      if (this.#len[t]! > 0 && this.#used[t] !== 1) return `tag ${t} has a log but no block`;
      if (size === 0 && this.#used[t] !== 0) return `empty table with a block of tag ${t}`;
    }
    return null;
  }
}
