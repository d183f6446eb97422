/**
 * One MessagePack library (msgpackr) for stored state and ranking messages: bytes written by the
 * library used before (@msgpack/msgpack) decode to the same values, and what we write now is plain
 * MessagePack that reads back as written.
 */
import { describe, expect, it } from 'vitest';
import { decodeLegacy } from '../../src/actors/shard/legacy-snapshot.ts';
import { parseHead } from '../../src/actors/shard/state-head.ts';
import { decode, encode } from '../../src/model/msgpack.ts';
import { OLD_MSGPACK_CASES, pattern, type OldMsgpackCase } from '../fixtures/old-msgpack.ts';

const bytes = (hex: string): Uint8Array => new Uint8Array(Buffer.from(hex, 'hex'));
const hexOf = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const named = (name: string): { value: unknown; hex: string } => {
  const c = OLD_MSGPACK_CASES.find((x) => x.name.startsWith(name));
  if (!c) throw new Error(`no fixture "${name}"`);
  return c;
};

describe('bytes written by @msgpack/msgpack', () => {
  it.each(OLD_MSGPACK_CASES.map((c): [string, OldMsgpackCase] => [c.name, c]))('%s: decode to the same value', (_name, c) => {
    expect(c.hex, 'fixture hex missing').not.toBe('');
    expect(decode(bytes(c.hex))).toStrictEqual(c.value);
  });

  it('64-bit integers decode to numbers, never BigInt', () => {
    // 0xcf: uint64 1795318123456; 0xd3: int64 -2^40.
    expect(decode(bytes('cf000001a2014c8bc0'))).toBe(1_795_318_123_456);
    expect(decode(bytes('d3ffffff0000000000'))).toBe(-(2 ** 40));
  });

  it('binary decodes to a Uint8Array with its own offset and length', () => {
    const b = decode(bytes('93c403010203a178c400')) as [Uint8Array, string, Uint8Array];
    expect(b[0]).toBeInstanceOf(Uint8Array);
    expect([...b[0]]).toEqual([1, 2, 3]);
    expect(b[0].byteLength).toBe(3);
    expect(b[2].byteLength).toBe(0);
  });

  it('a stored head and legacy snapshots parse as before', () => {
    const head = parseHead(decode(bytes(named('state head (format 3) without').hex)), 5);
    expect(head).toMatchObject({ shard: 5, lastSeq: 123_456, maxEventTs: 1_795_318_123_456, expiredBeforeMinute: -1, bucketMinutes: 60 });
    const v1 = decodeLegacy(decode(bytes(named('legacy snapshot (format 1)').hex)), 3);
    expect(v1).toMatchObject({ lastSeq: 9, maxEventTs: 1_795_318_123_456, watermark: 1_795_318_113_456 });
    expect([...v1.open.keys()]).toEqual([29_921_969]);
    expect([...v1.dedup]).toEqual([...pattern(28, 1)]);
    const v2 = decodeLegacy(decode(bytes(named('legacy snapshot (format 2)').hex)), 3);
    expect(v2.hot?.isEmpty()).toBe(false);
  });
});

describe('what msgpackr writes now', () => {
  it.each(OLD_MSGPACK_CASES.map((c): [string, OldMsgpackCase] => [c.name, c]))('%s: reads back as written', (_name, c) => {
    expect(decode(encode(c.value))).toStrictEqual(c.value);
  });

  it('is the same bytes as before, except integers beyond 32 bits (now float64, read back exactly)', () => {
    for (const name of ['ranking message', 'floats, strings', 'long arrays']) {
      const c = named(name);
      expect(hexOf(encode(c.value)), name).toBe(c.hex);
    }
    expect(hexOf(encode(1_795_318_123_456))).toBe('cb427a2014c8bc0000');
  });

  it('writes undefined as nil and returns a fresh, exactly sized Uint8Array', () => {
    expect(decode(encode({ a: undefined, b: [undefined] }))).toStrictEqual({ a: null, b: [null] });
    const a = encode([1, 2, 3]);
    const b = encode('x');
    expect(a.constructor).toBe(Uint8Array);
    expect(a.byteOffset).toBe(0);
    expect(a.buffer.byteLength).toBe(a.byteLength);
    expect(hexOf(a)).toBe('93010203');
    expect(hexOf(b)).toBe('a178');
  });

  it('leaves the decoded array as it was (no cached properties on it)', () => {
    const input = encode([1, 'a', new Uint8Array([9])]);
    const before = new Uint8Array(input);
    decode(input);
    expect(input).toStrictEqual(before);
    expect(Object.keys(input)).toEqual(Object.keys(before));
  });

  it('refuses malformed and trailing bytes', () => {
    expect(() => decode(bytes('93010203ff'))).toThrow();
    expect(() => decode(bytes('9301'))).toThrow();
    expect(() => decode(new TextEncoder().encode('hello, not a snapshot'))).toThrow();
  });
});
