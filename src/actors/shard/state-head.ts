import { decode, encode } from '../../model/msgpack.ts';
import { AdaggError, ErrorCode } from '../../errors.ts';
import type { UnitId } from '../../model/shard-state.ts';

/**
 * The head of a shard actor's persisted state (format 3): a few scalars and the names of the
 * parts that hold the rest. Rewritten by every commit, so it must stay small: it grows with the
 * number of open minutes and dedupe blocks inside the horizon, never with clicks or ids.
 *
 * Where the rest lives:
 * - open minutes: in the count hashes themselves (provisional values of minutes after
 *   `closedThrough`), listed in `open`;
 * - dedupe ids: one append-only log part per event-time block, `d<block>`, listed in `blocks`;
 * - hot-split state: `hot` (records) plus the parts it names (hot-split.ts).
 */
export const HEAD_VERSION = 3;

export interface StateHead {
  shard: UnitId;
  lastSeq: number;
  maxEventTs: number;
  watermark: number;
  closedThrough: number;
  /** Dedupe ids of minutes before this have been dropped (−1: never). */
  expiredBeforeMinute: number;
  /** Minutes per dedupe block (ClickDedup bucketMinutes). */
  bucketMinutes: number;
  open: number[];
  blocks: number[];
  /** HotState.encodeHead(), or null when there is no hot-split state. */
  hot: unknown;
}

export const dedupPart = (block: number): string => `d${block}`;

export function encodeHead(h: StateHead): Uint8Array {
  return encode([
    HEAD_VERSION,
    h.shard,
    h.lastSeq,
    h.maxEventTs,
    h.watermark,
    h.closedThrough,
    h.expiredBeforeMinute,
    h.bucketMinutes,
    h.open,
    h.blocks,
    h.hot,
  ]);
}

/** The format version of a stored head or legacy snapshot (first array element), or undefined. */
export function headVersion(doc: unknown): unknown {
  return Array.isArray(doc) ? doc[0] : undefined;
}

export function decodeStored(bytes: Uint8Array, shard: UnitId): unknown {
  try {
    return decode(bytes);
  } catch (err) {
    throw new AdaggError(ErrorCode.SnapshotCorrupt, `shard ${shard}: stored state is not MessagePack`, { cause: err });
  }
}

/** Validates a decoded format-3 head. Throws ADAGG_E_SNAPSHOT_CORRUPT naming what is wrong. */
export function parseHead(doc: unknown, shard: UnitId): StateHead {
  const bad = (what: string): AdaggError => new AdaggError(ErrorCode.SnapshotCorrupt, `shard ${shard}: state head ${what}`);
  if (!Array.isArray(doc) || doc[0] !== HEAD_VERSION || doc.length !== 11) throw bad('has an unknown layout');
  const [, owner, lastSeq, maxEventTs, watermark, closedThrough, expired, bucketMinutes, open, blocks, hot] = doc as unknown[];
  if (owner !== shard) throw bad(`belongs to shard ${String(owner)}`);
  const nums = [lastSeq, maxEventTs, watermark, closedThrough, expired, bucketMinutes];
  if (!nums.every((n) => typeof n === 'number' && Number.isSafeInteger(n))) throw bad('has fields of the wrong type');
  const intList = (v: unknown): v is number[] => Array.isArray(v) && v.every((n) => typeof n === 'number' && Number.isSafeInteger(n));
  if (!intList(open) || !intList(blocks)) throw bad('lists are malformed');
  if ((bucketMinutes as number) < 1) throw bad('has a bad block size');
  return {
    shard,
    lastSeq: lastSeq as number,
    maxEventTs: maxEventTs as number,
    watermark: watermark as number,
    closedThrough: closedThrough as number,
    expiredBeforeMinute: expired as number,
    bucketMinutes: bucketMinutes as number,
    open,
    blocks,
    hot: hot ?? null,
  };
}
