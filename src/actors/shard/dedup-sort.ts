/**
 * Bulk operations of ClickDedup's ordered table (click-dedup.ts): reading persisted blocks and
 * images into unsorted records, sorting records into key order, laying key-ordered records into
 * slots, and checking that a slot array is well ordered. Typed arrays only, no per-record objects,
 * so a restore is a handful of linear passes.
 *
 * A key is an unsigned 64-bit number held as two uint32 words, high word first (`keys[2i]`,
 * `keys[2i+1]`), with a one-byte value beside it (`tags[i]`). The high word is a hash, so its top
 * bits are uniform: two counting-sort passes on its top 22 bits leave runs of ~1 record (for a few
 * million), which insertion sort finishes. A run that is much longer (skewed or crafted keys) is
 * radix-sorted instead, so the worst case stays a bounded number of passes, never quadratic.
 *
 * @module
 */
import { AdaggError, ErrorCode } from '../../errors.ts';

/** Runs of at most this many records are insertion-sorted; longer ones are radix-sorted. */
const INSERTION_MAX = 32;
const TWO_32 = 4294967296;
const RECORD_BYTES = 8; // block record: u32 h + u32 l
const ENTRY_BYTES = 12; // table image entry: u32 h + u32 l + i32 minute

/**
 * Both key words of an empty slot: the largest key, so that a scan for any key stops at an empty
 * slot by comparing keys alone (only a real key equal to it needs its tag looked at).
 */
export const EMPTY_KEY = 0xffffffff;

/** True where typed arrays are little-endian (every platform Node supports today). */
export const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/** The error for a malformed persisted table: AdaggError `ADAGG_E_SNAPSHOT_CORRUPT`. */
export function corrupt(message: string, details?: Record<string, unknown>): AdaggError {
  return new AdaggError(ErrorCode.SnapshotCorrupt, `click dedup snapshot: ${message}`, { details });
}

/**
 * Unsorted records for a restore: `keys[2i]` = l, `keys[2i+1]` = h, `offs[i]` = bucket - lo, for the
 * `n` records whose bucket is in [lo, top].
 */
export interface RecordsIn {
  keys: Uint32Array;
  offs: Uint8Array;
  n: number;
  lo: number;
  top: number;
}

/**
 * Reads persisted blocks (see ClickDedup.fromBlocks): the records of the non-empty blocks whose
 * bucket is >= floor and within `span` buckets of the newest, plus those buckets (`buckets`).
 * @throws AdaggError `ADAGG_E_SNAPSHOT_CORRUPT` for a block number that is not a multiple of `g`
 * or a byte length that is not whole 8-byte records, whether the block would be used or not.
 */
export function readBlocks(
  blocks: Iterable<{ block: number; bytes: Uint8Array }>,
  g: number,
  floor: number,
  span: number,
): RecordsIn & { buckets: number[] } {
  const live: Array<{ b: number; bytes: Uint8Array }> = [];
  let top = -Infinity;
  for (const { block, bytes } of blocks) {
    if (!Number.isSafeInteger(block) || block % g !== 0) {
      throw corrupt(`block ${String(block)} is not a multiple of ${g} minutes`, { block });
    }
    if (bytes.byteLength % RECORD_BYTES !== 0) {
      throw corrupt(`block ${block} holds ${bytes.byteLength} bytes, not whole records`, { block });
    }
    if (block / g < floor || bytes.byteLength === 0) continue;
    live.push({ b: block / g, bytes });
    top = Math.max(top, block / g);
  }
  const lo = Math.max(floor, top - span), used = live.filter((x) => x.b >= lo);
  const n = used.reduce((s, x) => s + x.bytes.byteLength / RECORD_BYTES, 0);
  const keys = new Uint32Array(2 * n), offs = new Uint8Array(n);
  let k = 0;
  for (const { b, bytes } of used) {
    const w = wordsLE(bytes), m = w.length >>> 1;
    offs.fill(b - lo, k, k + m);
    for (let j = 0; j < m; j++, k++) (keys[2 * k] = w[2 * j + 1]!), (keys[2 * k + 1] = w[2 * j]!);
  }
  return { keys, offs, n, lo, top, buckets: used.map((x) => x.b) };
}

