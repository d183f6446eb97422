/**
 * A new fencing epoch for one unit (a shard actor, a hot child, an archiver): the step every new
 * owner takes before it reads or writes the unit's state. Each owner's fenced Lua steps
 * (fenced-step-lua.ts) refuse an epoch that is not the current one, so from this call on every
 * earlier owner of the unit is fenced.
 *
 * @example
 * const epoch = await takeEpoch(redis, keys, 'a-s3', 'archiver a-s3');
 */
import type { Redis } from 'ioredis';
import type { RedisKeys } from './redis-keys.ts';
import { awaitReplicas } from './redis-replicas.ts';
import type { UnitId } from './shard-store.ts';

/**
 * INCR of the unit's epoch key (`keys.epoch(unit)`), counted as taken only once the connection's
 * replica policy is met: an epoch used before a replica has it could be granted again after a
 * failover. `who` names the owner in a replica-wait error.
 */
export async function takeEpoch(redis: Redis, keys: RedisKeys, unit: UnitId, who: string): Promise<number> {
  const epoch = await redis.incr(keys.epoch(unit));
  await awaitReplicas(redis, `${who}: epoch ${epoch}`);
  return epoch;
}
