import { randomBytes, randomUUID } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  ClickDedup,
  DEDUP_HASH_BITS,
  MURMUR_SEED,
  collisionBound,
  fnv1a32Utf16,
  murmur3_32,
  type DedupBlock,
  type DedupChanges,
} from '../../src/actors/shard/click-dedup.ts';
import { AdaggError, ErrorCode } from '../../src/errors.ts';

// Byte-oriented textbook references, to check the UTF-16 code-unit versions against.
function fnvRef(bytes: Uint8Array): number {
  let h = 0x811c9dc5;
  for (const b of bytes) h = Math.imul(h ^ b, 0x01000193) >>> 0;
  return h >>> 0;
}
function murmurRef(bytes: Uint8Array, seed: number): number {
  const rotl = (x: number, r: number) => (x << r) | (x >>> (32 - r));
  const mixK = (k: number) => Math.imul(rotl(Math.imul(k, 0xcc9e2d51), 15), 0x1b873593);
  let h = seed | 0;
  const nBlocks = bytes.length >> 2;
  for (let b = 0; b < nBlocks; b++) {
    const o = b * 4;
    const k = bytes[o]! | (bytes[o + 1]! << 8) | (bytes[o + 2]! << 16) | (bytes[o + 3]! << 24);
    h = (Math.imul(rotl(h ^ mixK(k), 13), 5) + 0xe6546b64) | 0;
  }
  const t = nBlocks * 4;
  let k = 0;
  const rem = bytes.length & 3;
  if (rem >= 3) k ^= bytes[t + 2]! << 16;
  if (rem >= 2) k ^= bytes[t + 1]! << 8;
  if (rem >= 1) h ^= mixK(k ^ bytes[t]!);
  h ^= bytes.length;
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}
const utf16 = (s: string) => new Uint8Array(Buffer.from(s, 'utf16le'));

/** Strings with arbitrary code units, including lone surrogates and odd lengths. */
function randomString(maxLen: number): string {
  const len = Math.floor(Math.random() * (maxLen + 1));
  const units = new Uint16Array(randomBytes(len * 2).buffer, 0, len);
  return String.fromCharCode(...units);
}

function catchError(fn: () => unknown): unknown {
  try {
    fn();
  } catch (e) {
    return e;
  }
  throw new Error('expected a throw');
}

describe('hash functions', () => {
  it('byte references match published vectors', () => {
    const enc = new TextEncoder();
    expect(fnvRef(enc.encode(''))).toBe(0x811c9dc5);
    expect(fnvRef(enc.encode('a'))).toBe(0xe40c292c);
    expect(fnvRef(enc.encode('foobar'))).toBe(0xbf9cf968);
    expect(murmurRef(new Uint8Array([]), 0)).toBe(0);
    expect(murmurRef(new Uint8Array([]), 1)).toBe(0x514e28b7);
    expect(murmurRef(new Uint8Array([]), 0xffffffff)).toBe(0x81f16f39);
    expect(murmurRef(new Uint8Array([0, 0, 0, 0]), 0)).toBe(0x2362f9de);
    expect(murmurRef(new Uint8Array([0x21, 0x43, 0x65, 0x87]), 0)).toBe(0xf55b516b);
    expect(murmurRef(new Uint8Array([0x21, 0x43, 0x65, 0x87]), 0x5082edee)).toBe(0x2362f9de);
    expect(murmurRef(new Uint8Array([0x21, 0x43, 0x65]), 0)).toBe(0x7e4a8634);
    expect(murmurRef(new Uint8Array([0x21, 0x43]), 0)).toBe(0xa0f7b07a);
    expect(murmurRef(new Uint8Array([0x21]), 0)).toBe(0x72661cf4);
  });

  it('equal the byte references over UTF-16LE, for any code units', () => {
    for (let n = 0; n < 2000; n++) {
      const s = n < 40 ? 'x'.repeat(n) : randomString(50);
      expect(fnv1a32Utf16(s)).toBe(fnvRef(utf16(s)));
      expect(murmur3_32(s)).toBe(murmurRef(utf16(s), MURMUR_SEED));
      expect(murmur3_32(s, 7)).toBe(murmurRef(utf16(s), 7));
    }
    expect(fnv1a32Utf16('\ud800')).toBe(fnvRef(new Uint8Array([0x00, 0xd8])));
  });

  it('return unsigned 32-bit values', () => {
    for (let n = 0; n < 200; n++) {
      const s = randomUUID();
      for (const v of [fnv1a32Utf16(s), murmur3_32(s)]) {
        expect(Number.isInteger(v) && v >= 0 && v <= 0xffffffff).toBe(true);
      }
    }
  });
});

