/**
 * The unkeyed pair of 32-bit hashes of a click id (64 bits in all) that dedupe tables of format 3
 * and earlier hold, and the false-duplicate bound of a 64-bit pair. The shard actor now keys its
 * table with SipHash-2-4 under the deployment's secret (siphash.ts, shard-dedup.ts): this pair can
 * be collided on purpose (issue 11, defect 13). It is still computed to check ids of a migrated
 * unkeyed state until they expire, and its outputs are persisted there: never change them.
 */

/**
 * Number of hash bits kept per click id. Ids are never stored: two ids whose 64-bit hashes are
 * equal are treated as the same click (a "false duplicate"), see {@link collisionBound}.
 */
export const DEDUP_HASH_BITS = 64;

/** Seed of the murmur half; any constant works, it only has to stay fixed because snapshots store hashes. */
export const MURMUR_SEED = 0x9e3779b9;

/**
 * FNV-1a-32 over the UTF-16LE bytes of `s` (low byte of each code unit first). Equals the textbook
 * byte-wise FNV-1a of `Buffer.from(s, 'utf16le')`, so it can be checked against any reference.
 * Code units, not UTF-8, because encoding would allocate; lone surrogates hash fine.
 *
 * Not the same function as `fnv1a32Utf8` in `model/partition.ts` (UTF-8 bytes, matching
 * nats-server's partition mapping, used for shard routing): the two give different numbers for
 * the same string. This one only has to agree with itself, but its outputs are persisted in dedupe
 * blocks and hot-split reports, so it must never change.
 */
export function fnv1a32Utf16(s: string): number {
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
 * Its high bits also pick the table slot (fmix32 diffuses every bit; FNV's are weaker).
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
 * once: birthday bound C(n,2)/2^64 <= n^2/2^65. E.g. 1e6 ids -> ~2.7e-8. For the unkeyed pair it
 * holds for non-adversarial ids only (collisions can be crafted); for the keyed SipHash pair it
 * holds for any ids an attacker without the secret can choose.
 */
export function collisionBound(n: number): number {
  return Math.min(1, (n * n) / 2 ** 65);
}
