/**
 * The shard's click-id dedupe table: the 64-bit hashes of the click ids counted within the
 * correction horizon, each with the event-time bucket it was last seen in, so a repeated click_id
 * is counted once; plus the change log (dedup-log.ts) the actor persists as append-only blocks.
 *
 * ```ts
 * const d = new ClickDedup({ bucketMinutes: ClickDedup.bucketMinutesFor(66) });
 * d.addIfAbsent('click-1', 29_000_000); // true: count it
 * d.addIfAbsent('click-1', 29_000_001); // false: a duplicate (now kept until bucket 29_000_001 expires)
 * const { appends, dropped } = d.takeChanges(); // APPEND each block, DEL each dropped one
 * const again = ClickDedup.fromBlocks(appends, { bucketMinutes: 1 }); // same ids, same buckets
 * ```
 *
 * @module
 */
import { fnv1a32Utf16, murmur3_32 } from './click-hash.ts';
import { DedupLog } from './dedup-log.ts';
import { EMPTY_KEY, checkOrderedSlots, corrupt, placeOrdered, readBlocks, readImage, sortUniqueRecords, writeImage } from './dedup-sort.ts';
import { GROW_ABOVE, GROW_TO, MAX_CAPACITY, MIN_CAPACITY, RESIDUES, RESTORE_LOAD, SHRINK_BELOW, SHRINK_TO, SPAN, TWO_32 } from './dedup-layout.ts';
import { bucketMinutesFor, capacityFor, mod255, slackFor, slotsFor, tagOf, type ClickDedupOptions, type DedupBlock, type DedupChanges } from './dedup-layout.ts';

export { DEDUP_HASH_BITS, MURMUR_SEED, collisionBound, fnv1a32Utf16, murmur3_32 } from './click-hash.ts';
export type { ClickDedupOptions, DedupBlock, DedupChanges } from './dedup-layout.ts';

/**
 * Set of click ids (as 64-bit hashes) with the event-time bucket each was last seen in, so a shard
 * counts every click once within its horizon, forgets it per bucket, and persists it incrementally.
 *
 * **An ordered Robin Hood table.** The key is (l, h) as one unsigned 64-bit number, l high (the
 * SipHash low word, or `murmur3_32` in a legacy table: uniform bits either way). Its home slot `floor(l * cap / 2^32)` is monotone in l, and each entry sits at
 * max(home, previous entry + 1), so occupied slots are sorted by key. That order is what makes it
 * cheap: a miss stops at the first larger key; an insert shifts the rest of its run one slot right;
 * expiry, growth and shrinking are one left-to-right pass that re-seats survivors (no rehash, no
 * tombstones); a restore from blocks is a radix sort plus a linear fill. The capacity need not be a
 * power of two, and `cap/1024 + 64` spare slots at the end replace wrap-around. Keys are
 * interleaved, [l, h] per slot in one Uint32Array, and an empty slot holds the largest key, so a
 * lookup reads one line of keys and no tag (the key scan stops at an empty slot by itself).
 *
 * **Tags.** One byte per slot: 0 = empty, else 1 + (bucket mod 255), decoded as the bucket in
 * [lo, lo + 254] with that residue, lo being the lowest live bucket: max(expiry floor, newest
 * bucket - 250). So an id over 250 buckets older than the newest one held counts as expired, and a
 * jump that far ahead expires what it leaves behind. A caller whose horizon fits in 248 buckets
 * ({@link ClickDedup.bucketMinutesFor}) never sees this: its watermark has passed those buckets
 * (such jumps only follow long idle gaps). Both rules depend on the held ids and the floor only,
 * which is why {@link fromBlocks} rebuilds a table that behaves identically.
 *
 * **12 bytes per id.** 8 key bytes + 1 tag = 9 bytes per slot, so the load (ids per home slot) is
 * kept in [0.76, 0.93]: grow past 0.93 to 0.77, shrink below 0.76 (after expiry) to 0.88, restore
 * at 0.85. That bounds {@link byteLength} / {@link size} by 9 / 0.76 plus the slack, under 12 for
 * any table past 65,536 ids (unless pre-sized larger). The price is insert speed: at that load an
 * insert shifts ~27 slots on average, and growth steps of 1.21x re-seat each id ~6 times. The hashes
 * are kept whole, so the false-duplicate probability stays at most n^2/2^65 ({@link collisionBound}).
 *
 * **Persistence.** Each id stored or moved to a later bucket is also logged for that bucket's
 * block; {@link takeChanges} hands out the logs and the expired blocks, {@link fromBlocks} rebuilds
 * the table from the blocks, and {@link toBytes} / {@link fromBytes} keep the whole-table image.
 */