/** Deterministic 32-bit generator (mulberry32), so table tests replay exactly. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return (t ^ (t >>> 14)) >>> 0;
  };
}

/** `n` distinct-looking UUID-shaped ids from a seeded generator. */
function uuids(n: number, seed: number): string[] {
  const next = prng(seed);
  const hex = (v: number, len: number) => v.toString(16).padStart(8, '0').slice(0, len);
  return Array.from({ length: n }, () => {
    const a = next(), b = next(), c = next(), d = next();
    return `${hex(a, 8)}-${hex(b, 4)}-${hex(b >>> 16, 4)}-${hex(c, 4)}-${hex(c >>> 16, 4)}${hex(d, 8)}`;
  });
}

function expectCorrupt(fn: () => unknown): void {
  const e = catchError(fn);
  expect(e).toBeInstanceOf(AdaggError);
  expect((e as AdaggError).code).toBe(ErrorCode.SnapshotCorrupt);
}

/** One 8-byte block record per (h, l), as takeChanges writes them. */
function records(...pairs: Array<[number, number]>): Uint8Array {
  const b = Buffer.alloc(pairs.length * 8);
  pairs.forEach(([h, l], i) => (b.writeUInt32LE(h, 8 * i), b.writeUInt32LE(l, 8 * i + 4)));
  return new Uint8Array(b);
}

/** A block store as the actor keeps it: APPEND per block, DEL on drop. */
class BlockStore {
  readonly chunks = new Map<number, Buffer[]>();
  apply({ appends, dropped }: DedupChanges): void {
    for (const { block, bytes } of appends) this.chunks.set(block, [...(this.chunks.get(block) ?? []), Buffer.from(bytes)]);
    for (const block of dropped) this.chunks.delete(block);
  }
  blocks(): DedupBlock[] {
    return [...this.chunks].map(([block, parts]) => ({ block, bytes: new Uint8Array(Buffer.concat(parts)) }));
  }
}

/** The reference: id -> highest bucket seen, an expiry floor, and the 250-bucket span rule. */
class Model {
  readonly ids = new Map<string, number>();
  readonly used = new Set<number>(); // buckets that received a record and have not expired
  floor = -Infinity;
  constructor(readonly g: number) {}
  lo(): number {
    let top = -Infinity;
    for (const b of this.ids.values()) top = Math.max(top, b);
    return Math.max(this.floor, top - 250);
  }
  add(h: number, l: number, minute: number): boolean {
    const b = Math.floor(minute / this.g), k = `${h}:${l}`;
    if (b < this.lo()) return !this.ids.has(k);
    this.#dropBelow(Math.max(this.floor, b - 250));
    const old = this.ids.get(k);
    if (old === undefined || b > old) (this.ids.set(k, b), this.used.add(b));
    return old === undefined;
  }
  expire(minMinute: number): number {
    const f = Math.floor(minMinute / this.g);
    if (!(f > this.floor)) return 0;
    this.floor = f;
    return this.#dropBelow(f);
  }
  blocks(): number[] {
    const lo = this.lo();
    return [...this.used].filter((b) => b >= lo).sort((x, y) => x - y).map((b) => b * this.g);
  }
  #dropBelow(lo: number): number {
    let n = 0;
    for (const [k, b] of this.ids) if (b < lo) (this.ids.delete(k), n++);
    return n;
  }
}

