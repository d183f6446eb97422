import type { StateOp } from '../../model/shard-state.ts';
import { fnv1a32Utf16, murmur3_32 } from './click-hash.ts';
import { ClickDedup, type DedupBlock } from './click-dedup.ts';
import { KeyedClickHash, randomDedupKey } from './siphash.ts';

/**
 * A shard actor's click-id dedupe: the keyed table (SipHash-2-4 under the deployment's secret,
 * siphash.ts) and, after an upgrade from the unkeyed format, the legacy table it migrates from.
 *
 * **Why keyed.** The unkeyed pair (FNV-1a-32, murmur3_32) can be collided on purpose: a crafted
 * click id with a victim's pair is taken for a duplicate and suppresses the billable click (issue
 * 11, defect 13). Under a secret key nobody outside the deployment can compute a pair, let alone
 * collide one.
 *
 * **Migration.** Ids are never stored, only hashes, so a format-3 state (unkeyed pairs) cannot be
 * rehashed. It is kept as it is, read-only, in its own blocks (`d<block>`), and an id is a
 * duplicate if the keyed table or the legacy table holds it (each checked with its own hash). New
 * ids and re-sightings go to the keyed table (`k<block>`). The legacy table only expires: once the
 * correction horizon has dropped its last block it is gone, and the legacy hash is no longer
 * computed (except by hot children, see `ShardDedup.legacyPair`).
 *
 * @module
 */

/** Persisted part of a keyed dedupe block. */
export const dedupPart = (block: number): string => `k${block}`;
/** Persisted part of a legacy (unkeyed, format 3) dedupe block. */
export const legacyDedupPart = (block: number): string => `d${block}`;

/**
 * Key of actors whose configuration carries none (query jobs, tests, embedders that build actors
 * by hand): random per process (per module instance, so per worker thread), so still secret.
 * Persisted state written under it cannot be restored by another process (the head's key check
 * refuses it), which is why the runtime always passes the deployment's key.
 */
let processKey: Uint8Array | undefined;
export function defaultDedupKey(): Uint8Array {
  return (processKey ??= randomDedupKey());
}

const ENTRY_BYTES = 12;

/**
 * The keyed table plus, while migrating, the legacy one: `check` an id (one keyed hash, and the
 * unkeyed pair only while migrating), `add` the pair `check` left in `h`/`l`, persist with
 * `takeChanges` (part ops for both tables), list `blocks` / `legacyBlocks` for the head.
 */
export class ShardDedup {
  readonly #hasher: KeyedClickHash;
  readonly #keyed: ClickDedup;
  #legacy: ClickDedup | null;
  /** Keyed pair of the last {@link check}ed id. */
  h = 0;
  l = 0;

  constructor(key: Uint8Array, keyed: ClickDedup, legacy: ClickDedup | null = null) {
    this.#hasher = new KeyedClickHash(key);
    this.#keyed = keyed;
    this.#legacy = legacy;
  }

  get bucketMinutes(): number {
    return this.#keyed.bucketMinutes;
  }

  /** True while unkeyed ids of a migrated state are still inside the horizon. */
  get migrating(): boolean {
    return this.#legacy !== null;
  }

  /**
   * Whether `clickId` was counted before (in either table). Leaves its keyed pair in `h`/`l`, which
   * is what {@link add} records: the id is hashed with the key once per click.
   */
  check(clickId: string): boolean {
    const h = (this.h = this.#hasher.hash(clickId)), l = (this.l = this.#hasher.lo);
    if (this.#keyed.hasHashed(h, l)) return true;
    const legacy = this.#legacy;
    return legacy !== null && legacy.hasHashed(fnv1a32Utf16(clickId), murmur3_32(clickId));
  }

  /** The unkeyed pair of an id: a hot child sends it beside the keyed one (its parent may be migrating). */
  legacyPair(clickId: string): [number, number] {
    return [fnv1a32Utf16(clickId), murmur3_32(clickId)];
  }

  /**
   * Whether a pair is held in either table, for a hot child's question (which pairs it sends
   * without saying which hash made them: the keyed pair and the legacy pair of each id). A pair
   * of one scheme matching an entry of the other is a 2^-64 accident, and not one that can be
   * aimed: the keyed pairs are unknown outside the deployment.
   */
  hasHashed(h: number, l: number): boolean {
    return this.#keyed.hasHashed(h, l) || (this.#legacy !== null && this.#legacy.hasHashed(h, l));
  }

  /** Records a keyed pair at `minute` (see ClickDedup.addHashed). */
  add(h: number, l: number, minute: number): boolean {
    return this.#keyed.addHashed(h, l, minute);
  }

  /** Records an entry of a hot child's final report ({@link toBytes} format). */
  addReported(h: number, l: number, minute: number): void {
    if (minute >= 0) this.#keyed.addHashed(h, l, minute);
    else (this.#legacy ??= new ClickDedup({ bucketMinutes: this.#keyed.bucketMinutes })).addHashed(h, l, ~minute);
  }

  expireBefore(minMinute: number): void {
    this.#keyed.expireBefore(minMinute);
    this.#legacy?.expireBefore(minMinute);
  }

  /**
   * The part changes since the last call: appends to and deletes of keyed blocks (`k<block>`) and
   * legacy blocks (`d<block>`). A legacy table that is empty after its changes are taken is gone.
   */
  takeChanges(): StateOp[] {
    const ops: StateOp[] = [];
    const push = (d: { appends: DedupBlock[]; dropped: number[] }, part: (b: number) => string): void => {
      for (const a of d.appends) ops.push({ kind: 'append', part: part(a.block), bytes: a.bytes });
      for (const b of d.dropped) ops.push({ kind: 'del', part: part(b) });
    };
    push(this.#keyed.takeChanges(), dedupPart);
    if (this.#legacy !== null) {
      push(this.#legacy.takeChanges(), legacyDedupPart);
      if (this.#legacy.size === 0) this.#legacy = null;
    }
    return ops;
  }

  /** Live keyed blocks (the head lists them). */
  blocks(): number[] {
    return this.#keyed.blocks();
  }

  /** Live legacy blocks (the head lists them until there are none). */
  legacyBlocks(): number[] {
    return this.#legacy?.blocks() ?? [];
  }

  get size(): number {
    return this.#keyed.size + (this.#legacy?.size ?? 0);
  }

  get byteLength(): number {
    return this.#keyed.byteLength + (this.#legacy?.byteLength ?? 0);
  }

  /**
   * A hot child's table for its final report: ClickDedup.toBytes of the keyed table, followed by
   * the legacy table's entries with their minute stored as `~minute` (negative). Click times are
   * never negative (validation), so a negative minute marks a legacy entry for the parent.
   */
  toBytes(): Uint8Array {
    const keyed = this.#keyed.toBytes();
    if (this.#legacy === null || this.#legacy.size === 0) return keyed;
    const legacy = this.#legacy.toBytes();
    const out = new Uint8Array(keyed.byteLength + legacy.byteLength - 4);
    out.set(keyed);
    out.set(legacy.subarray(4), keyed.byteLength);
    const dv = new DataView(out.buffer);
    dv.setUint32(0, this.size, true);
    for (let o = keyed.byteLength; o < out.byteLength; o += ENTRY_BYTES) dv.setInt32(o + 8, ~Math.max(0, dv.getInt32(o + 8, true)), true);
    return out;
  }
}