export class ClickDedup {
  readonly #g: number;
  #cap: number;
  #slack: number;
  #scale: number; // cap / 2^32: home(l) = (l * scale) | 0, which is always <= cap - 1
  #growAt: number;
  #keys: Uint32Array;
  #tags: Uint8Array;
  #tagWords: Int32Array; // #tags four at a time
  #size = 0;
  #floor = -Infinity; // highest bucket expireBefore has cut below
  #lo = -Infinity; // lowest live bucket: max(#floor, #top - SPAN)
  #rot = 0; // lo mod 255
  #top = -Infinity; // newest bucket held; -Infinity when empty
  readonly #count = new Int32Array(256); // ids per tag
  readonly #log = new DedupLog();

  constructor(opts: ClickDedupOptions = {}) {
    const g = opts.bucketMinutes ?? 1, c = opts.initialCapacity ?? MIN_CAPACITY;
    if (!Number.isInteger(g) || g < 1 || g > 2 ** 31) {
      throw new RangeError(`bucketMinutes must be an integer in [1, 2^31], got ${g}`);
    }
    if (!Number.isInteger(c) || c < 1 || c > MAX_CAPACITY) {
      throw new RangeError(`initialCapacity must be an integer in [1, 2^29], got ${c}`);
    }
    this.#g = g;
    this.#cap = Math.max(MIN_CAPACITY, c);
    this.#slack = slackFor(this.#cap);
    this.#scale = this.#cap / TWO_32;
    this.#growAt = Math.floor(this.#cap * GROW_ABOVE);
    this.#tags = new Uint8Array(slotsFor(this.#cap, this.#slack));
    this.#keys = new Uint32Array(2 * this.#tags.length).fill(EMPTY_KEY);
    this.#tagWords = new Int32Array(this.#tags.buffer);
  }

  /**
   * Smallest bucket size g >= 1 with ceil(spanMinutes / g) + 2 <= 250, for a caller whose ids span
   * `spanMinutes` (retention + max future + lateness): its live buckets then fit the tags' window.
   */
  static bucketMinutesFor(spanMinutes: number): number {
    return bucketMinutesFor(spanMinutes);
  }

  /** Minutes per bucket. */
  get bucketMinutes(): number {
    return this.#g;
  }

  /**
   * Records `clickId` at `minute` and returns true if it was absent; returns false for a duplicate.
   * On a duplicate the stored bucket becomes max(stored, bucket of minute): the id is then kept as
   * long as any sighting of it is inside the horizon, so a replay can't be re-admitted early.
   * A minute in an expired bucket returns whether the id is absent and stores nothing. Unkeyed
   * hashes (tests, benchmarks): the shard actor keys its own (shard-dedup.ts) and calls addHashed.
   * @param minute minutes since the epoch, an int32.
   */
  addIfAbsent(clickId: string, minute: number): boolean {
    return this.addHashed(fnv1a32Utf16(clickId), murmur3_32(clickId), minute);
  }

