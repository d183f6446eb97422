import type { GlobalRanking, RankingState, RankingUpdate } from '../model/rankings.ts';
import type { FlatCounts } from '../model/shard-state.ts';
import { topN } from '../model/top-n.ts';
import type { TopNReducerBehaviour } from '../runtime/reducer-behaviour.ts';

/**
 * The top-N reducer actor's state: the latest top-K lists of every shard per ranking spec, merged
 * into the global ranking. Ads are partitioned by shard, so the union of the shards' top-K holds
 * the global top-K exactly.
 *
 * - Final rankings: a global final for window end E is emitted once every shard has sent its
 *   list for E (E = the smallest latest end over the shards; shards keep a short history).
 * - Provisional rankings: shards send deltas numbered by `rev`; a gap asks for a resync (the host
 *   then fetches the shard's full state), so a lost message never leaves a wrong list behind.
 */

interface ProvList {
  end: number;
  rev: number;
  list: Map<string, number>;
}

const HISTORY = 5;

export class TopNReducer implements TopNReducerBehaviour {
  private readonly finals = new Map<string, Array<Map<number, FlatCounts>>>();
  private readonly provs = new Map<string, Array<ProvList | undefined>>();
  private readonly emittedFinal = new Map<string, string>();
  private readonly emittedProv = new Map<string, string>();

  constructor(
    readonly shards: number,
    readonly depth: number,
  ) {}

  /** Applies one shard's updates. Returns the specs whose final may have changed and whether a resync is needed. */
  apply(shard: number, updates: readonly RankingUpdate[]): { finals: Set<string>; resync: boolean } {
    const finals = new Set<string>();
    let resync = false;
    for (const u of updates) {
      if (u.k === 'final') {
        this.setFinal(u.spec, shard, u.end, u.list);
        finals.add(u.spec);
        continue;
      }
      const per = this.provsOf(u.spec);
      const cur = per[shard];
      if (u.full) {
        per[shard] = { end: u.end, rev: u.rev, list: toMap(u.changed) };
      } else if (cur && cur.rev + 1 === u.rev && cur.end === u.end) {
        for (let i = 0; i + 1 < u.changed.length; i += 2) cur.list.set(u.changed[i] as string, u.changed[i + 1] as number);
        for (const ad of u.removed) cur.list.delete(ad);
        cur.rev = u.rev;
      } else {
        resync = true;
      }
    }
    return { finals, resync };
  }

  /** Replaces what is known of a shard with its full state (after start or a gap). */
  load(shard: number, state: RankingState): Set<string> {
    const finals = new Set<string>();
    for (const f of state.finals) {
      this.setFinal(f.spec, shard, f.end, f.list);
      finals.add(f.spec);
    }
    for (const p of state.provs) this.provsOf(p.spec)[shard] = { end: p.end, rev: p.rev, list: toMap(p.list) };
    return finals;
  }

  private setFinal(spec: string, shard: number, end: number, list: FlatCounts): void {
    let per = this.finals.get(spec);
    if (!per) this.finals.set(spec, (per = Array.from({ length: this.shards }, () => new Map())));
    const h = per[shard]!;
    h.set(end, list);
    const newest = Math.max(...h.keys());
    for (const e of h.keys()) if (e <= newest - HISTORY) h.delete(e);
  }

  private provsOf(spec: string): Array<ProvList | undefined> {
    let per = this.provs.get(spec);
    if (!per) this.provs.set(spec, (per = new Array(this.shards).fill(undefined)));
    return per;
  }

  /** The global final ranking of a spec: for the newest end every shard has reported. */
  globalFinal(spec: string): GlobalRanking | undefined {
    const per = this.finals.get(spec);
    if (!per) return undefined;
    let end = Infinity;
    for (const h of per) {
      if (h.size === 0) return undefined;
      end = Math.min(end, Math.max(...h.keys()));
    }
    const merged = new Map<string, number>();
    for (const h of per) {
      const list = h.get(end);
      if (!list) return undefined; // a shard jumped past `end` beyond its history: wait for the next end
      for (let i = 0; i + 1 < list.length; i += 2) merged.set(list[i] as string, list[i + 1] as number);
    }
    return { spec, final: true, end, list: topN(merged, this.depth) };
  }

  /** The global provisional ranking: shards at the newest provisional end. */
  globalProvisional(spec: string): GlobalRanking | undefined {
    const per = this.provs.get(spec);
    if (!per) return undefined;
    let end = -1;
    for (const p of per) if (p && p.end > end) end = p.end;
    if (end < 0) return undefined;
    const merged = new Map<string, number>();
    for (const p of per) if (p && p.end === end) for (const [ad, n] of p.list) merged.set(ad, n);
    return { spec, final: false, end, list: topN(merged, this.depth) };
  }

  /** The ranking to emit if it differs from the last one emitted of its kind, else undefined. */
  changed(r: GlobalRanking | undefined): GlobalRanking | undefined {
    if (!r) return undefined;
    const seen = r.final ? this.emittedFinal : this.emittedProv;
    const sig = `${r.end}|${r.list.map((x) => `${x.ad_id}:${x.count}`).join(',')}`;
    if (seen.get(r.spec) === sig) return undefined;
    seen.set(r.spec, sig);
    return r;
  }

  forget(spec: string): void {
    this.finals.delete(spec);
    this.provs.delete(spec);
    this.emittedFinal.delete(spec);
    this.emittedProv.delete(spec);
  }
}

function toMap(flat: FlatCounts): Map<string, number> {
  const m = new Map<string, number>();
  for (let i = 0; i + 1 < flat.length; i += 2) m.set(flat[i] as string, flat[i + 1] as number);
  return m;
}
