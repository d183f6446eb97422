import { AdaggError, ErrorCode } from '../../errors.ts';
import type { UnitId } from '../../model/shard-state.ts';
import { HotState } from './hot-split.ts';
import { MinuteCounts } from './minute-counts.ts';

/**
 * Whole-state snapshots of releases before the incremental state format (versions 1 and 2: one
 * MessagePack blob rewritten by every commit). They are migrated: decoded once here, and the
 * restored actor writes everything out as increments in its first commit, which also replaces the
 * blob with a format-3 head (same key). An older release then refuses that head as an unknown
 * layout (ADAGG_E_SNAPSHOT_CORRUPT) instead of misreading it.
 */
export interface LegacyState {
  lastSeq: number;
  maxEventTs: number;
  watermark: number;
  closedThrough: number;
  /** Open windows, every field marked changed. */
  open: Map<number, MinuteCounts>;
  /** ClickDedup image: u32 count, then (u32 h, u32 l, i32 minute) entries. */
  dedup: Uint8Array;
  /** Hot-split state, every part marked changed. */
  hot: HotState | undefined;
}

const V1 = 1;
const V2_HOT = 2;

export function isLegacyVersion(v: unknown): boolean {
  return v === V1 || v === V2_HOT;
}

export function decodeLegacy(doc: unknown, shard: UnitId): LegacyState {
  const bad = (what: string, cause?: unknown): AdaggError =>
    new AdaggError(ErrorCode.SnapshotCorrupt, `shard ${shard}: legacy snapshot ${what}`, cause === undefined ? {} : { cause });
  const layoutOk = Array.isArray(doc) && ((doc[0] === V1 && doc.length === 8) || (doc[0] === V2_HOT && doc.length === 9));
  if (!Array.isArray(doc) || !layoutOk) throw bad('has an unknown layout');
  if (doc[1] !== shard) throw bad(`belongs to shard ${String(doc[1])}`);
  const [, , lastSeq, maxEventTs, watermark, closedThrough, open, dedup] = doc as unknown[];
  const nums = [lastSeq, maxEventTs, watermark, closedThrough];
  if (!nums.every((n) => typeof n === 'number' && Number.isFinite(n)) || !Array.isArray(open) || !(dedup instanceof Uint8Array)) {
    throw bad('fields have the wrong types');
  }
  const windows = new Map<number, MinuteCounts>();
  try {
    for (const [m, totals, dims] of open as Array<[number, unknown, unknown]>) {
      const mc = MinuteCounts.decode([totals, dims], true);
      mc.markAllDirty();
      windows.set(m, mc);
    }
  } catch (err) {
    throw bad('windows are malformed', err);
  }
  return {
    lastSeq: lastSeq as number,
    maxEventTs: maxEventTs as number,
    watermark: watermark as number,
    closedThrough: closedThrough as number,
    open: windows,
    dedup,
    hot: doc.length === 9 ? HotState.decodeLegacy(doc[8]) : undefined,
  };
}