  /**
   * `addIfAbsent` for an id whose 64-bit hash (two words: keyed SipHash, or the unkeyed pair) the
   * caller already has: a caller that first checks and later records hashes each id once.
   */
  addHashed(h: number, l: number, minute: number): boolean {
    if ((minute | 0) !== minute) throw new RangeError(`bad minute ${minute}`);
    (h >>>= 0), (l >>>= 0);
    const b = Math.floor(minute / this.#g);
    if (b < this.#lo) return this.#find(h, l) < 0; // already expired: count it, keep nothing
    if (b > this.#top) this.#raiseTop(b);
    const x = b - this.#lo + this.#rot, tag = (x >= RESIDUES ? x - RESIDUES : x) + 1; // tagOf(b) without fmod
    for (;;) {
      const keys = this.#keys, tags = this.#tags;
      // The key and the tag are read together so that their cache misses overlap.
      let i = (l * this.#scale) | 0, kl = keys[2 * i]!, t = tags[i]!;
      while (t !== 0 && (kl < l || (kl === l && keys[2 * i + 1]! < h))) (kl = keys[2 * ++i]!), (t = tags[i]!);
      if (t !== 0 && kl === l && keys[2 * i + 1] === h) {
        if (this.#bucketOf(t) < b) {
          tags[i] = tag;
          this.#count[t]!--;
          this.#count[tag]!++;
          this.#log.record(tag, h, l);
        }
        return false;
      }
      if (this.#size >= this.#growAt) {
        this.#rebuild(capacityFor(this.#size + 1, GROW_TO), this.#lo);
        continue;
      }
      let e = i; // the first empty slot from i: four tags at a time once aligned
      if (t !== 0) {
        for (e = i + 1; (e & 3) !== 0 && tags[e] !== 0; ) e++;
        if ((e & 3) === 0) {
          const words = this.#tagWords;
          let w = e >>> 2;
          for (let v = words[w]!; ((v - 0x01010101) & ~v & 0x80808080) === 0; v = words[++w]!); // no zero byte in v
          for (e = w << 2; tags[e] !== 0; ) e++;
        }
      }
      if (e >= tags.length - 1) {
        // The run would fill the last slot, which stays empty so that scans need no bound: resize.
        const cap = Math.max(this.#cap, capacityFor(this.#size + 1, GROW_TO));
        this.#rebuild(cap, this.#lo, cap === this.#cap ? 2 * this.#slack : slackFor(cap));
        continue;
      }
      if (e - i > 8) {
        keys.copyWithin(2 * i + 2, 2 * i, 2 * e);
        tags.copyWithin(i + 1, i, e);
      } else {
        for (let j = e; j > i; j--) {
          (keys[2 * j] = keys[2 * j - 2]!), (keys[2 * j + 1] = keys[2 * j - 1]!), (tags[j] = tags[j - 1]!);
        }
      }
      (keys[2 * i] = l), (keys[2 * i + 1] = h), (tags[i] = tag);
      this.#size++;
      this.#count[tag]!++;
      this.#log.record(tag, h, l);
      return true;
    }
  }

  /** True if `clickId` (or an id with the same 64-bit hash) is held. */
  has(clickId: string): boolean {
    return this.#find(fnv1a32Utf16(clickId), murmur3_32(clickId)) >= 0;
  }

  /** `has` for precomputed hashes (see addHashed). */
  hasHashed(h: number, l: number): boolean {
    return this.#find(h >>> 0, l >>> 0) >= 0;
  }

  /** Number of ids held. */
  get size(): number {
    return this.#size;
  }

  /** Bytes of the table's typed arrays: 9 per slot (8 key + 1 tag). */
  get byteLength(): number {
    return this.#keys.byteLength + this.#tags.byteLength;
  }

  /**
   * Drops every id whose bucket is < floor(minMinute / bucketMinutes), i.e. whose whole bucket lies
   * before `minMinute`, and returns how many were dropped; their blocks go to the next
   * takeChanges' `dropped`. The floor only rises: a lower `minMinute` than before does nothing.
   * O(capacity) when ids are dropped (one in-place pass, or into a smaller table below load 0.76).
   */
  expireBefore(minMinute: number): number {
    if (Number.isNaN(minMinute)) throw new RangeError('minMinute is NaN');
    const f = Math.floor(minMinute / this.#g);
    if (!(f > this.#floor)) return 0;
    this.#floor = f;
    return f > this.#lo ? this.#dropBelow(f) : 0;
  }

  /**
   * Returns, and forgets, what the store must do since the last call: append the records logged
   * per live block (in the order logged), delete the blocks that expired. Applying every result in
   * order to a block store keeps {@link fromBlocks} of that store equal to this table. On
   * little-endian platforms each `bytes` is a view of the log itself (no copy).
   */
  takeChanges(): DedupChanges {
    const appends: DedupBlock[] = [];
    // Live blocks lie in [lo, top], at most 251 of them; an empty table has none (lo may be -Infinity).
    for (let b = this.#lo; this.#size > 0 && b <= this.#top; b++) {
      const bytes = this.#log.take(tagOf(b));
      if (bytes !== undefined) appends.push({ block: b * this.#g, bytes });
    }
    return { appends, dropped: this.#log.takeDropped() };
  }

  /** Every live block (ascending) that has records, persisted or pending: what the store should hold. */
  blocks(): number[] {
    const out: number[] = [];
    for (let b = this.#lo; this.#size > 0 && b <= this.#top; b++) if (this.#log.used(tagOf(b))) out.push(b * this.#g);
    return out;
  }

  /**
   * Rebuilds the table whose takeChanges() produced `blocks` (each block's records in any order
   * and split in any way): an id in several blocks gets the highest. Blocks below `minMinute`'s
   * bucket (pass the highest minMinute given to expireBefore), or over 250 buckets below the newest,
   * are ignored. The result has no pending changes. Sorts with typed arrays (dedup-sort.ts) and
   * fills the table in one pass: tens of millions of ids per second.
   * @throws AdaggError `ADAGG_E_SNAPSHOT_CORRUPT` if a block number is not a multiple of
   * bucketMinutes or a block's byte length is not a multiple of 8.
   */
  static fromBlocks(blocks: Iterable<DedupBlock>, opts: { bucketMinutes?: number; minMinute?: number } = {}): ClickDedup {
    const d = new ClickDedup({ bucketMinutes: opts.bucketMinutes ?? 1 });
    if (opts.minMinute !== undefined && Number.isNaN(opts.minMinute)) throw new RangeError('minMinute is NaN');
    const floor = opts.minMinute === undefined ? -Infinity : Math.floor(opts.minMinute / d.#g);
    const r = readBlocks(blocks, d.#g, floor, SPAN);
    d.#load(r.keys, r.offs, r.n, floor, r.lo, r.top);
    for (const b of r.buckets) d.#log.markUsed(tagOf(b));
    return d;
  }

  /**
   * Whole-table image: little-endian u32 count, then per id (in key order) u32 h, u32 l, i32 minute,
   * the first minute of its bucket. The format of hot-ad final reports (ID_BYTES = 12).
   */
  toBytes(): Uint8Array {
    const minuteOf = new Float64Array(256); // clamped: a bucket's first minute can precede -2^31
    for (let t = 1; t < 256; t++) minuteOf[t] = Math.max(-(2 ** 31), this.#bucketOf(t) * this.#g);
    return writeImage(this.#keys, this.#tags, this.#size, minuteOf);
  }

  /**
   * Inverse of {@link toBytes}, entries in any order, bucketed by `opts.bucketMinutes`. Entries over
   * 250 buckets below the newest are dropped as expired. Every id is pending for its block (the
   * image is in no block store yet), so the next takeChanges writes the whole table out.
   * @throws AdaggError `ADAGG_E_SNAPSHOT_CORRUPT` on a malformed buffer or a repeated hash.
   */
  static fromBytes(bytes: Uint8Array, opts: { bucketMinutes?: number } = {}): ClickDedup {
    const d = new ClickDedup({ bucketMinutes: opts.bucketMinutes ?? 1 });
    const r = readImage(bytes, d.#g, SPAN, MAX_CAPACITY * GROW_ABOVE);
    if (d.#load(r.keys, r.offs, r.n, -Infinity, r.lo, r.top) < r.n) throw corrupt('an entry repeats a hash');
    for (let t = 1; t < 256; t++) if (d.#count[t]! > 0) d.#log.reserve(t, d.#count[t]!);
    const keys = d.#keys, tags = d.#tags;
    for (let i = 0; i < tags.length; i++) if (tags[i] !== 0) d.#log.record(tags[i]!, keys[2 * i + 1]!, keys[2 * i]!);
    return d;
  }

  /**
   * Checks every internal invariant (slot order and placement, see checkOrderedSlots; buckets in
   * [lo, top]; counts, size, lo) and throws an Error naming the first violation. For tests: O(capacity).
   */
  checkInvariant(): void {
    const fail = (what: string): never => {
      throw new Error(`ClickDedup invariant: ${what}`);
    };
    const count = new Int32Array(256);
    if (this.#tags.length !== slotsFor(this.#cap, this.#slack)) fail('slot count');
    const bad = checkOrderedSlots(this.#keys, this.#tags, this.#cap, count);
    if (bad !== null) fail(bad);
    let size = 0, top = -Infinity;
    for (let t = 1; t < 256; t++) {
      if (count[t] !== this.#count[t]) fail(`count of tag ${t}: ${this.#count[t]}, counted ${count[t]}`);
      if (count[t] === 0) continue;
      (size += count[t]!), (top = Math.max(top, this.#bucketOf(t)));
      if (this.#bucketOf(t) > this.#top) fail(`tag ${t} is bucket ${this.#bucketOf(t)}, past the newest ${this.#top}`);
    }
    if (size !== this.#size) fail(`size ${this.#size}, counted ${size}`);
    if (top !== this.#top) fail(`newest bucket ${this.#top}, found ${top}`);
    if (this.#lo !== Math.max(this.#floor, this.#top - SPAN)) fail(`lo ${this.#lo}`);
    if (size > 0 && this.#rot !== mod255(this.#lo)) fail(`rot ${this.#rot}`);
    const logBad = this.#log.check(size);
    if (logBad !== null) fail(logBad);
  }

  /** Slot of (h, l), or -1. Reads keys only (empty slots hold EMPTY_KEY): one cache line, mostly. */
  #find(h: number, l: number): number {
    const keys = this.#keys;
    for (let i = (l * this.#scale) | 0; ; i++) {
      const kl = keys[2 * i]!;
      if (kl < l) continue;
      if (kl > l) return -1;
      const kh = keys[2 * i + 1]!;
      if (kh < h) continue;
      return kh === h && (kh !== EMPTY_KEY || kl !== EMPTY_KEY || this.#tags[i] !== 0) ? i : -1;
    }
  }

  /** Bucket that tag `t` (1..255) stands for: the one in [lo, lo + 254] congruent to t - 1 mod 255. */
  #bucketOf(t: number): number {
    const x = t - 1 - this.#rot;
    return this.#lo + (x < 0 ? x + RESIDUES : x);
  }


  /** `b` becomes the newest bucket; buckets over SPAN below it expire first (see the class doc). */
  #raiseTop(b: number): void {
    const lo = Math.max(this.#floor, b - SPAN);
    if (lo > this.#lo) this.#dropBelow(lo);
    this.#top = b;
  }

  /** Expires the buckets in [lo, newLo) and makes newLo the lowest live bucket; returns the ids dropped. */
  #dropBelow(newLo: number): number {
    let dropped = 0;
    for (let b = this.#lo; this.#size > 0 && b < Math.min(newLo, this.#top + 1); b++) dropped += this.#count[tagOf(b)]!;
    if (dropped > 0) {
      const left = this.#size - dropped;
      const cap = left < this.#cap * SHRINK_BELOW ? capacityFor(left, SHRINK_TO) : this.#cap;
      this.#rebuild(cap, newLo, cap === this.#cap ? this.#slack : slackFor(cap));
      if (left === 0) this.#top = -Infinity;
    }
    for (let b = this.#lo; b > -Infinity && b < Math.min(newLo, this.#lo + RESIDUES); b++) this.#log.expire(tagOf(b), b * this.#g);
    this.#lo = newLo;
    this.#rot = mod255(newLo);
    return dropped;
  }

  /**
   * Keeps the ids whose bucket is >= keepFrom, in a table of `cap` home slots + `slack`: one
   * left-to-right pass (placeOrdered). Order is preserved, so this is the whole of expiry, growth
   * and shrinking; in place when the shape is unchanged.
   */
  #rebuild(cap: number, keepFrom: number, slack: number = slackFor(cap)): void {
    let drop: Uint8Array | null = null;
    if (this.#size > 0 && keepFrom > this.#lo) {
      drop = new Uint8Array(256);
      for (let t = 1; t < 256; t++) if (this.#bucketOf(t) < keepFrom) (drop[t] = 1), (this.#count[t] = 0);
    }
    for (; ; slack *= 2) {
      const inPlace = cap === this.#cap && slack === this.#slack, m = slotsFor(cap, slack);
      const keys = inPlace ? this.#keys : new Uint32Array(2 * m), tags = inPlace ? this.#tags : new Uint8Array(m);
      const kept = placeOrdered(this.#keys, this.#tags, drop, cap, keys, tags);
      if (kept < 0) continue;
      this.#install(cap, slack, keys, tags);
      this.#size = kept;
      return;
    }
  }

  #install(cap: number, slack: number, keys: Uint32Array, tags: Uint8Array): void {
    (this.#cap = cap), (this.#slack = slack), (this.#scale = cap / TWO_32), (this.#growAt = Math.floor(cap * GROW_ABOVE));
    (this.#keys = keys), (this.#tags = tags), (this.#tagWords = new Int32Array(tags.buffer, tags.byteOffset, tags.length >>> 2));
  }

  /**
   * Fills this empty table from `n` unsorted records (keys[2i] = l, keys[2i+1] = h, offs[i] =
   * bucket - lo), a repeated key getting its highest bucket, at load 0.85. Returns the ids held.
   */
  #load(keys: Uint32Array, offs: Uint8Array, n: number, floor: number, lo: number, top: number): number {
    const cap = capacityFor(n, RESTORE_LOAD);
    let slack = slackFor(cap), m = slotsFor(cap, slack), dk = new Uint32Array(2 * m), dt = new Uint8Array(m);
    const u = sortUniqueRecords(keys, offs, n, dk, dt), tagAt = new Uint8Array(SPAN + 1); // the table is the scratch
    for (let o = 0; o <= SPAN; o++) tagAt[o] = tagOf(lo + o);
    for (let i = 0; i < u; i++) this.#count[(offs[i] = tagAt[offs[i]!]!)]!++;
    offs.fill(0, u);
    dt.fill(0);
    while (placeOrdered(keys, offs, null, cap, dk, dt) < 0) {
      (slack *= 2), (m = slotsFor(cap, slack)), (dk = new Uint32Array(2 * m)), (dt = new Uint8Array(m));
    }
    this.#install(cap, slack, dk, dt);
    (this.#size = u), (this.#floor = floor), (this.#top = u > 0 ? top : -Infinity), (this.#lo = u > 0 ? lo : floor);
    this.#rot = mod255(this.#lo);
    if (u < cap * SHRINK_BELOW && cap > MIN_CAPACITY) this.#rebuild(capacityFor(u, RESTORE_LOAD), this.#lo); // many repeats
    return u;
  }
}
