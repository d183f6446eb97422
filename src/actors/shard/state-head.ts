import { decode, encode } from '../../model/msgpack.ts';
import { AdaggError, ErrorCode } from '../../errors.ts';
import type { UnitId } from '../../model/shard-state.ts';

/**
 * The head of a shard actor's persisted state (format 4): a few scalars and the names of the
 * parts that hold the rest. Rewritten by every commit, so it must stay small: it grows with the
 * number of open minutes and dedupe blocks inside the horizon, never with clicks or ids.
 *
 * Where the rest lives:
 * - open minutes: in the count hashes themselves (provisional values of minutes after
 *   `closedThrough`), listed in `open`;
 * - dedupe ids, keyed (SipHash-2-4 under the deployment's secret): one append-only log part per
 *   event-time block, `k<block>`, listed in `blocks`; `keyCheck` fingerprints the key;
 * - dedupe ids of a migrated format-3 state (unkeyed FNV-1a/murmur3 pairs): its blocks `d<block>`,
 *   listed in `legacyBlocks` until the horizon has dropped them (shard-dedup.ts);
 * - hot-split state: `hot` (records) plus the parts it names (hot-split.ts).
 *
 * Format 3 (the previous release) is the same without the last two fields, its `blocks` being
 * unkeyed `d<block>` parts: it is read as a format-4 head whose blocks are all legacy. A format-3
 * release refuses a format-4 head as an unknown layout (ADAGG_E_SNAPSHOT_CORRUPT), so a downgrade
 * cannot misread keyed hashes as unkeyed ones.
 */
export const HEAD_VERSION = 4;
/** The unkeyed-hash format of the previous release, still restored (and migrated). */
export const UNKEYED_HEAD_VERSION = 3;

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
  /** Keyed dedupe blocks (`k<block>` parts). */
  blocks: number[];
  /** HotState.encodeHead(), or null when there is no hot-split state. */
  hot: unknown;
  /** dedupKeyCheck() of the key the keyed blocks were written with; null in a format-3 head. */
  keyCheck: string | null;
  /** Unkeyed dedupe blocks (`d<block>` parts) of a migrated format-3 state. */
  legacyBlocks: number[];
  /** RiskEngine.head() (invalid-click rules and the parts holding their clicks), or null without rules. */
  risk: unknown;
}

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
    h.keyCheck,
    h.legacyBlocks,
    // A head without rules keeps the 13-element layout of earlier releases.
    ...(h.risk === null || h.risk === undefined ? [] : [h.risk]),
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

/**
 * Validates a decoded format-4 head, or a format-3 one (its blocks become `legacyBlocks`). Throws
 * ADAGG_E_SNAPSHOT_CORRUPT naming what is wrong.
 */
export function parseHead(doc: unknown, shard: UnitId): StateHead {
  const bad = (what: string): AdaggError => new AdaggError(ErrorCode.SnapshotCorrupt, `shard ${shard}: state head ${what}`);
  const v3 = Array.isArray(doc) && doc[0] === UNKEYED_HEAD_VERSION && doc.length === 11;
  if (!Array.isArray(doc) || !(v3 || (doc[0] === HEAD_VERSION && (doc.length === 13 || doc.length === 14)))) throw bad('has an unknown layout');
  const [, owner, lastSeq, maxEventTs, watermark, closedThrough, expired, bucketMinutes, open, stored, hot, keyCheck, legacy, risk] = doc as unknown[];
  const blocks = v3 ? [] : stored;
  const legacyBlocks = v3 ? stored : legacy;
  if (owner !== shard) throw bad(`belongs to shard ${String(owner)}`);
  const nums = [lastSeq, maxEventTs, watermark, closedThrough, expired, bucketMinutes];
  if (!nums.every((n) => typeof n === 'number' && Number.isSafeInteger(n))) throw bad('has fields of the wrong type');
  const intList = (v: unknown): v is number[] => Array.isArray(v) && v.every((n) => typeof n === 'number' && Number.isSafeInteger(n));
  if (!intList(open) || !intList(blocks) || !intList(legacyBlocks)) throw bad('lists are malformed');
  if (!v3 && typeof keyCheck !== 'string') throw bad('has no dedupe key check');
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
    keyCheck: v3 ? null : (keyCheck as string),
    legacyBlocks,
    risk: risk ?? null,
  };
}