/**
 * Reads a whole-table image (see ClickDedup.toBytes): its entries bucketed by `g`, less those over
 * `span` buckets below the newest.
 * @throws AdaggError `ADAGG_E_SNAPSHOT_CORRUPT` if the length does not match the count, or the
 * count exceeds `maxCount`.
 */
export function readImage(bytes: Uint8Array, g: number, span: number, maxCount: number): RecordsIn {
  if (bytes.byteLength < 4) throw corrupt(`${bytes.byteLength} bytes, need at least 4`);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const count = dv.getUint32(0, true), end = 4 + count * ENTRY_BYTES;
  if (bytes.byteLength !== end) throw corrupt(`${count} entries need ${end} bytes, got ${bytes.byteLength}`, { count });
  if (count > maxCount) throw corrupt(`${count} entries exceed the table limit`, { count });
  let top = -Infinity;
  for (let o = 12; o < end; o += ENTRY_BYTES) top = Math.max(top, Math.floor(dv.getInt32(o, true) / g));
  const lo = top - span, keys = new Uint32Array(2 * count), offs = new Uint8Array(count);
  let n = 0;
  for (let o = 4; o < end; o += ENTRY_BYTES) {
    const off = Math.floor(dv.getInt32(o + 8, true) / g) - lo;
    if (off >= 0) (keys[2 * n] = dv.getUint32(o + 4, true)), (keys[2 * n + 1] = dv.getUint32(o, true)), (offs[n++] = off);
  }
  return { keys, offs, n, lo, top };
}

/**
 * Writes a whole-table image (the inverse of readImage): little-endian u32 count, then per
 * occupied slot in key order u32 h, u32 l, i32 minuteOf[tag].
 */
export function writeImage(keys: Uint32Array, tags: Uint8Array, size: number, minuteOf: Float64Array): Uint8Array {
  const out = new Uint8Array(4 + size * ENTRY_BYTES), dv = new DataView(out.buffer);
  dv.setUint32(0, size, true);
  for (let i = 0, o = 4; i < tags.length; i++) {
    const t = tags[i]!;
    if (t === 0) continue;
    dv.setUint32(o, keys[2 * i + 1]!, true);
    dv.setUint32(o + 4, keys[2 * i]!, true);
    dv.setInt32(o + 8, minuteOf[t]!, true);
    o += ENTRY_BYTES;
  }
  return out;
}

/** The u32 words of `bytes` read little-endian: a view when the platform and alignment allow, else a copy. */
export function wordsLE(bytes: Uint8Array): Uint32Array {
  const n = bytes.byteLength >>> 2;
  if (LITTLE_ENDIAN && bytes.byteOffset % 4 === 0) return new Uint32Array(bytes.buffer, bytes.byteOffset, n);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const w = new Uint32Array(n);
  for (let i = 0; i < n; i++) w[i] = dv.getUint32(4 * i, true);
  return w;
}

/** The first `n` words of `w` as little-endian bytes: a view of `w` on little-endian platforms. */
export function bytesLE(w: Uint32Array, n: number): Uint8Array {
  if (LITTLE_ENDIAN) return new Uint8Array(w.buffer, w.byteOffset, 4 * n);
  const out = new Uint8Array(4 * n);
  const dv = new DataView(out.buffer);
  for (let i = 0; i < n; i++) dv.setUint32(4 * i, w[i]!, true);
  return out;
}

/**
 * Sorts the first `n` records by key, in place, and merges records with equal keys into one
 * carrying the largest tag. Returns the number of distinct keys, which are then the first records.
 * `tk` / `tt` (at least 2n words / n bytes, contents overwritten) serve as scratch space if given.
 */
