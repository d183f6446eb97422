import type { Click } from '../../model/click.ts';
import { ID_BYTES, type HotControl } from '../../model/hot-messages.ts';
import type { ShardActorConfig } from '../../model/shard-config.ts';
import type { HotState } from './hot-split.ts';
import type { ShardDedup } from './shard-dedup.ts';
import type { ShardWindows } from './windows.ts';

/**
 * Handlers of hot-split control messages, run by the shard actor (`applyControl`) in stream order.
 * They work on the actor's parts (hot state, dedupe table, windows), which hold the counting rules,
 * and return what the actor itself must do next: count the clicks a finished split buffered, close
 * what the watermark allows once a child's report raised the cap. Stream position stays the actor's.
 */

/** The parts of a shard actor a control message changes. */
export interface HotParts {
  readonly config: ShardActorConfig;
  readonly hot: HotState;
  readonly dedup: ShardDedup;
  readonly windows: ShardWindows;
  /** The actor's highest counted event time (recorded by a split). */
  readonly maxEventTs: number;
}

/** What a control message did, and what is left for the actor. */
export interface HotOutcome {
  /** The hot state changed in a way the host must act on. */
  changed: boolean;
  /** Report: clicks the delta added to the parent's counts (for the hot-ad detector). */
  reported?: { ad: string; clicks: number };
  /** A split ended: the clicks it buffered, to be counted now as part of this message. */
  buffered?: Click[];
  /** A report was applied: the close cap may have risen, close what the watermark allows. */
  reclose: boolean;
}

export async function applyHotControl(p: HotParts, seq: number, msg: HotControl): Promise<HotOutcome> {
  const child = p.config.hot?.child;
  switch (msg.kind) {
    case 'split':
      // Static mode and children ignore splits: nothing would place the children.
      if (child || !p.config.hot?.splits) return { changed: false, reclose: false };
      return { changed: p.hot.split(msg.ad, msg.children, seq, p.windows.closedThrough, p.maxEventTs), reclose: false };
    case 'unsplit':
      return { changed: !child && p.hot.unsplit(msg.ad) !== undefined, reclose: false };
    case 'end': {
      if (!child || msg.ad !== child.ad || msg.gen !== child.gen || !p.hot.endChild()) return { changed: false, reclose: false };
      // No more clicks for this child: every minute it holds is final now.
      const open = p.windows.openMinutes();
      if (open.length > 0) p.windows.closeUpTo(Math.min(Math.max(...open), p.hot.closeCap()));
      return { changed: true, reclose: false };
    }
    case 'report':
      return child ? { changed: false, reclose: false } : applyReport(p, msg);
  }
}

async function applyReport(p: HotParts, rep: Extract<HotControl, { kind: 'report' }>): Promise<HotOutcome> {
  const rec = p.hot.recordFor(rep);
  // A report of an older or finished split (a replayed child): nothing to add.
  if (!rec) return { changed: false, reclose: false };
  const deltas = p.hot.reportDeltas(rec, rep);
  await p.windows.loadDeltaFields(rep.ad, deltas);
  let clicks = 0;
  for (const d of deltas) {
    // Refused for a sealed minute (a child behind its parent's horizon): see windows.ts.
    if (p.windows.addDelta(rep.ad, d, 'hot_report') && d.dim === null) clicks += d.delta;
  }
  const out: HotOutcome = { changed: false, reported: { ad: rep.ad, clicks }, reclose: true };
  const { ids, complete } = p.hot.acceptReport(rec, rep);
  if (ids) {
    const dv = new DataView(ids.buffer, ids.byteOffset, ids.byteLength);
    for (let o = 0; o + ID_BYTES <= ids.byteLength; o += ID_BYTES) {
      // A negative minute marks a legacy (unkeyed) id of a child restored from a migrated state.
      p.dedup.addReported(dv.getUint32(o, true), dv.getUint32(o + 4, true), dv.getInt32(o + 8, true));
    }
  }
  if (complete) {
    // Every child is final and its ids are in the table: what arrived meanwhile is counted now, deduped.
    out.buffered = p.hot.retire(rec);
    out.changed = true;
  }
  return out;
}
