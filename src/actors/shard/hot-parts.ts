import { decodeBatch } from '../../model/batch-codec.ts';
import type { Click } from '../../model/click.ts';

/**
 * The records of hot-ad splits (hot-split.ts) and how their persisted parts are named and framed:
 * report values in a hash part `ha<gen>`, a draining split's buffer in a log part `hb<gen>` of
 * length-prefixed click batches.
 */

export interface SplitRecord {
  ad: string;
  /** The parent stream sequence of the split message. */
  gen: number;
  children: number;
  state: 'split' | 'draining';
  /** The parent's closedThrough when it applied the split: the cap never goes below it. */
  closedAtSplit: number;
  /**
   * The parent's highest counted event time when it applied the split: every click it counted
   * before the split has ts <= this, so children only ask about clicks at or below it.
   */
  maxTsAtSplit: number;
  /** Per child: the closedThrough of its last report (-1: none yet; Infinity: final). */
  childClosed: number[];
  /** Per child: indexes of final-report parts applied, and how many there are (0: none seen). */
  finalParts: Array<{ parts: number; got: number[] }>;
  /** Last absolute value per `k|minute|dim|value`. */
  lastAbs: Map<string, number>;
  /** Draining: the ad's clicks that arrived on the parent after U, counted once every child is final. */
  buffer: Click[];
  /** Persistence: lastAbs keys set / removed, and buffered clicks, since the last commit. */
  changedAbs: Set<string>;
  removedAbs: Set<string>;
  bufferNew: Click[];
}

/** A delta the parent adds to one field of one minute from a child's report. */
export interface ReportDelta {
  minute: number;
  dim: string | null;
  value: string | null;
  delta: number;
}

/** Key of a report value in `lastAbs` and in the `ha<gen>` hash part. */
export const fieldKey = (k: number, minute: number, dim: string | null, value: string | null): string =>
  `${k}\u0000${minute}\u0000${dim ?? ''}\u0000${value ?? ''}`;

/** Names of a split's parts: its report values (hash) and its draining buffer (log). */
export const absPart = (gen: number): string => `ha${gen}`;
export const bufferPart = (gen: number): string => `hb${gen}`;

/** A length-prefixed chunk of a log part (u32 little-endian length, then the bytes). */
export function frame(bytes: Uint8Array): Uint8Array {
  const out = new Uint8Array(4 + bytes.byteLength);
  new DataView(out.buffer).setUint32(0, bytes.byteLength, true);
  out.set(bytes, 4);
  return out;
}

/** Inverse of `frame` over a whole log part: the clicks of every chunk, in order. */
export function unframe(log: Uint8Array): Click[] {
  const out: Click[] = [];
  const dv = new DataView(log.buffer, log.byteOffset, log.byteLength);
  for (let o = 0; o < log.byteLength; ) {
    if (o + 4 > log.byteLength) throw new Error('truncated frame');
    const n = dv.getUint32(o, true);
    if (o + 4 + n > log.byteLength) throw new Error('truncated frame');
    for (const c of decodeBatch(log.subarray(o + 4, o + 4 + n))) out.push(c);
    o += 4 + n;
  }
  return out;
}