export function sortUniqueRecords(
  keys: Uint32Array,
  tags: Uint8Array,
  n: number,
  tk = new Uint32Array(2 * n),
  tt = new Uint8Array(n),
): number {
  if (n < 2) return n;
  // LSD counting sort on bits 10-20, then 21-31 of the high word, through a temporary copy.
  const c1 = new Int32Array(2048), c2 = new Int32Array(2048);
  for (let i = 0; i < n; i++) {
    const hi = keys[2 * i]!;
    c1[(hi >>> 10) & 0x7ff]!++;
    c2[hi >>> 21]!++;
  }
  for (let d = 0, s1 = 0, s2 = 0; d < 2048; d++) {
    const a = c1[d]!, b = c2[d]!;
    (c1[d] = s1), (c2[d] = s2), (s1 += a), (s2 += b);
  }
  for (let i = 0; i < n; i++) {
    const hi = keys[2 * i]!, p = c1[(hi >>> 10) & 0x7ff]!++;
    (tk[2 * p] = hi), (tk[2 * p + 1] = keys[2 * i + 1]!), (tt[p] = tags[i]!);
  }
  for (let i = 0; i < n; i++) {
    const hi = tk[2 * i]!, p = c2[hi >>> 21]!++;
    (keys[2 * p] = hi), (keys[2 * p + 1] = tk[2 * i + 1]!), (tags[p] = tt[i]!);
  }
  // Finish each run of records whose high words agree in their top 22 bits.
  for (let s = 0; s < n; ) {
    const top = keys[2 * s]! >>> 10;
    let e = s + 1;
    while (e < n && keys[2 * e]! >>> 10 === top) e++;
    if (e - s > INSERTION_MAX) radixSort(keys, tags, s, e);
    else if (e - s > 1) insertionSort(keys, tags, s, e);
    s = e;
  }
  // Merge runs of equal keys (the write cursor never passes the read cursor).
  let w = 1;
  for (let i = 1; i < n; i++) {
    const hi = keys[2 * i]!, lo = keys[2 * i + 1]!, t = tags[i]!;
    if (keys[2 * w - 2] === hi && keys[2 * w - 1] === lo) {
      if (t > tags[w - 1]!) tags[w - 1] = t;
      continue;
    }
    (keys[2 * w] = hi), (keys[2 * w + 1] = lo), (tags[w] = t), w++;
  }
  return w;
}

/**
 * Lays the records of `srcTags`/`srcKeys` (key order; tag 0 = empty) into a table of `cap` home
 * slots: each at max(home, previous + 1), home = floor(high word * cap / 2^32), skipping those
 * whose `drop[tag]` is 1; every other slot gets tag 0 and both key words EMPTY_KEY. The
 * destination (tags all 0) may be the source itself (in place): no record then moves right.
 * Returns how many were placed, or -1 if one would reach the destination's last slot, which must
 * stay empty (retry with more slack; never happens in place).
 */
export function placeOrdered(
  srcKeys: Uint32Array,
  srcTags: Uint8Array,
  drop: Uint8Array | null,
  cap: number,
  dstKeys: Uint32Array,
  dstTags: Uint8Array,
): number {
  const inPlace = dstTags === srcTags, scale = cap / TWO_32, stop = dstTags.length - 1;
  let prev = -1, placed = 0;
  if (!inPlace) dstKeys.fill(EMPTY_KEY);
  for (let i = 0; i < srcTags.length; i++) {
    const t = srcTags[i]!;
    if (t === 0) continue;
    const l = srcKeys[2 * i]!, h = srcKeys[2 * i + 1]!;
    if (inPlace) (srcTags[i] = 0), (srcKeys[2 * i] = EMPTY_KEY), (srcKeys[2 * i + 1] = EMPTY_KEY);
    if (drop !== null && drop[t] === 1) continue;
    let p = (l * scale) | 0; // <= cap - 1: l * cap / 2^32 < cap - 2^-22, and one rounding can't reach cap
    if (p <= prev) p = prev + 1;
    if (p >= stop) return -1;
    (dstKeys[2 * p] = l), (dstKeys[2 * p + 1] = h), (dstTags[p] = t);
    (prev = p), placed++;
  }
  return placed;
}

