/**
 * The gateway's part of the aggregate archive (docs/history.md, "Aggregate archive and tiered
 * queries"): with ADAGG_ARCHIVE=on, the archive tier the count queries read, and the aggregate
 * archiver (one gateway of many runs it, by a Redis lock), started. With `off`: neither, and the
 * queries read Redis only, as before.
 */
import path from 'node:path';
import type { Redis } from 'ioredis';
import type { CompiledOptions } from '../options.ts';
import { AggregateArchiver } from '../runtime/archive/aggregate-archiver.ts';
import type { Clock } from '../runtime/clock.ts';
import type { Logger } from '../runtime/logger.ts';
import { RedisKeys } from '../runtime/redis-keys.ts';
import type { ShardStatusReply } from '../runtime/query-protocol.ts';
import { archiveTier, type ArchiveTier } from './tiered-reads.ts';

type Opts = Pick<
  CompiledOptions,
  'prefix' | 'shards' | 'archive' | 'archiveDir' | 'hotRetentionMs' | 'aggArchiveIntervalMs' | 'countTtlMs' | 'snapshotIntervalMs' | 'tickIntervalMs' | 'queryTimeoutMs'
>;

/** The archive tier and the started archiver, or neither with ADAGG_ARCHIVE=off. */
export function gatewayAggregateArchive(
  redis: Redis,
  o: Opts,
  deps: { clock: Clock; log: Logger; status: (shard: number) => Promise<ShardStatusReply | null> },
): { tier: ArchiveTier | undefined; archiver: AggregateArchiver | undefined } {
  if (o.archive !== 'on') return { tier: undefined, archiver: undefined };
  const keys = new RedisKeys(o.prefix);
  const root = path.resolve(o.archiveDir);
  const archiver = new AggregateArchiver({
    redis,
    keys,
    shards: o.shards,
    root,
    clock: deps.clock,
    log: deps.log,
    status: async (shard) => {
      const s = await deps.status(shard);
      return s ? { lastSeq: s.lastSeq, sealedThrough: Math.min(s.sealedThrough ?? -1, s.closedThrough) } : undefined;
    },
    hotRetentionMs: o.hotRetentionMs,
    intervalMs: o.aggArchiveIntervalMs,
    countTtlMs: o.countTtlMs,
    // A few commits of the shard (ADAGG_SNAPSHOT_INTERVAL_MS) after a seal was seen.
    commitSlackMs: 3 * o.snapshotIntervalMs + 2 * o.tickIntervalMs,
    // Queries that read the archived range just before it moved finish within their timeout.
    evictDelayMs: Math.max(10_000, 2 * o.queryTimeoutMs),
  });
  archiver.start();
  return { tier: archiveTier(redis, keys, root), archiver };
}
