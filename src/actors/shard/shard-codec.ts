import { AdaggError, ErrorCode } from '../../errors.ts';
import type { ShardActorConfig } from '../../model/shard-config.ts';
import type { StateReader } from '../../model/shard-state.ts';
import { MINUTE_MS } from '../../model/time.ts';
import type { RestoreStats } from '../../runtime/shard-behaviour.ts';
import { ClickDedup } from './click-dedup.ts';
import { HotState } from './hot-split.ts';
import { decodeLegacy, isLegacyVersion } from './legacy-snapshot.ts';
import { RiskEngine } from './risk-engine.ts';
import { riskRulesOf } from './risk-setup.ts';
import { MinuteCounts } from './minute-counts.ts';
import { dedupPart, defaultDedupKey, legacyDedupPart, ShardDedup } from './shard-dedup.ts';
import { dedupKeyCheck } from './siphash.ts';
import { decodeStored, encodeHead, headVersion, parseHead } from './state-head.ts';

/**
 * A shard actor's persisted form, both ways: the head a commit writes (state-head.ts names the
 * parts) and the restore that reads a head and its parts back into an in-memory image. The same
 * code runs for every restart; a legacy whole-state snapshot (format 1 or 2, legacy-snapshot.ts)
 * is migrated here: its state is marked changed, so the first commit writes it out as increments
 * and replaces it with a head. The unkeyed dedupe ids of formats 1-3 become the legacy table of a
 * ShardDedup (shard-dedup.ts), checked beside the keyed one until the horizon drops them.
 */

/** No event seen / no minute closed / nothing expired yet. */
export const NO_TIME = -1;

/** Stream position and event time of a shard actor: what the head carries besides part names. */
export interface Progress {
  lastSeq: number;
  maxEventTs: number;
  watermark: number;
  closedThrough: number;
  /** Dedupe ids of minutes before this have been dropped (NO_TIME: never). */
  expiredBeforeMinute: number;
}

/** Everything a restore rebuilds, handed to the ShardActor constructor. */
export interface ShardImage {
  progress: Progress;
  open: Map<number, MinuteCounts>;
  dedup: ShardDedup;
  hot: HotState;
  /** Invalid-click rules and the clicks they hold; undefined without rules. */
  risk?: RiskEngine | undefined;
  restoreStats: RestoreStats | undefined;
}

/** Minutes per dedupe block, from the span of event time the table must cover. */
export function dedupBucketMinutes(config: ShardActorConfig): number {
  return ClickDedup.bucketMinutesFor(Math.ceil((config.retentionMs + config.allowedLatenessMs) / MINUTE_MS) + 2);
}

/** The key an actor hashes click ids with: the deployment's, or (no key configured) the process's. */
function dedupKey(config: ShardActorConfig): Uint8Array {
  return config.dedupKey ?? defaultDedupKey();
}

/** The dedupe of a new actor: keyed, empty. */
export function freshDedup(config: ShardActorConfig): ShardDedup {
  return new ShardDedup(dedupKey(config), new ClickDedup({ bucketMinutes: dedupBucketMinutes(config) }));
}

/** The head of the persisted state: scalars and the names of its parts. */
export function encodeShardHead(config: ShardActorConfig, p: Progress, openMinutes: number[], dedup: ShardDedup, hot: HotState, risk?: unknown): Uint8Array {
  return encodeHead({
    shard: config.shard,
    lastSeq: p.lastSeq,
    maxEventTs: p.maxEventTs,
    watermark: p.watermark,
    closedThrough: p.closedThrough,
    expiredBeforeMinute: p.expiredBeforeMinute,
    bucketMinutes: dedup.bucketMinutes,
    open: openMinutes,
    blocks: dedup.blocks(),
    hot: hot.isEmpty() ? null : hot.encodeHead(),
    keyCheck: dedupKeyCheck(dedupKey(config)),
    legacyBlocks: dedup.legacyBlocks(),
    risk: risk ?? null,
  });
}

/**
 * Reads a committed state back: the head names the open minutes (read from the count hashes), the
 * dedupe blocks and the hot-split parts, all read in parallel.
 */
export async function readShardImage(stored: Uint8Array, reader: StateReader, config: ShardActorConfig): Promise<ShardImage> {
  const doc = decodeStored(stored, config.shard);
  if (isLegacyVersion(headVersion(doc))) {
    const old = decodeLegacy(doc, config.shard);
    return {
      progress: { lastSeq: old.lastSeq, maxEventTs: old.maxEventTs, watermark: old.watermark, closedThrough: old.closedThrough, expiredBeforeMinute: NO_TIME },
      open: old.open,
      // Unkeyed ids: the legacy table. fromBytes marks every id pending, so the first commit
      // appends each to its (legacy) block.
      dedup: new ShardDedup(
        dedupKey(config),
        new ClickDedup({ bucketMinutes: dedupBucketMinutes(config) }),
        ClickDedup.fromBytes(old.dedup, { bucketMinutes: dedupBucketMinutes(config) }),
      ),
      hot: old.hot ?? new HotState(),
      restoreStats: undefined,
    };
  }
  const h = parseHead(doc, config.shard);
  const key = dedupKey(config);
  if (h.keyCheck !== null && h.keyCheck !== dedupKeyCheck(key)) {
    // Keyed ids under another key would never match again: every duplicate would be counted.
    throw new AdaggError(ErrorCode.SnapshotCorrupt, `shard ${config.shard}: the dedupe secret is not the one this state was written with`);
  }
  const t0 = performance.now();
  const parts = [...h.blocks.map(dedupPart), ...h.legacyBlocks.map(legacyDedupPart)];
  const place = typeof config.shard === 'number' && config.shards !== undefined ? { unit: config.shard, partitions: config.shards } : undefined;
  const [minutes, logs, hot, risk] = await Promise.all([
    reader.minutes(h.open),
    reader.logs(parts),
    h.hot === null ? Promise.resolve(undefined) : HotState.restore(h.hot, reader),
    h.risk === null || !place ? Promise.resolve(undefined) : RiskEngine.restore(h.risk, reader, riskRulesOf, place),
  ]);
  const missing = parts.filter((_, i) => logs[i] === null);
  if (missing.length > 0) {
    throw new AdaggError(ErrorCode.SnapshotCorrupt, `shard ${config.shard}: dedupe blocks ${missing.join(', ')} named by the head are missing`);
  }
  const t1 = performance.now();
  const open = MinuteCounts.fromWrites(minutes, true);
  const t2 = performance.now();
  const opts = { bucketMinutes: h.bucketMinutes, ...(h.expiredBeforeMinute === NO_TIME ? {} : { minMinute: h.expiredBeforeMinute }) };
  const keyed = ClickDedup.fromBlocks(h.blocks.map((block, i) => ({ block, bytes: logs[i]! })), opts);
  const n = h.blocks.length;
  const legacy = h.legacyBlocks.length === 0 ? null : ClickDedup.fromBlocks(h.legacyBlocks.map((block, i) => ({ block, bytes: logs[n + i]! })), opts);
  const dedup = new ShardDedup(key, keyed, legacy);
  return {
    progress: { lastSeq: h.lastSeq, maxEventTs: h.maxEventTs, watermark: h.watermark, closedThrough: h.closedThrough, expiredBeforeMinute: h.expiredBeforeMinute },
    open,
    dedup,
    hot: hot ?? new HotState(),
    risk,
    restoreStats: { readMs: Math.round(t1 - t0), openMs: Math.round(t2 - t1), dedupMs: Math.round(performance.now() - t2) },
  };
}
