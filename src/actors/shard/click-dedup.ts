import { AdaggError, ErrorCode } from '../../errors.ts';

/**
 * Number of hash bits kept per click id. Ids are never stored: two ids whose 64-bit hashes are
 * equal are treated as the same click (a "false duplicate"), see {@link collisionBound}.
 */
export const DEDUP_HASH_BITS = 64;

/** Minute value that marks an empty slot. `addIfAbsent` rejects it, so it can never be a real minute. */
const EMPTY = -2147483648;
const MAX_LOAD = 0.6;
/** After `expireBefore`, shrink while the load would stay at or below this (hysteresis vs. MAX_LOAD). */
const SHRINK_LOAD = 0.15;
const MIN_CAPACITY = 8;
const MAX_CAPACITY = 2 ** 30; // keeps `& mask` in int32 range; 2^30 slots is already 12 GiB
const DEFAULT_CAPACITY = 1024;
const ENTRY_BYTES = 12; // u32 hi + u32 lo + i32 minute
/** Seed of the murmur half; any constant works, it only has to stay fixed because snapshots store hashes. */
export const MURMUR_SEED = 0x9e3779b9;

/**
 * FNV-1a-32 over the UTF-16LE bytes of `s` (low byte of each code unit first). Equals the textbook
 * byte-wise FNV-1a of `Buffer.from(s, 'utf16le')`, so it can be checked against any reference.
 * Code units, not UTF-8, because encoding would allocate; lone surrogates hash fine.
 */
export function fnv1a32(s: string): number {
  let h = 0x811c9dc5 | 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    h = Math.imul(h ^ (c & 0xff), 0x01000193);
    h = Math.imul(h ^ (c >>> 8), 0x01000193);
  }
  return h >>> 0;
}

/**
 * MurmurHash3 x86_32 over the UTF-16LE bytes of `s` (two code units per 32-bit block), equal to the
 * reference murmur3_32(Buffer.from(s, 'utf16le'), seed). Its multiply/rotate/avalanche structure
 * is unrelated to FNV's, which is why the pair behaves like one 64-bit hash for non-adversarial ids.
 * Its low bits also pick the table slot (fmix32 gives good low-bit diffusion; FNV's are weaker).
 */
