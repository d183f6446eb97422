import { randomBytes, randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  ClickDedup,
  DEDUP_HASH_BITS,
  MURMUR_SEED,
  collisionBound,
  fnv1a32,
  murmur3_32,
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
      expect(fnv1a32(s)).toBe(fnvRef(utf16(s)));
      expect(murmur3_32(s)).toBe(murmurRef(utf16(s), MURMUR_SEED));
      expect(murmur3_32(s, 7)).toBe(murmurRef(utf16(s), 7));
    }
    expect(fnv1a32('\ud800')).toBe(fnvRef(new Uint8Array([0x00, 0xd8])));
  });

  it('return unsigned 32-bit values', () => {
    for (let n = 0; n < 200; n++) {
      const s = randomUUID();
      for (const v of [fnv1a32(s), murmur3_32(s)]) {
        expect(Number.isInteger(v) && v >= 0 && v <= 0xffffffff).toBe(true);
      }
    }
  });
});

describe('ClickDedup', () => {
  it('add / has / duplicate semantics', () => {
    const d = new ClickDedup();
    expect(d.size).toBe(0);
    expect(d.has('a')).toBe(false);
    expect(d.addIfAbsent('a', 100)).toBe(true);
    expect(d.has('a')).toBe(true);
    expect(d.addIfAbsent('a', 100)).toBe(false);
    expect(d.addIfAbsent('a', 50)).toBe(false);
    expect(d.addIfAbsent('b', 0)).toBe(true); // minute 0 is a real minute, not "empty"
    expect(d.addIfAbsent('', -5)).toBe(true);
    expect(d.has('')).toBe(true);
    expect(d.has('b')).toBe(true);
    expect(d.has('c')).toBe(false);
    expect(d.size).toBe(3);
    expect(d.byteLength).toBe(1024 * 12);
  });

  it('rejects bad minutes and capacities', () => {
    const d = new ClickDedup(8);
    for (const m of [-2147483648, 1.5, Number.NaN, 2 ** 31, Infinity]) {
      expect(() => d.addIfAbsent('x', m)).toThrow(RangeError);
    }
    expect(d.size).toBe(0);
    expect(d.addIfAbsent('x', 2147483647)).toBe(true);
    for (const c of [0, 4, 100, 1.5, 2 ** 31]) expect(() => new ClickDedup(c)).toThrow(RangeError);
  });

  it('holds 200k random ids exactly: no false duplicates', () => {
    const d = new ClickDedup();
    const ids = Array.from({ length: 200_000 }, () => randomUUID());
    let admitted = 0;
    for (const id of ids) if (d.addIfAbsent(id, 28_000_000)) admitted++;
    expect(admitted).toBe(200_000);
    expect(d.size).toBe(200_000);
    for (const id of ids) {
      if (!d.has(id)) throw new Error(`lost ${id}`);
      if (d.addIfAbsent(id, 28_000_000)) throw new Error(`re-admitted ${id}`);
    }
    expect(d.size).toBe(200_000);
    let falsePositives = 0;
    for (let n = 0; n < 50_000; n++) if (d.has(randomUUID())) falsePositives++;
    expect(falsePositives).toBe(0);
  });

  it('grows (x2) past load 0.6 and keeps every id', () => {
    const d = new ClickDedup(8);
    for (let n = 0; n < 4; n++) d.addIfAbsent(`id-${n}`, n);
    expect(d.byteLength).toBe(8 * 12); // 4/8 = 0.5
    d.addIfAbsent('id-4', 4); // 5/8 > 0.6
    expect(d.byteLength).toBe(16 * 12);
    for (let n = 5; n < 10_000; n++) d.addIfAbsent(`id-${n}`, n);
    expect(d.size).toBe(10_000);
    expect(d.byteLength).toBe(32768 * 12); // 10000/16384 > 0.6, 10000/32768 <= 0.6
    for (let n = 0; n < 10_000; n++) if (!d.has(`id-${n}`)) throw new Error(`lost id-${n}`);
  });

  it('expireBefore drops exactly the older ids and keeps the rest findable', () => {
    const d = new ClickDedup(1 << 16);
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
    // Dropped ids can be admitted again; kept ones still dedup.
    expect(d.addIfAbsent('c0', 1070)).toBe(true);
    expect(d.addIfAbsent('c59', 1070)).toBe(false);
  });

  it('expireBefore is correct under heavy clustering (random model check)', () => {
    for (let round = 0; round < 8; round++) {
      const d = new ClickDedup(64);
      const model = new Map<string, number>();
      for (let step = 0; step < 3000; step++) {
        const id = `k${Math.floor(Math.random() * 400)}`;
        const m = step >> 5;
        if (d.addIfAbsent(id, m) !== !model.has(id)) throw new Error(`add ${id} at step ${step}`);
        model.set(id, Math.max(model.get(id) ?? m, m));
        if (step % 97 === 96) {
          const cut = m - 1 - Math.floor(Math.random() * 3);
          let want = 0;
          for (const [k, v] of model) if (v < cut) (model.delete(k), want++);
          expect(d.expireBefore(cut)).toBe(want);
          expect(d.size).toBe(model.size);
          for (let n = 0; n < 400; n++) if (d.has(`k${n}`) !== model.has(`k${n}`)) throw new Error(`k${n}`);
        }
      }
    }
  });

  it('expireBefore handles a probe run that wraps past the end of the table', () => {
    // Four ids whose home is slot 6 of 8 occupy slots 6, 7, 0, 1; expiring the first must re-seat
    // the others without stranding the one at slot 1 behind a new gap.
    const ids: string[] = [];
    for (let n = 0; ids.length < 4; n++) if ((murmur3_32(`w${n}`) & 7) === 6) ids.push(`w${n}`);
    const d = new ClickDedup(8);
    ids.forEach((id, n) => d.addIfAbsent(id, n === 0 ? 1 : 5));
    expect(d.byteLength).toBe(8 * 12);
    expect(d.expireBefore(2)).toBe(1);
    expect(ids.map((id) => d.has(id))).toEqual([false, true, true, true]);
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

  it('shrinks after expiring most ids, never below the initial capacity', () => {
    const d = new ClickDedup(1024);
    for (let n = 0; n < 100_000; n++) d.addIfAbsent(`id-${n}`, n < 99_000 ? 1 : 2);
    expect(d.expireBefore(2)).toBe(99_000);
    expect(d.byteLength).toBe(4096 * 12); // 1000 ids at load (0.15, 0.3]
    for (let n = 99_000; n < 100_000; n++) expect(d.has(`id-${n}`)).toBe(true);
    expect(d.expireBefore(3)).toBe(1000);
    expect(d.size).toBe(0);
    expect(d.byteLength).toBe(1024 * 12);
  });

  it('toBytes / fromBytes round trip preserves membership, minutes and size', () => {
    const d = new ClickDedup();
    const ids = Array.from({ length: 5000 }, () => randomUUID());
    ids.forEach((id, n) => d.addIfAbsent(id, 27_000_000 + (n % 10)));
    const bytes = d.toBytes();
    expect(bytes.byteLength).toBe(4 + 5000 * 12);
    expect(new DataView(bytes.buffer).getUint32(0, true)).toBe(5000);
    // From a Buffer at a non-zero offset, as read from a file or a larger message.
    const framed = Buffer.concat([Buffer.from([9, 9, 9]), bytes]).subarray(3);
    const r = ClickDedup.fromBytes(framed);
    expect(r.size).toBe(5000);
    for (const id of ids) expect(r.has(id)).toBe(true);
    expect(r.has(randomUUID())).toBe(false);
    expect(r.expireBefore(27_000_005)).toBe(d.expireBefore(27_000_005));
    expect(r.size).toBe(2500);
    expect(ClickDedup.fromBytes(new ClickDedup().toBytes()).size).toBe(0);
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
    const emptyMinute = Buffer.from(bytes);
    emptyMinute.writeInt32LE(-2147483648, 4 + 8);
    bad.push(emptyMinute);
    const huge = Buffer.from(bytes);
    huge.writeUInt32LE(0xffffffff, 0);
    bad.push(huge);
    for (const b of bad) {
      const e = catchError(() => ClickDedup.fromBytes(b));
      expect(e).toBeInstanceOf(AdaggError);
      expect((e as AdaggError).code).toBe('ADAGG_E_SNAPSHOT_CORRUPT');
      expect((e as AdaggError).code).toBe(ErrorCode.SnapshotCorrupt);
    }
  });

  it('collisionBound is n^2 / 2^65', () => {
    expect(DEDUP_HASH_BITS).toBe(64);
    expect(collisionBound(1e6)).toBeCloseTo(2.710505431213761e-8, 20);
    expect(collisionBound(1e6)).toBe(1e12 / 2 ** 65);
    expect(collisionBound(0)).toBe(0);
    expect(collisionBound(1e12)).toBe(1);
  });
});
