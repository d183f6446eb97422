import type { Redis } from 'ioredis';

/**
 * Reads a shard's current owner from the placement table (`<prefix>:placement`, field `s:<n>`),
 * for routing queries to exactly that node. Null when the shard is unplaced (static mode).
 */
export function placementOwnerLookup(redis: Redis, prefix: string): (shard: number) => Promise<string | null> {
  const key = `${prefix}:placement`;
  return async (shard) => {
    const raw = await redis.hget(key, `s:${shard}`);
    if (!raw) return null;
    const owner = (JSON.parse(raw) as { owner?: string | null }).owner;
    return typeof owner === 'string' && owner !== '' ? owner : null;
  };
}
