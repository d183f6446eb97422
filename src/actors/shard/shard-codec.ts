import { AdaggError, ErrorCode } from '../../errors.ts';
import type { ShardActorConfig } from '../../model/shard-config.ts';
import type { StateReader } from '../../model/shard-state.ts';
import { MINUTE_MS } from '../../model/time.ts';
import type { RestoreStats } from '../../runtime/shard-behaviour.ts';
import { ClickDedup } from './click-dedup.ts';
import { HotState } from './hot-split.ts';
import { decodeLegacy, isLegacyVersion } from './legacy-snapshot.ts';
import { MinuteCounts } from './minute-counts.ts';
import { decodeStored, dedupPart, encodeHead, headVersion, parseHead } from './state-head.ts';

/**
 * A shard actor's persisted form, both ways: the head a commit writes (state-head.ts names the
 * parts) and the restore that reads a head and its parts back into an in-memory image. The same
 * code runs for every restart; a legacy whole-state snapshot (format 1 or 2, legacy-snapshot.ts)
 * is migrated here: its state is marked changed, so the first commit writes it out as increments
 * and replaces it with a head.
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
  dedup: ClickDedup;
  hot: HotState;
  restoreStats: RestoreStats | undefined;
}

/** Minutes per dedupe block, from the span of event time the table must cover. */
export function dedupBucketMinutes(config: ShardActorConfig): number {
  return ClickDedup.bucketMinutesFor(Math.ceil((config.retentionMs + config.allowedLatenessMs) / MINUTE_MS) + 2);
}

/** The head of the persisted state: scalars and the names of its parts. */
export function encodeShardHead(config: ShardActorConfig, p: Progress, openMinutes: number[], dedup: ClickDedup, hot: HotState): Uint8Array {
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
      // fromBytes marks every id pending, so the first commit appends each to its block.
      dedup: ClickDedup.fromBytes(old.dedup, { bucketMinutes: dedupBucketMinutes(config) }),
      hot: old.hot ?? new HotState(),
      restoreStats: undefined,
    };
  }
  const h = parseHead(doc, config.shard);
  const t0 = performance.now();
  const [minutes, blocks, hot] = await Promise.all([
    reader.minutes(h.open),
    reader.logs(h.blocks.map(dedupPart)),
    h.hot === null ? Promise.resolve(undefined) : HotState.restore(h.hot, reader),
  ]);
  const missing = h.blocks.filter((_, i) => blocks[i] === null);
  if (missing.length > 0) {
    throw new AdaggError(ErrorCode.SnapshotCorrupt, `shard ${config.shard}: dedupe blocks ${missing.join(', ')} named by the head are missing`);
  }
  const t1 = performance.now();
  const open = MinuteCounts.fromWrites(minutes, true);
  const t2 = performance.now();
  const dedup = ClickDedup.fromBlocks(
    h.blocks.map((block, i) => ({ block, bytes: blocks[i]! })),
    { bucketMinutes: h.bucketMinutes, ...(h.expiredBeforeMinute === NO_TIME ? {} : { minMinute: h.expiredBeforeMinute }) },
  );
  return {
    progress: { lastSeq: h.lastSeq, maxEventTs: h.maxEventTs, watermark: h.watermark, closedThrough: h.closedThrough, expiredBeforeMinute: h.expiredBeforeMinute },
    open,
    dedup,
    hot: hot ?? new HotState(),
    restoreStats: { readMs: Math.round(t1 - t0), openMs: Math.round(t2 - t1), dedupMs: Math.round(performance.now() - t2) },
  };
}
