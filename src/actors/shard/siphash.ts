import { randomBytes } from 'node:crypto';

/**
 * SipHash-2-4 (Aumasson & Bernstein, "SipHash: a fast short-input PRF", 2012) of a click id, keyed
 * with the deployment's 128-bit dedupe secret: the hash pair the dedupe table keeps. Unlike the
 * unkeyed pair it replaces (click-hash.ts), an attacker who does not know the key cannot find two
 * ids with the same pair, so a crafted click id cannot suppress another click (issue 11, defect 13).
 *
 * The message is the UTF-16LE bytes of the string (four code units per 64-bit word), so the hash is
 * injective over JS strings (lone surrogates included) and needs no encoding step. 64-bit words are
 * held as (high, low) int32 pairs: plain 32-bit integer arithmetic, no BigInt, no allocation.
 *
 * ```ts
 * const kh = new KeyedClickHash(randomDedupKey());
 * const h = kh.hash('click-1'), l = kh.lo; // the 64-bit tag is h * 2^32 + l
 * ```
 *
 * @module
 */

/** Bytes of a dedupe key (SipHash's 128-bit key). */
export const DEDUP_KEY_BYTES = 16;

/** A fresh random dedupe key (what a deployment stores on first use). */
export function randomDedupKey(): Uint8Array {
  return new Uint8Array(randomBytes(DEDUP_KEY_BYTES));
}

const u32le = (b: Uint8Array, o: number): number => (b[o]! | (b[o + 1]! << 8) | (b[o + 2]! << 16) | (b[o + 3]! << 24)) | 0;

/**
 * SipHash-2-4 with one key, over the UTF-16LE bytes of strings. `hash` returns the high 32 bits of
 * the 64-bit tag (unsigned) and leaves the low 32 bits in {@link lo}, so the hot path allocates
 * nothing. Not safe to share between interleaved callers (one `lo`), which the actor never does.
 */
export class KeyedClickHash {
  /** Low 32 bits (unsigned) of the last {@link hash}. */
  lo = 0;
  // Initial state: k0/k1 xor the "somepseudorandomlygeneratedbytes" constants, as (high, low) words.
  readonly #i0h: number;
  readonly #i0l: number;
  readonly #i1h: number;
  readonly #i1l: number;
  readonly #i2h: number;
  readonly #i2l: number;
  readonly #i3h: number;
  readonly #i3l: number;

  constructor(key: Uint8Array) {
    if (key.byteLength !== DEDUP_KEY_BYTES) throw new RangeError(`a dedupe key has ${DEDUP_KEY_BYTES} bytes, got ${key.byteLength}`);
    const k0l = u32le(key, 0), k0h = u32le(key, 4), k1l = u32le(key, 8), k1h = u32le(key, 12);
    this.#i0h = k0h ^ 0x736f6d65;
    this.#i0l = k0l ^ 0x70736575;
    this.#i1h = k1h ^ 0x646f7261;
    this.#i1l = k1l ^ 0x6e646f6d;
    this.#i2h = k0h ^ 0x6c796765;
    this.#i2l = k0l ^ 0x6e657261;
    this.#i3h = k1h ^ 0x74656462;
    this.#i3l = k1l ^ 0x79746573;
  }

