/**
 * Rendezvous (highest-random-weight) hashing: each shard goes to the node with the highest
 * hash(node, shard). Deterministic on every node, balanced, and when a node joins or leaves only
 * the shards it wins or held move.
 */
export function rendezvousOwner(shard: number, nodes: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestScore = -1;
  for (const n of nodes) {
    const score = mix(hashString(n) ^ Math.imul(shard + 1, 0x9e3779b1));
    if (score > bestScore || (score === bestScore && best !== undefined && n < best)) {
      best = n;
      bestScore = score;
    }
  }
  return best;
}

function hashString(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

/** murmur3 fmix32: spreads the combined bits so every node has an equal chance per shard. */
function mix(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}
