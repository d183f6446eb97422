/**
 * FNV-1a 32-bit over the UTF-8 bytes of a string (equal to the textbook byte-wise FNV-1a of
 * `Buffer.from(s, 'utf8')`). It is the same function nats-server uses for
 * `{{partition(n, ...)}}` mappings, so a publisher outside adagg can compute a shard itself; that
 * is why it hashes UTF-8 and not UTF-16 code units. Used for shard routing ({@link shardOf}) and
 * for picking the child of a split ad. Exported publicly from the package as `fnv1a32Utf8` and,
 * for compatibility, `fnv1a32`.
 *
 * Not the same function as `fnv1a32Utf16` in `actors/shard/click-hash.ts`, which hashes the
 * UTF-16LE code units of click ids for dedupe: the two give different numbers for the same string,
 * and both outputs are relied on (shard assignment here, persisted dedupe hashes there).
 */
export function fnv1a32Utf8(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    let c = s.charCodeAt(i);
    if (c < 0x80) {
      h = Math.imul(h ^ c, 0x01000193);
      continue;
    }
    // Encode to UTF-8 on the fly so the hash matches a byte-oriented implementation.
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      const lo = s.charCodeAt(i + 1);
      if (lo >= 0xdc00 && lo <= 0xdfff) {
        c = 0x10000 + ((c - 0xd800) << 10) + (lo - 0xdc00);
        i++;
      }
    }
    const bytes =
      c < 0x800
        ? [0xc0 | (c >> 6), 0x80 | (c & 63)]
        : c < 0x10000
          ? [0xe0 | (c >> 12), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63)]
          : [0xf0 | (c >> 18), 0x80 | ((c >> 12) & 63), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63)];
    for (const b of bytes) h = Math.imul(h ^ b, 0x01000193);
  }
  return h >>> 0;
}

/** The shard that owns an ad. Stable for a given shard count, which is fixed per stream. */
export function shardOf(adId: string, shards: number): number {
  return fnv1a32Utf8(adId) % shards;
}