  /**
   * SipHash-2-4 of `s` as UTF-16LE bytes: equal to the reference SipHash-2-4 of
   * `Buffer.from(s, 'utf16le')` under this key. Returns the high word; the low word is in `lo`.
   */
  hash(s: string): number {
    let v0h = this.#i0h, v0l = this.#i0l, v1h = this.#i1h, v1l = this.#i1l;
    let v2h = this.#i2h, v2l = this.#i2l, v3h = this.#i3h, v3l = this.#i3l;
    let t = 0, mh = 0, ml = 0;
    const n = s.length, full = n & ~3;
    // The rounds are written out twice (compression, finalization) rather than called: a function
    // cannot hand back eight words without allocating, and this is the per-click hot path.
    for (let i = 0; i <= full; i += 4) {
      if (i < full) {
        ml = s.charCodeAt(i) | (s.charCodeAt(i + 1) << 16);
        mh = s.charCodeAt(i + 2) | (s.charCodeAt(i + 3) << 16);
      } else {
        // The last word: the 0-3 remaining code units, and the byte length mod 256 in the top byte.
        const r = n - full;
        ml = r > 0 ? s.charCodeAt(i) | (r > 1 ? s.charCodeAt(i + 1) << 16 : 0) : 0;
        mh = (r > 2 ? s.charCodeAt(i + 2) : 0) | ((2 * n) << 24);
      }
      v3h ^= mh;
      v3l ^= ml;
      for (let r = 0; r < 2; r++) {
        t = (v0l + v1l) | 0; v0h = (v0h + v1h + (((v0l & v1l) | ((v0l | v1l) & ~t)) >>> 31)) | 0; v0l = t;
        t = (v1h << 13) | (v1l >>> 19); v1l = (v1l << 13) | (v1h >>> 19); v1h = t;
        v1h ^= v0h; v1l ^= v0l;
        t = v0h; v0h = v0l; v0l = t;
        t = (v2l + v3l) | 0; v2h = (v2h + v3h + (((v2l & v3l) | ((v2l | v3l) & ~t)) >>> 31)) | 0; v2l = t;
        t = (v3h << 16) | (v3l >>> 16); v3l = (v3l << 16) | (v3h >>> 16); v3h = t;
        v3h ^= v2h; v3l ^= v2l;
        t = (v0l + v3l) | 0; v0h = (v0h + v3h + (((v0l & v3l) | ((v0l | v3l) & ~t)) >>> 31)) | 0; v0l = t;
        t = (v3h << 21) | (v3l >>> 11); v3l = (v3l << 21) | (v3h >>> 11); v3h = t;
        v3h ^= v0h; v3l ^= v0l;
        t = (v2l + v1l) | 0; v2h = (v2h + v1h + (((v2l & v1l) | ((v2l | v1l) & ~t)) >>> 31)) | 0; v2l = t;
        t = (v1h << 17) | (v1l >>> 15); v1l = (v1l << 17) | (v1h >>> 15); v1h = t;
        v1h ^= v2h; v1l ^= v2l;
        t = v2h; v2h = v2l; v2l = t;
      }
      v0h ^= mh;
      v0l ^= ml;
    }
    v2l ^= 0xff;
    for (let r = 0; r < 4; r++) {
      t = (v0l + v1l) | 0; v0h = (v0h + v1h + (((v0l & v1l) | ((v0l | v1l) & ~t)) >>> 31)) | 0; v0l = t;
      t = (v1h << 13) | (v1l >>> 19); v1l = (v1l << 13) | (v1h >>> 19); v1h = t;
      v1h ^= v0h; v1l ^= v0l;
      t = v0h; v0h = v0l; v0l = t;
      t = (v2l + v3l) | 0; v2h = (v2h + v3h + (((v2l & v3l) | ((v2l | v3l) & ~t)) >>> 31)) | 0; v2l = t;
      t = (v3h << 16) | (v3l >>> 16); v3l = (v3l << 16) | (v3h >>> 16); v3h = t;
      v3h ^= v2h; v3l ^= v2l;
      t = (v0l + v3l) | 0; v0h = (v0h + v3h + (((v0l & v3l) | ((v0l | v3l) & ~t)) >>> 31)) | 0; v0l = t;
      t = (v3h << 21) | (v3l >>> 11); v3l = (v3l << 21) | (v3h >>> 11); v3h = t;
      v3h ^= v0h; v3l ^= v0l;
      t = (v2l + v1l) | 0; v2h = (v2h + v1h + (((v2l & v1l) | ((v2l | v1l) & ~t)) >>> 31)) | 0; v2l = t;
      t = (v1h << 17) | (v1l >>> 15); v1l = (v1l << 17) | (v1h >>> 15); v1h = t;
      v1h ^= v2h; v1l ^= v2l;
      t = v2h; v2h = v2l; v2l = t;
    }
    this.lo = (v0l ^ v1l ^ v2l ^ v3l) >>> 0;
    return (v0h ^ v1h ^ v2h ^ v3h) >>> 0;
  }
}

/**
 * A fingerprint of a dedupe key, recorded in the state head so that a restore under a different
 * key (a lost or replaced secret) fails loudly instead of silently missing every duplicate. It is a
 * SipHash output under the key, so it reveals nothing useful about the key.
 */
export function dedupKeyCheck(key: Uint8Array): string {
  const kh = new KeyedClickHash(key);
  const h = kh.hash('adagg dedupe key check');
  return h.toString(16).padStart(8, '0') + kh.lo.toString(16).padStart(8, '0');
}
