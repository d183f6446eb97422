/**
 * Replica acknowledgements (`WAIT`) for the writes that must survive a Redis failover: a shard's
 * commit, a new fencing epoch, a placement change and the dedupe secret. With
 * `ADAGG_REDIS_MIN_REPLICAS` = n > 0 such a write counts as done only once n replicas have it; a
 * shard actor whose commit was not acknowledged fails and restarts from what is stored, as after a
 * timed-out commit (docs/redis-ha.md).
 *
 * The policy travels with the connection (redis-connect.ts sets it from the options), so every
 * store built on a node's connections applies it without being told; a connection without one
 * (0 replicas, or a test's plain ioredis) never waits.
 *
 * @example
 * await redis.incr(key);
 * await awaitReplicas(redis, `epoch of shard ${shard}`); // throws unless enough replicas have it
 */
import type { Redis } from 'ioredis';
import { AdaggError, ErrorCode } from '../errors.ts';

/** How many replicas a durable write needs, and how long to wait for them. */
export interface ReplicaPolicy {
  /** Replicas that must acknowledge; 0: do not wait. */
  minReplicas: number;
  /** `WAIT`'s own timeout (below the connection's call deadline, so it answers first). */
  waitTimeoutMs: number;
}

const policies = new WeakMap<Redis, ReplicaPolicy>();

/** Makes the durable writes on `redis` wait for `p.minReplicas` replicas (nothing when 0). */
export function setReplicaPolicy(redis: Redis, p: ReplicaPolicy): void {
  if (p.minReplicas > 0) policies.set(redis, { ...p });
}

/** Whether durable writes on `redis` wait for replicas. */
export function waitsForReplicas(redis: Redis): boolean {
  return policies.has(redis);
}

/**
 * Waits until enough replicas have every write this connection has made so far (`WAIT` counts up
 * to the connection's last write, and replication is in order, so earlier writes by anyone are
 * covered too). Throws ADAGG_E_REDIS_UNAVAILABLE when fewer acknowledged in time: the write may
 * still be on the primary, and may still be lost in a failover; callers treat it as not done.
 * Must follow the write on the same connection, after its reply (a script's NOSCRIPT retry would
 * otherwise be sent after the WAIT).
 */
export async function awaitReplicas(redis: Redis, what: string): Promise<void> {
  const p = policies.get(redis);
  if (!p) return;
  const acked = Number(await redis.call('WAIT', p.minReplicas, p.waitTimeoutMs));
  if (acked < p.minReplicas) {
    throw new AdaggError(
      ErrorCode.RedisUnavailable,
      `${what}: ${acked} of ${p.minReplicas} Redis replicas acknowledged it within ${p.waitTimeoutMs} ms; treated as not written`,
      { details: { acked, wanted: p.minReplicas } },
    );
  }
}