export function murmur3_32(s: string, seed: number = MURMUR_SEED): number {
  let h = seed | 0;
  const n = s.length;
  let i = 0;
  for (const end = n & ~1; i < end; i += 2) {
    let k = Math.imul(s.charCodeAt(i) | (s.charCodeAt(i + 1) << 16), 0xcc9e2d51);
    h ^= Math.imul((k << 15) | (k >>> 17), 0x1b873593);
    h = (Math.imul((h << 13) | (h >>> 19), 5) + 0xe6546b64) | 0;
  }
  if (i < n) {
    const k = Math.imul(s.charCodeAt(i), 0xcc9e2d51);
    h ^= Math.imul((k << 15) | (k >>> 17), 0x1b873593);
  }
  h ^= n * 2; // length in bytes, as in the byte-oriented reference
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

/**
 * Upper bound on the probability that at least one false duplicate exists among `n` ids held at
 * once: birthday bound C(n,2)/2^64 <= n^2/2^65. E.g. 1e6 ids -> ~2.7e-8. Holds for non-adversarial
 * ids only: neither hash is keyed, so collisions can be crafted on purpose.
 */
export function collisionBound(n: number): number {
  return Math.min(1, (n * n) / 2 ** 65);
}

function corrupt(message: string, details?: Record<string, unknown>): AdaggError {
  return new AdaggError(ErrorCode.SnapshotCorrupt, `click dedup snapshot: ${message}`, { details });
}

/** Smallest power of two >= floor with `n` entries at load <= `load`. */
function capacityFor(n: number, load: number, floor: number): number {
  let cap = floor;
  while (n > cap * load && cap < MAX_CAPACITY) cap *= 2;
  return cap;
}

/**
 * Set of click ids (as 64-bit hashes) with the event minute each was last seen at, so a shard can
 * count every click once within its time horizon and then forget it via {@link expireBefore}.
 * Open addressing with linear probing over three parallel typed arrays: 12 bytes per slot,
 * 20-40 bytes per id at load 0.3-0.6, and nothing for the GC to trace.
 */
export class ClickDedup {
  #hi: Uint32Array;
  #lo: Uint32Array;
  #min: Int32Array;
  #mask: number;
  #growAt: number;
  #size = 0;
  readonly #minCapacity: number;

  /** @param initialCapacity slot count, a power of two in [8, 2^30]; also the floor for shrinking. */
  constructor(initialCapacity: number = DEFAULT_CAPACITY) {
    const c = initialCapacity;
    if (!Number.isInteger(c) || c < MIN_CAPACITY || c > MAX_CAPACITY || (c & (c - 1)) !== 0) {
      throw new RangeError(`ClickDedup capacity must be a power of two in [${MIN_CAPACITY}, 2^30], got ${c}`);
    }
    this.#minCapacity = c;
    this.#hi = new Uint32Array(c);
    this.#lo = new Uint32Array(c);
    this.#min = new Int32Array(c).fill(EMPTY);
    this.#mask = c - 1;
    this.#growAt = Math.floor(c * MAX_LOAD);
  }

  /**
   * Records `clickId` at `minute` and returns true if it was absent; returns false for a duplicate.
   * On a duplicate the stored minute becomes max(stored, minute): the id is then kept as long as
   * any sighting of it is inside the horizon, so a replay can't be re-admitted early.
   * @param minute minutes since the epoch; an int32 other than -2^31.
   */
  addIfAbsent(clickId: string, minute: number): boolean {
    return this.addHashed(fnv1a32(clickId), murmur3_32(clickId), minute);
  }

  /**
   * `addIfAbsent` for an id whose two hashes (`fnv1a32`, `murmur3_32`) the caller already has:
   * a caller that first checks and later records (the shard actor) hashes each id once.
   */
  addHashed(h: number, l: number, minute: number): boolean {
    if ((minute | 0) !== minute || minute === EMPTY) throw new RangeError(`bad minute ${minute}`);
    const his = this.#hi, los = this.#lo, mins = this.#min, mask = this.#mask;
    for (let i = l & mask; ; i = (i + 1) & mask) {
      const m = mins[i]!;
      if (m === EMPTY) {
        if (this.#size >= this.#growAt) {
          // This insert would push the load past MAX_LOAD: double first, then probe the new table.
          if (mask + 1 >= MAX_CAPACITY) throw new RangeError(`ClickDedup is full (${this.#size} ids)`);
          this.#resize((mask + 1) * 2);
          return this.#insertNew(h, l, minute);
        }
        (his[i] = h), (los[i] = l), (mins[i] = minute);
        this.#size++;
        return true;
      }
      if (los[i] === l && his[i] === h) {
        if (minute > m) mins[i] = minute;
        return false;
      }
    }
  }

  /** True if `clickId` (or an id with the same 64-bit hash) is held. */
  has(clickId: string): boolean {
    return this.#find(fnv1a32(clickId), murmur3_32(clickId)) >= 0;
  }

  /** `has` for precomputed hashes (see addHashed). */
  hasHashed(h: number, l: number): boolean {
    return this.#find(h, l) >= 0;
  }

  /** Number of ids held. */
  get size(): number {
    return this.#size;
  }

  /** Bytes held by the typed arrays (12 per slot). */
  get byteLength(): number {
    return this.#hi.byteLength + this.#lo.byteLength + this.#min.byteLength;
  }

  /**
   * Drops every id whose minute is < `minMinute` and returns how many were dropped. O(capacity) and
   * in place (no second full-size table); only when the load falls below 0.15 is a smaller one allocated.
   */
  expireBefore(minMinute: number): number {
    if (Number.isNaN(minMinute)) throw new RangeError('minMinute is NaN');
    const his = this.#hi, los = this.#lo, mins = this.#min, mask = this.#mask;
    // Start right after a slot that was empty before we began: no probe run wraps past it, so each
    // entry's home slot is visited before the entry itself (load <= 0.6 guarantees such a slot).
    let start = 0;
    while (mins[start] !== EMPTY) start++;
    let dropped = 0;
    for (let n = 1; n <= mask + 1; n++) {
      const i = (start + n) & mask;
      const m = mins[i]!;
      if (m === EMPTY) continue;
      if (m < minMinute) {
        mins[i] = EMPTY;
        dropped++;
        continue;
      }
      if (dropped === 0) continue; // nothing cleared yet, so nothing before i can have opened a gap
      // Re-seat the survivor at the first free slot from its home; runs only ever shrink, so the
      // entries already re-seated stay reachable.
      let j = los[i]! & mask;
      while (j !== i && mins[j] !== EMPTY) j = (j + 1) & mask;
      if (j !== i) {
        (his[j] = his[i]!), (los[j] = los[i]!), (mins[j] = m);
        mins[i] = EMPTY;
      }
    }
    this.#size -= dropped;
    // Shrink once load < SHRINK_LOAD, to a table at load (SHRINK_LOAD, 2*SHRINK_LOAD]: memory follows
    // the live set, and the gap to MAX_LOAD keeps grow/shrink from alternating.
    const target = capacityFor(this.#size, 2 * SHRINK_LOAD, this.#minCapacity);
    if (target <= mask) this.#resize(target);
    return dropped;
  }

  /** Occupied entries only, little-endian: u32 count, then count x (u32 hi, u32 lo, i32 minute). */
  toBytes(): Uint8Array {
    const out = new Uint8Array(4 + this.#size * ENTRY_BYTES);
    const dv = new DataView(out.buffer);
    dv.setUint32(0, this.#size, true);
    const his = this.#hi, los = this.#lo, mins = this.#min;
    let o = 4;
    for (let i = 0; i < mins.length; i++) {
      const m = mins[i]!;
      if (m === EMPTY) continue;
      dv.setUint32(o, his[i]!, true);
      dv.setUint32(o + 4, los[i]!, true);
      dv.setInt32(o + 8, m, true);
      o += ENTRY_BYTES;
    }
    return out;
  }

  /** Inverse of {@link toBytes}. Throws AdaggError `ADAGG_E_SNAPSHOT_CORRUPT` on a malformed buffer. */
  static fromBytes(bytes: Uint8Array): ClickDedup {
    if (bytes.byteLength < 4) throw corrupt(`${bytes.byteLength} bytes, need at least 4`);
    const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const count = dv.getUint32(0, true);
    const expected = 4 + count * ENTRY_BYTES;
    if (bytes.byteLength !== expected) {
      throw corrupt(`${count} entries need ${expected} bytes, got ${bytes.byteLength}`, { count });
    }
    if (count > MAX_CAPACITY * MAX_LOAD) throw corrupt(`${count} entries exceed the table limit`, { count });
    const d = new ClickDedup(capacityFor(count, MAX_LOAD, DEFAULT_CAPACITY));
    for (let k = 0, o = 4; k < count; k++, o += ENTRY_BYTES) {
      const h = dv.getUint32(o, true), l = dv.getUint32(o + 4, true), m = dv.getInt32(o + 8, true);
      if (m === EMPTY) throw corrupt(`entry ${k} has the empty-slot minute`, { entry: k });
      if (!d.#insertNew(h, l, m)) throw corrupt(`entry ${k} repeats a hash`, { entry: k });
    }
    return d;
  }

  /** Slot of (h, l), or -1. */
  #find(h: number, l: number): number {
    const his = this.#hi, los = this.#lo, mins = this.#min, mask = this.#mask;
    for (let i = l & mask; ; i = (i + 1) & mask) {
      if (mins[i] === EMPTY) return -1;
      if (los[i] === l && his[i] === h) return i;
    }
  }

  /** Inserts a hash known not to need growth; false if it is already present. */
  #insertNew(h: number, l: number, m: number): boolean {
    const his = this.#hi, los = this.#lo, mins = this.#min, mask = this.#mask;
    let i = l & mask;
    for (; mins[i] !== EMPTY; i = (i + 1) & mask) if (los[i] === l && his[i] === h) return false;
    (his[i] = h), (los[i] = l), (mins[i] = m);
    this.#size++;
    return true;
  }

  /** Rehashes into fresh arrays of `capacity` slots (which must hold the ids at load <= MAX_LOAD). */
  #resize(capacity: number): void {
    const his = this.#hi, los = this.#lo, mins = this.#min;
    this.#hi = new Uint32Array(capacity);
    this.#lo = new Uint32Array(capacity);
    this.#min = new Int32Array(capacity).fill(EMPTY);
    this.#mask = capacity - 1;
    this.#growAt = Math.floor(capacity * MAX_LOAD);
    this.#size = 0;
    for (let i = 0; i < mins.length; i++) if (mins[i] !== EMPTY) this.#insertNew(his[i]!, los[i]!, mins[i]!);
  }
}
