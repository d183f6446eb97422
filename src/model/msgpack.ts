import { Packr, Unpackr } from 'msgpackr';

/**
 * Plain MessagePack for stored state (state heads, legacy snapshots) and ranking messages, with
 * msgpackr configured to read and write what `@msgpack/msgpack` (used before) did:
 * - no records/structures: bytes stay plain MessagePack any client reads;
 * - maps decode to plain objects;
 * - 64-bit integers (@msgpack/msgpack wrote integers beyond 32 bits as int64/uint64) decode to
 *   numbers, not BigInt;
 * - `undefined` encodes as nil (msgpackr's default is an extension type other decoders reject);
 * - maps get the smallest header (fixmap, map16, map32) as before; msgpackr's default, map16
 *   always, costs two bytes per object and cannot hold more than 65535 keys;
 * - binary decodes to a Uint8Array view of the input, as before.
 * The bytes written are those of the old encoder except for integers beyond 32 bits, which
 * msgpackr writes as float64 and every decoder (the old one too) reads back as the same number.
 * test/unit/msgpack-compat.test.ts decodes bytes written by the old encoder.
 */
const packr = new Packr({ useRecords: false, encodeUndefinedAsNil: true, variableMapSize: true });
const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true, int64AsType: 'number' });

/**
 * Encodes a value. The result is a fresh, exactly sized array (msgpackr returns a view into its
 * shared buffer, which a structured clone to a worker would copy whole).
 */
export function encode(value: unknown): Uint8Array {
  return new Uint8Array(packr.pack(value));
}

/** Decodes one MessagePack document; throws on malformed or trailing bytes. */
export function decode(bytes: Uint8Array): unknown {
  // msgpackr caches a DataView on its input as an own property (`dataView`); it gets a new view of
  // the same memory (no copy), so the caller's array stays as it was.
  return unpackr.unpack(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength));
}
