import type { Click } from './click.ts';
import { ID_BYTES, type ReportRow } from './hot-messages.ts';

/**
 * Hot-ad splitting as the runtime sees it (docs/hot-ads.md): the codec of a child's report
 * (`reportRows`, `idChunks`) and read-only views of a parent's splits. The shard actor keeps the
 * state behind these views; the runtime's hooks publish routes, units and reports from them, so
 * both sides share these shapes without importing each other.
 */

/** Identity of a hot child actor (its config). */
export interface HotChildSpec {
  parent: number;
  ad: string;
  gen: number;
  k: number;
}

/** One split ad as its parent's hooks need it (routes, placement units, end markers). */
export interface SplitView {
  readonly ad: string;
  /** The parent stream sequence of the split message. */
  readonly gen: number;
  readonly children: number;
  readonly state: 'split' | 'draining';
}

/** A split as the parent reports it (status, `adagg split --wait`, tests). childClosed -2: final. */
export interface HotSplitStatus extends SplitView {
  childClosed: number[];
  buffered: number;
}

/** A completed split whose side effects (routes, placement units) the host still has to remove. */
export interface RetiredSplit {
  readonly ad: string;
  readonly gen: number;
  readonly children: number;
}

/** Where the parent sends clicks of a split ad instead of counting them. */
export type HotForward =
  | { to: 'child'; ad: string; gen: number; k: number; clicks: Click[] }
  | { to: 'parent'; clicks: Click[] };

/**
 * A parent's answer to its child's `hot.seen` question: per id, whether the parent counted it
 * before the split, and the highest event time it had counted then.
 */
export interface HotSeenReply {
  seen: boolean[];
  maxTs: number;
}

/** Rows of a child's report: every field of its one ad in the given minute counts. */
export function reportRows(
  adId: string,
  minutes: Iterable<{ minute: number; dim: string | null; value: string | null; counts: ReadonlyArray<string | number> }>,
): ReportRow[] {
  const rows: ReportRow[] = [];
  for (const w of minutes) {
    for (let i = 0; i + 1 < w.counts.length; i += 2) {
      if (w.counts[i] === adId) rows.push([w.minute, w.dim, w.value, w.counts[i + 1] as number]);
    }
  }
  return rows;
}

/** Splits a ClickDedup.toBytes() image into entry chunks for final reports (at least one, maybe empty). */
export function idChunks(dedupBytes: Uint8Array, perPart: number): Uint8Array[] {
  const body = dedupBytes.subarray(4);
  const step = perPart * ID_BYTES;
  const out: Uint8Array[] = [];
  for (let o = 0; o < body.byteLength; o += step) out.push(body.slice(o, Math.min(body.byteLength, o + step)));
  if (out.length === 0) out.push(new Uint8Array(0));
  return out;
}