describe('ClickDedup', () => {
  it('add / has / duplicate semantics', () => {
    const d = new ClickDedup();
    expect(d.size).toBe(0);
    expect(d.has('a')).toBe(false);
    expect(d.addIfAbsent('a', 100)).toBe(true);
    expect(d.has('a')).toBe(true);
    expect(d.addIfAbsent('a', 100)).toBe(false);
    expect(d.addIfAbsent('a', 50)).toBe(false);
    expect(d.addIfAbsent('b', 0)).toBe(true);
    expect(d.addIfAbsent('', -5)).toBe(true);
    expect(d.addIfAbsent('m', -2147483648)).toBe(true); // int32 min is a minute, but over 250 buckets old here: counted, not kept
    expect(d.has('')).toBe(true);
    expect(d.has('b')).toBe(true);
    expect(d.has('c')).toBe(false);
    expect(d.has('m')).toBe(false);
    expect(d.size).toBe(3);
    expect(d.byteLength).toBe((1024 + 65 + 3) * 9); // floor capacity + slack, whole words of tags
    expect(d.bucketMinutes).toBe(1);
    d.checkInvariant();
  });

  it('rejects bad minutes and options', () => {
    const d = new ClickDedup();
    for (const m of [1.5, Number.NaN, 2 ** 31, -(2 ** 31) - 1, Infinity]) {
      expect(() => d.addIfAbsent('x', m)).toThrow(RangeError);
    }
    expect(() => d.expireBefore(Number.NaN)).toThrow(RangeError);
    expect(d.size).toBe(0);
    expect(d.addIfAbsent('x', 2147483647)).toBe(true);
    expect(new ClickDedup().addIfAbsent('y', -2147483648)).toBe(true);
    for (const c of [0, 1.5, 2 ** 30]) expect(() => new ClickDedup({ initialCapacity: c })).toThrow(RangeError);
    for (const g of [0, -1, 1.5, Number.NaN]) expect(() => new ClickDedup({ bucketMinutes: g })).toThrow(RangeError);
    expect(() => ClickDedup.fromBlocks([], { minMinute: Number.NaN })).toThrow(RangeError);
  });

  it('bucketMinutesFor: the smallest g with ceil(span / g) + 2 <= 250', () => {
    expect(ClickDedup.bucketMinutesFor(0)).toBe(1);
    expect(ClickDedup.bucketMinutesFor(66)).toBe(1);
    expect(ClickDedup.bucketMinutesFor(248)).toBe(1);
    expect(ClickDedup.bucketMinutesFor(249)).toBe(2);
    expect(ClickDedup.bucketMinutesFor(496)).toBe(2);
    expect(ClickDedup.bucketMinutesFor(497)).toBe(3);
    expect(ClickDedup.bucketMinutesFor(24 * 60)).toBe(6);
    for (let span = 0; span < 5000; span += 7) {
      const g = ClickDedup.bucketMinutesFor(span);
      expect(Math.ceil(span / g) + 2).toBeLessThanOrEqual(250);
      if (g > 1) expect(Math.ceil(span / (g - 1)) + 2).toBeGreaterThan(250);
    }
    expect(() => ClickDedup.bucketMinutesFor(-1)).toThrow(RangeError);
  });

  it('holds 200k random ids exactly: no false duplicates', () => {
    const d = new ClickDedup();
    const ids = uuids(250_000, 1);
    let admitted = 0;
    for (const id of ids.slice(0, 200_000)) if (d.addIfAbsent(id, 28_000_000)) admitted++;
    expect(admitted).toBe(200_000);
    expect(d.size).toBe(200_000);
    for (const id of ids.slice(0, 200_000)) {
      if (!d.has(id)) throw new Error(`lost ${id}`);
      if (d.addIfAbsent(id, 28_000_000)) throw new Error(`re-admitted ${id}`);
    }
    expect(d.size).toBe(200_000);
    let falsePositives = 0;
    for (const id of ids.slice(200_000)) if (d.has(id)) falsePositives++;
    expect(falsePositives).toBe(0);
    d.checkInvariant();
  });

  it('keeps at most 12 bytes per id at 200k and 1M ids, and after expiring half', () => {
    for (const n of [200_000, 1_000_000]) {
      const d = new ClickDedup();
      const next = prng(n);
      const hs = new Uint32Array(n), ls = new Uint32Array(n);
      for (let i = 0; i < n; i++) {
        (hs[i] = next()), (ls[i] = next());
        d.addHashed(hs[i]!, ls[i]!, 1000 + (i % 2));
        if (i >= 65_536 && i % 4096 === 0) expect(d.byteLength / d.size).toBeLessThanOrEqual(12);
      }
      expect(d.size).toBe(n);
      expect(d.byteLength / d.size).toBeLessThanOrEqual(12);
      expect(d.expireBefore(1001)).toBe(n / 2);
      expect(d.byteLength / d.size).toBeLessThanOrEqual(12);
      d.checkInvariant();
      for (let i = 0; i < n; i++) if (d.hasHashed(hs[i]!, ls[i]!) !== (i % 2 === 1)) throw new Error(`id ${i}`);
      const r = ClickDedup.fromBlocks(d.takeChanges().appends);
      expect(r.byteLength / r.size).toBeLessThanOrEqual(12);
      expect(r.size).toBe(n / 2);
    }
  });

  it('grows past load 0.93 and keeps every id', () => {
    const d = new ClickDedup();
    const b0 = d.byteLength;
    for (let n = 0; n < 952; n++) d.addIfAbsent(`id-${n}`, n >> 10);
    expect(d.byteLength).toBe(b0); // 952 / 1024 = 0.93
    d.addIfAbsent('id-952', 0);
    expect(d.byteLength).toBeGreaterThan(b0);
    for (let n = 953; n < 100_000; n++) d.addIfAbsent(`id-${n}`, n >> 10);
    expect(d.size).toBe(100_000);
    for (let n = 0; n < 100_000; n++) if (!d.has(`id-${n}`)) throw new Error(`lost id-${n}`);
    d.checkInvariant();
  });

  it('grows at the slack end: many keys whose home is the last slot', () => {
    const d = new ClickDedup();
    for (let i = 0; i < 5000; i++) {
      expect(d.addHashed(i, 0xffffffff - (i % 50), 7)).toBe(true);
      if (i % 500 === 0) d.checkInvariant();
    }
    expect(d.size).toBe(5000);
    for (let i = 0; i < 5000; i++) expect(d.addHashed(i, 0xffffffff - (i % 50), 7)).toBe(false);
    d.checkInvariant();
    // and the same at the start of the table, and both ends after expiry
    for (let i = 0; i < 2000; i++) d.addHashed(i, i % 3, 8);
    expect(d.expireBefore(8)).toBe(5000);
    d.checkInvariant();
    expect(d.size).toBe(2000);
    const r = ClickDedup.fromBlocks(d.takeChanges().appends, { minMinute: 8 });
    expect(Buffer.from(r.toBytes())).toEqual(Buffer.from(d.toBytes()));
    r.checkInvariant();
  });

  it('holds the largest key (the bit pattern of an empty slot) like any other', () => {
    const d = new ClickDedup();
    expect(d.hasHashed(0xffffffff, 0xffffffff)).toBe(false);
    expect(d.addHashed(0xffffffff, 0xfffffffe, 3)).toBe(true);
    expect(d.hasHashed(0xffffffff, 0xffffffff)).toBe(false);
    expect(d.addHashed(0xffffffff, 0xffffffff, 3)).toBe(true);
    expect(d.addHashed(0xffffffff, 0xffffffff, 4)).toBe(false);
    expect(d.hasHashed(0xffffffff, 0xffffffff)).toBe(true);
    expect(d.hasHashed(0xfffffffe, 0xffffffff)).toBe(false);
    d.checkInvariant();
    const r = ClickDedup.fromBlocks(d.takeChanges().appends);
    expect(r.hasHashed(0xffffffff, 0xffffffff)).toBe(true);
    expect(r.expireBefore(4)).toBe(1);
    expect(r.hasHashed(0xffffffff, 0xffffffff)).toBe(true);
    expect(r.expireBefore(5)).toBe(1);
    expect(r.hasHashed(0xffffffff, 0xffffffff)).toBe(false);
    r.checkInvariant();
  });

  it('keys sharing l with different h are distinct, in h order', () => {
    const d = new ClickDedup();
    const hs = [5, 0xffffffff, 0, 0x80000000, 7, 1];
    for (const h of hs) expect(d.addHashed(h, 12345, 1)).toBe(true);
    for (const h of hs) expect(d.addHashed(h, 12345, 1)).toBe(false);
    for (const h of [2, 6, 0x7fffffff, 0xfffffffe]) expect(d.hasHashed(h, 12345)).toBe(false);
    expect(d.hasHashed(12345, 5)).toBe(false);
    d.checkInvariant();
    const img = d.toBytes();
    const dv = new DataView(img.buffer);
    expect(Array.from({ length: hs.length }, (_, i) => dv.getUint32(4 + 12 * i, true))).toEqual([...hs].sort((a, b) => a - b));
  });

  it('expireBefore drops exactly the older ids and keeps the rest findable', () => {
    const d = new ClickDedup();
    const minuteOf = new Map<string, number>();
    for (let n = 0; n < 30_000; n++) {
      const id = `c${n}`;
      const m = 1000 + (n % 60);
      d.addIfAbsent(id, m);
      minuteOf.set(id, m);
    }
    const expected = [...minuteOf.values()].filter((m) => m < 1020).length;
    expect(d.expireBefore(1020)).toBe(expected);
    expect(d.size).toBe(30_000 - expected);
    for (const [id, m] of minuteOf) expect(d.has(id)).toBe(m >= 1020);
    expect(d.expireBefore(1020)).toBe(0);
    expect(d.expireBefore(1000)).toBe(0); // the floor never goes back
    // Dropped ids are expired: a late sighting is counted but not kept; kept ones still dedup.
    expect(d.addIfAbsent('c0', 1000)).toBe(true);
    expect(d.has('c0')).toBe(false);
    expect(d.addIfAbsent('c0', 1070)).toBe(true);
    expect(d.addIfAbsent('c59', 1070)).toBe(false);
    d.checkInvariant();
  });

  it('an id in an expired bucket that is still held stays a duplicate, unchanged', () => {
    const d = new ClickDedup({ bucketMinutes: 10 });
    d.addIfAbsent('x', 105); // bucket 10
    expect(d.expireBefore(100)).toBe(0); // bucket 10 starts at minute 100: kept
    expect(d.expireBefore(109)).toBe(0); // still kept: its bucket does not lie wholly before 109
    expect(d.addIfAbsent('x', 95)).toBe(false); // bucket 9 < floor 10, but x is held
    expect(d.expireBefore(110)).toBe(1);
    expect(d.has('x')).toBe(false);
  });

  it('a duplicate with a later minute extends retention', () => {
    const d = new ClickDedup();
    d.addIfAbsent('x', 10);
    d.addIfAbsent('x', 20);
    expect(d.expireBefore(15)).toBe(0);
    expect(d.has('x')).toBe(true);
    expect(d.expireBefore(21)).toBe(1);
    expect(d.has('x')).toBe(false);
  });

  it('late minutes before any expiry are kept; over 250 buckets behind the newest they count as expired', () => {
    const d = new ClickDedup();
    expect(d.addIfAbsent('new', 1000)).toBe(true);
    expect(d.addIfAbsent('late', 995)).toBe(true);
    expect(d.addIfAbsent('late', 995)).toBe(false);
    expect(d.addIfAbsent('edge', 750)).toBe(true);
    expect(d.has('edge')).toBe(true);
    expect(d.addIfAbsent('ancient', 749)).toBe(true);
    expect(d.has('ancient')).toBe(false);
    // A jump forces out what falls over 250 buckets behind it.
    expect(d.addIfAbsent('jump', 1001)).toBe(true);
    expect(d.has('edge')).toBe(false);
    expect(d.has('late')).toBe(true);
    expect(d.takeChanges().dropped).toEqual([750]);
    expect(d.addIfAbsent('far', 10_000_000)).toBe(true);
    expect(d.size).toBe(1);
    expect(d.blocks()).toEqual([10_000_000]);
    d.checkInvariant();
  });

  it('shrinks after expiring most ids, down to the floor capacity', () => {
    const d = new ClickDedup();
    const empty = d.byteLength;
    for (let n = 0; n < 100_000; n++) d.addIfAbsent(`id-${n}`, n < 99_100 ? 1 : 2);
    expect(d.expireBefore(2)).toBe(99_100);
    expect(d.byteLength).toBe(empty); // 900 ids at load 0.88 fit the 1024-slot floor
    for (let n = 99_100; n < 100_000; n++) expect(d.has(`id-${n}`)).toBe(true);
    expect(d.expireBefore(3)).toBe(900);
    expect(d.size).toBe(0);
    expect(d.byteLength).toBe(empty);
    expect(d.blocks()).toEqual([]);
    expect(d.takeChanges()).toEqual({ appends: [], dropped: [1, 2] }); // pending records die with their block
    d.checkInvariant();
  });

  it('toBytes / fromBytes round trip preserves membership, buckets and size', () => {
    const d = new ClickDedup({ bucketMinutes: 5 });
    const ids = uuids(5000, 2);
    ids.forEach((id, n) => d.addIfAbsent(id, 27_000_000 + (n % 10)));
    const bytes = d.toBytes();
    expect(bytes.byteLength).toBe(4 + 5000 * 12);
    const dv = new DataView(bytes.buffer);
    expect(dv.getUint32(0, true)).toBe(5000);
    const minutes = new Set(Array.from({ length: 5000 }, (_, i) => dv.getInt32(4 + 12 * i + 8, true)));
    expect([...minutes].sort()).toEqual([27_000_000, 27_000_005]); // first minute of each bucket
    // From a Buffer at a non-zero offset, as read from a file or a larger message.
    const framed = Buffer.concat([Buffer.from([9, 9, 9]), bytes]).subarray(3);
    const r = ClickDedup.fromBytes(framed, { bucketMinutes: 5 });
    r.checkInvariant();
    expect(r.size).toBe(5000);
    for (const id of ids) expect(r.has(id)).toBe(true);
    expect(r.has('not-an-id')).toBe(false);
    expect(Buffer.from(r.toBytes())).toEqual(Buffer.from(bytes));
    // The image is in no block store yet: all of it is pending, per bucket.
    expect(r.blocks()).toEqual([27_000_000, 27_000_005]);
    const again = ClickDedup.fromBlocks(r.takeChanges().appends, { bucketMinutes: 5 });
    expect(Buffer.from(again.toBytes())).toEqual(Buffer.from(bytes));
    expect(r.expireBefore(27_000_005)).toBe(d.expireBefore(27_000_005));
    expect(r.size).toBe(2500);
    expect(ClickDedup.fromBytes(new ClickDedup().toBytes()).size).toBe(0);
    // Entries in any order, with an explicit bucket size.
    const shuffled = Buffer.from(bytes);
    shuffled.copy(shuffled, 4, 4 + 12 * 4999, 4 + 12 * 5000);
    bytes.subarray(4, 16).forEach((v, i) => (shuffled[4 + 12 * 4999 + i] = v));
    const s = ClickDedup.fromBytes(shuffled, { bucketMinutes: 5 });
    expect(Buffer.from(s.toBytes())).toEqual(Buffer.from(bytes));
  });

  it('fromBytes rejects malformed buffers with ADAGG_E_SNAPSHOT_CORRUPT', () => {
    const d = new ClickDedup();
    for (let n = 0; n < 10; n++) d.addIfAbsent(`id-${n}`, n);
    const bytes = d.toBytes();
    const bad: Uint8Array[] = [
      bytes.subarray(0, bytes.length - 1), // truncated
      bytes.subarray(0, 3),
      new Uint8Array(0),
      Buffer.concat([bytes, Buffer.from([0])]), // trailing garbage
    ];
    const dup = Buffer.from(bytes);
    dup.copy(dup, 4 + 12, 4, 4 + 12); // entry 1 := entry 0
    bad.push(dup);
    const huge = Buffer.from(bytes);
    huge.writeUInt32LE(0xffffffff, 0);
    bad.push(huge);
    for (const b of bad) expectCorrupt(() => ClickDedup.fromBytes(b));
  });

  it('takeChanges: 8-byte records per block in the order recorded, expired blocks once', () => {
    const d = new ClickDedup({ bucketMinutes: 10 });
    d.addHashed(1, 100, 5); // block 0
    d.addHashed(2, 200, 17); // block 10
    d.addHashed(1, 100, 12); // raised to block 10
    d.addHashed(1, 100, 11); // same bucket: nothing to record
    d.addHashed(3, 50, 3);
    expect(d.blocks()).toEqual([0, 10]);
    const c = d.takeChanges();
    expect(c.dropped).toEqual([]);
    expect(c.appends.map((a) => a.block)).toEqual([0, 10]);
    expect(Buffer.from(c.appends[0]!.bytes)).toEqual(Buffer.from(records([1, 100], [3, 50])));
    expect(Buffer.from(c.appends[1]!.bytes)).toEqual(Buffer.from(records([2, 200], [1, 100])));
    expect(d.takeChanges()).toEqual({ appends: [], dropped: [] });
    expect(d.expireBefore(10)).toBe(1); // (3, 50); (1, 100) lives on in block 10
    d.addHashed(4, 400, 29);
    d.addHashed(5, 500, 9); // expired: counted, not recorded
    expect(d.blocks()).toEqual([10, 20]);
    const c2 = d.takeChanges();
    expect(c2.dropped).toEqual([0]);
    expect(c2.appends).toEqual([{ block: 20, bytes: records([4, 400]) }]);
    // A block that expires with records still pending is only dropped.
    d.addHashed(6, 600, 21);
    expect(d.expireBefore(30)).toBe(4);
    expect(d.takeChanges()).toEqual({ appends: [], dropped: [10, 20] });
  });

  it('fromBlocks: any split and order, highest block wins, old blocks ignored', () => {
    const blocks = [
      { block: 20, bytes: records([1, 1], [2, 2]) },
      { block: 10, bytes: records([2, 2], [3, 3]) },
      { block: 0, bytes: records([4, 4]) },
      { block: 20, bytes: records([5, 0xffffffff]) },
      { block: 30, bytes: new Uint8Array(0) },
    ];
    const d = ClickDedup.fromBlocks(blocks, { bucketMinutes: 10, minMinute: 13 }); // buckets < 1 expired
    d.checkInvariant();
    expect(d.size).toBe(4);
    expect(d.blocks()).toEqual([10, 20]);
    expect(d.hasHashed(4, 4)).toBe(false);
    expect(d.takeChanges()).toEqual({ appends: [], dropped: [] });
    expect(d.expireBefore(20)).toBe(1); // (3, 3); (2, 2) is in block 20
    expect(d.hasHashed(2, 2)).toBe(true);
    expect(d.takeChanges().dropped).toEqual([10]);
    // A Buffer view at an odd offset (not 4-aligned) reads the same.
    const odd = Buffer.concat([Buffer.from([0]), records([9, 9])]).subarray(1);
    expect(ClickDedup.fromBlocks([{ block: 0, bytes: odd }]).hasHashed(9, 9)).toBe(true);
    expect(ClickDedup.fromBlocks([]).size).toBe(0);
  });

  it('fromBlocks sorts skewed keys too (shared high bits, many equal l)', () => {
    const d = new ClickDedup();
    const next = prng(7);
    // (One long run in the live table, so each insert shifts it: crafted keys make any linear probing slow.)
    for (let i = 0; i < 4000; i++) d.addHashed(next(), 0x12345000 + (next() & 0xfff), 1 + (i % 3));
    for (let i = 0; i < 1000; i++) d.addHashed(next(), 0x77777777, 2);
    const r = ClickDedup.fromBlocks(d.takeChanges().appends);
    r.checkInvariant();
    expect(Buffer.from(r.toBytes())).toEqual(Buffer.from(d.toBytes()));
  });

  it('fromBlocks of ids repeated across blocks stays within 12 bytes per id', () => {
    const d = new ClickDedup();
    const next = prng(11);
    const hs = Array.from({ length: 100_000 }, () => next()), ls = hs.map(() => next());
    for (let m = 0; m < 3; m++) for (let i = 0; i < hs.length; i++) d.addHashed(hs[i]!, ls[i]!, 50 + m);
    const blocks = d.takeChanges().appends;
    expect(blocks.reduce((s, b) => s + b.bytes.byteLength / 8, 0)).toBe(300_000);
    const r = ClickDedup.fromBlocks(blocks);
    r.checkInvariant();
    expect(r.size).toBe(100_000);
    expect(r.byteLength / r.size).toBeLessThanOrEqual(12);
    expect(Buffer.from(r.toBytes())).toEqual(Buffer.from(d.toBytes()));
  });

  it('fromBlocks rejects ragged blocks and misaligned block numbers with ADAGG_E_SNAPSHOT_CORRUPT', () => {
    expectCorrupt(() => ClickDedup.fromBlocks([{ block: 0, bytes: new Uint8Array(7) }]));
    expectCorrupt(() => ClickDedup.fromBlocks([{ block: 10, bytes: new Uint8Array(12) }], { bucketMinutes: 10 }));
    expectCorrupt(() => ClickDedup.fromBlocks([{ block: 15, bytes: records([1, 1]) }], { bucketMinutes: 10 }));
    expectCorrupt(() => ClickDedup.fromBlocks([{ block: 1.5, bytes: records([1, 1]) }]));
    // Checked even for a block that would be ignored as expired.
    expectCorrupt(() => ClickDedup.fromBlocks([{ block: 0, bytes: new Uint8Array(3) }], { minMinute: 100 }));
  });

  it('matches the reference model, and fromBlocks of the persisted blocks matches the table (property)', () => {
    // Few ids (duplicates), l values at both ends of the range and shared between ids.
    const pool: Array<[number, number]> = [
      [1, 0], [2, 0], [3, 1], [4, 0x7fffffff], [5, 0x80000000], [6, 0xffffffff], [7, 0xffffffff],
      [0xffffffff, 0xfffffffe], [0xffffffff, 0xffffffff], [0, 0x12345678], [9, 0x12345678], [10, 0x9abcdef0], [11, 3],
    ];
    const op = fc.oneof(
      { weight: 8, arbitrary: fc.record({ k: fc.constant('add' as const), id: fc.nat(pool.length - 1), dm: fc.integer({ min: -400, max: 60 }) }) },
      { weight: 3, arbitrary: fc.record({ k: fc.constant('tick' as const), dm: fc.oneof(fc.integer({ min: 0, max: 30 }), fc.integer({ min: 240, max: 2000 })) }) },
      { weight: 2, arbitrary: fc.record({ k: fc.constant('expire' as const), back: fc.integer({ min: -20, max: 300 }) }) },
      { weight: 2, arbitrary: fc.record({ k: fc.constant('take' as const), cut: fc.boolean() }) },
    );
    const scenario = fc.record({
      g: fc.constantFrom(1, 1, 2, 7, 60),
      start: fc.constantFrom(28_000_000, 0, -1_000, -2_000_000_000),
      ops: fc.array(op, { maxLength: 120 }),
    });
    fc.assert(
      fc.property(scenario, ({ g, start, ops }) => {
        const d = new ClickDedup({ bucketMinutes: g });
        const model = new Model(g);
        const store = new BlockStore();
        let shadows: ClickDedup[] = []; // restored at cut points; must behave like d from then on
        let clock = start, maxCut = -Infinity;
        const check = () => {
          d.checkInvariant();
          expect(d.size).toBe(model.ids.size);
          for (const [h, l] of pool) expect(d.hasHashed(h, l)).toBe(model.ids.has(`${h}:${l}`));
          expect(d.blocks()).toEqual(model.blocks());
          for (const s of shadows) {
            expect(s.size).toBe(d.size);
            expect(s.blocks()).toEqual(d.blocks());
            expect(Buffer.from(s.toBytes())).toEqual(Buffer.from(d.toBytes()));
          }
        };
        for (const o of ops) {
          if (o.k === 'add') {
            const [h, l] = pool[o.id]!, minute = clock + o.dm * g;
            const want = model.add(h, l, minute);
            expect(d.addHashed(h, l, minute)).toBe(want);
            for (const s of shadows) expect(s.addHashed(h, l, minute)).toBe(want);
          } else if (o.k === 'tick') {
            clock += o.dm * g;
          } else if (o.k === 'expire') {
            const m = clock - o.back * g;
            const want = model.expire(m);
            expect(d.expireBefore(m)).toBe(want);
            for (const s of shadows) expect(s.expireBefore(m)).toBe(want);
            maxCut = Math.max(maxCut, m);
          } else {
            const c = d.takeChanges();
            for (const s of shadows) expect(s.takeChanges()).toEqual(c);
            store.apply(c);
            expect([...store.chunks.keys()].sort((x, y) => x - y)).toEqual(d.blocks()); // the store holds exactly the live blocks
            if (o.cut) {
              const opts = maxCut === -Infinity ? { bucketMinutes: g } : { bucketMinutes: g, minMinute: maxCut };
              shadows = [...shadows.slice(-2), ClickDedup.fromBlocks(store.blocks(), opts)];
            }
          }
          check();
        }
      }),
      { seed: 20240611, numRuns: 400 },
    );
  });

  it('collisionBound is n^2 / 2^65', () => {
    expect(DEDUP_HASH_BITS).toBe(64);
    expect(collisionBound(1e6)).toBeCloseTo(2.710505431213761e-8, 20);
    expect(collisionBound(1e6)).toBe(1e12 / 2 ** 65);
    expect(collisionBound(0)).toBe(0);
    expect(collisionBound(1e12)).toBe(1);
  });
});
