import type { BatchResult } from '../../model/apply-results.ts';
import type { Click } from '../../model/click.ts';
import type { HotState } from './hot-split.ts';
import type { ShardDedup } from './shard-dedup.ts';

/**
 * The first step of applying a batch (ShardActor.applyBatch): sorting its clicks without changing
 * any state, so a failure in the awaits that follow (a hot child's question to its parent, loading
 * corrections) leaves the actor exactly as it was and the batch can be applied again.
 */

/** A sorted batch: `his`/`los` are the keyed id hashes of `kept`, in order. */
export interface Classified {
  /** Clicks to count: not too old, not diverted, not seen before (in the table or this batch). */
  fresh: Click[];
  /** Clicks whose ids the table records (fresh ones and duplicates, which refresh their block). */
  kept: Click[];
  his: number[];
  los: number[];
  /** Split ads' clicks to forward or buffer (deduped, never recorded: see hot-split.ts). */
  diverted: Click[];
  /**
   * Hot child only: for the question to its parent, two hash pairs per `fresh` click (keyed, then
   * legacy: the parent may still hold unkeyed ids of a migrated state) and its event time twice.
   */
  freshHashes: number[];
  freshTs: number[];
}

/**
 * Sorts `clicks`: too old ones (event time before `oldest`) go to `res.tooOld`, duplicates are
 * counted in `res.duplicates`, the rest land in the returned lists.
 */
export function classifyBatch(
  clicks: readonly Click[],
  ctx: { oldest: number; dedup: ShardDedup; hot: HotState; askParent: boolean },
  res: BatchResult,
): Classified {
  const b: Classified = { fresh: [], kept: [], his: [], los: [], diverted: [], freshHashes: [], freshTs: [] };
  const inBatch = new Set<string>();
  const diverting = ctx.hot.diverting;
  for (const c of clicks) {
    if (c.ts < ctx.oldest) {
      res.tooOld.push(c);
      continue;
    }
    const dup = ctx.dedup.check(c.click_id) || inBatch.has(c.click_id);
    const h = ctx.dedup.h, l = ctx.dedup.l;
    if (diverting && ctx.hot.diverts(c.ad_id)) {
      // A split ad: dropped if this shard counted it before the split, else forwarded or buffered
      // without recording its id (see hot-split.ts).
      if (dup) res.duplicates++;
      else {
        inBatch.add(c.click_id);
        b.diverted.push(c);
      }
      continue;
    }
    b.kept.push(c);
    b.his.push(h);
    b.los.push(l);
    if (dup) {
      res.duplicates++;
      continue;
    }
    inBatch.add(c.click_id);
    b.fresh.push(c);
    if (ctx.askParent) {
      const [lh, ll] = ctx.dedup.legacyPair(c.click_id);
      b.freshHashes.push(h, l, lh, ll);
      b.freshTs.push(c.ts, c.ts);
    }
  }
  return b;
}
