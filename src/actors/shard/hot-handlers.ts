import type { Click } from '../../model/click.ts';
import { ID_BYTES, type HotControl } from '../../model/hot-messages.ts';
import type { BatchResult, ShardActorConfig } from '../shard-actor.ts';
import type { ClickDedup } from './click-dedup.ts';
import type { ControlResult, HotState, ReportDelta } from './hot-split.ts';

/**
 * Handlers of hot-split control messages, run by the shard actor (`applyControl`) in stream order.
 * They reach the actor's windows only through this narrow access object, so the counting rules
 * (open / closed-unflushed / corrections, rankings) stay in one place: shard-actor.ts.
 */
export interface HotActorAccess {
  readonly config: ShardActorConfig;
  readonly hot: HotState;
  readonly dedup: ClickDedup;
  readonly closedThrough: number;
  readonly maxEventTs: number;
  readonly openMinutes: number[];
  setLastSeq(seq: number): void;
  /** Loads the stored values of closed, flushed fields the deltas will correct (before any change). */
  loadDeltaFields(ad: string, deltas: readonly ReportDelta[]): Promise<void>;
  /** Adds a delta to one field, into the window its minute lives in (and the live rankings). */
  addDelta(ad: string, d: ReportDelta): void;
  /** Closes open minutes up to `minute` regardless of the watermark (a child's end). */
  closeUpTo(minute: number): void;
  /** Closes what the watermark allows (after the cap rose). */
  recloseToWatermark(): void;
  /** Counts clicks as a stream message at `seq` would (dedupe, windows, late corrections). */
  applyBatch(seq: number, clicks: readonly Click[]): Promise<BatchResult>;
}

export async function applyHotControl(a: HotActorAccess, seq: number, msg: HotControl): Promise<ControlResult> {
  const res: ControlResult = { skipped: false, changed: false };
  const child = a.config.hot?.child;
  switch (msg.kind) {
    case 'split':
      // Static mode and children ignore splits: nothing would place the children.
      if (!child && a.config.hot?.splits) res.changed = a.hot.split(msg.ad, msg.children, seq, a.closedThrough, a.maxEventTs);
      break;
    case 'unsplit':
      if (!child) res.changed = a.hot.unsplit(msg.ad) !== undefined;
      break;
    case 'end':
      if (child && msg.ad === child.ad && msg.gen === child.gen && !a.hot.childEnded) {
        // No more clicks for this child: every minute it holds is final now.
        a.hot.childEnded = true;
        a.hot.version++;
        const open = a.openMinutes;
        if (open.length > 0) a.closeUpTo(Math.max(...open));
        res.changed = true;
      }
      break;
    case 'report':
      if (!child) return applyReport(a, seq, msg, res);
      break;
  }
  a.setLastSeq(seq);
  return res;
}

async function applyReport(a: HotActorAccess, seq: number, rep: Extract<HotControl, { kind: 'report' }>, res: ControlResult): Promise<ControlResult> {
  const rec = a.hot.recordFor(rep);
  if (!rec) {
    // A report of an older or finished split (a replayed child): nothing to add.
    a.setLastSeq(seq);
    return res;
  }
  const deltas = a.hot.reportDeltas(rec, rep);
  await a.loadDeltaFields(rep.ad, deltas);
  let clicks = 0;
  for (const d of deltas) {
    a.addDelta(rep.ad, d);
    if (d.dim === null) clicks += d.delta;
  }
  res.reported = { ad: rep.ad, clicks };
  const { ids, complete } = a.hot.acceptReport(rec, rep);
  if (ids) {
    const dv = new DataView(ids.buffer, ids.byteOffset, ids.byteLength);
    for (let o = 0; o + ID_BYTES <= ids.byteLength; o += ID_BYTES) {
      a.dedup.addHashed(dv.getUint32(o, true), dv.getUint32(o + 4, true), dv.getInt32(o + 8, true));
    }
  }
  if (complete) {
    // Every child is final and its ids are in the table: count what arrived meanwhile, deduped.
    const buffered = a.hot.retire(rec);
    res.changed = true;
    res.batch = await a.applyBatch(seq, buffered);
  }
  a.setLastSeq(seq);
  // The cap may have risen: close what the watermark already allows.
  a.recloseToWatermark();
  return res;
}