/**
 * Checks the slot-level invariants of an ordered table of `cap` home slots: keys strictly
 * increasing with position, each at or after its home with no empty slot in between, empty slots
 * holding EMPTY_KEY, the last slot empty. Adds the number of records per tag into `count`.
 * Returns the first violation, or null.
 */
export function checkOrderedSlots(keys: Uint32Array, tags: Uint8Array, cap: number, count: Int32Array): string | null {
  if (keys.length !== 2 * tags.length || tags.length <= cap) return 'array lengths';
  if (tags[tags.length - 1] !== 0) return 'last slot occupied';
  const scale = cap / TWO_32;
  let pl = -1, ph = -1;
  for (let i = 0; i < tags.length; i++) {
    const t = tags[i]!;
    if (t === 0 && (keys[2 * i] !== EMPTY_KEY || keys[2 * i + 1] !== EMPTY_KEY)) return `empty slot ${i} holds a key`;
    if (t === 0) continue;
    const l = keys[2 * i]!, h = keys[2 * i + 1]!, home = (l * scale) | 0;
    if (i < home) return `slot ${i} is before its home ${home}`;
    if (i > home && tags[i - 1] === 0) return `empty slot between slot ${i} and its home ${home}`;
    if (pl >= 0 && !(l > pl || (l === pl && h > ph))) return `slot ${i} is out of key order`;
    (pl = l), (ph = h), count[t]!++;
  }
  return null;
}

/** Sorts records [s, e) by key, in place. */
function insertionSort(k: Uint32Array, t: Uint8Array, s: number, e: number): void {
  for (let i = s + 1; i < e; i++) {
    const hi = k[2 * i]!, lo = k[2 * i + 1]!, v = t[i]!;
    let j = i - 1;
    for (; j >= s; j--) {
      const jh = k[2 * j]!;
      if (jh < hi || (jh === hi && k[2 * j + 1]! <= lo)) break;
      (k[2 * j + 2] = jh), (k[2 * j + 3] = k[2 * j + 1]!), (t[j + 1] = t[j]!);
    }
    (k[2 * j + 2] = hi), (k[2 * j + 3] = lo), (t[j + 1] = v);
  }
}

/**
 * LSD radix sort of records [s, e) by key, 8 bits per pass, low word first. A pass whose digit is
 * the same for every record is skipped (a run's records share their top bits by construction).
 */
function radixSort(k: Uint32Array, t: Uint8Array, s: number, e: number): void {
  const m = e - s;
  let srcK = k.slice(2 * s, 2 * e), srcT = t.slice(s, e);
  let dstK = new Uint32Array(2 * m), dstT = new Uint8Array(m);
  const count = new Int32Array(257);
  for (let pass = 0; pass < 8; pass++) {
    const word = pass < 4 ? 1 : 0, sh = (pass & 3) * 8; // the low word holds the less significant half
    count.fill(0);
    for (let i = 0; i < m; i++) count[((srcK[2 * i + word]! >>> sh) & 0xff) + 1]!++;
    if (count.some((c) => c === m)) continue;
    for (let d = 0; d < 256; d++) count[d + 1]! += count[d]!;
    for (let i = 0; i < m; i++) {
      const p = count[(srcK[2 * i + word]! >>> sh) & 0xff]!++;
      (dstK[2 * p] = srcK[2 * i]!), (dstK[2 * p + 1] = srcK[2 * i + 1]!), (dstT[p] = srcT[i]!);
    }
    [srcK, dstK] = [dstK, srcK];
    [srcT, dstT] = [dstT, srcT];
  }
  k.set(srcK, 2 * s);
  t.set(srcT, s);
}
