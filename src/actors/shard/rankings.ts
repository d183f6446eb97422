import type { Click } from '../../model/click.ts';
import { dimensionValue } from '../../model/click.ts';
import { specKey, type RankSpec } from '../../model/rank-spec.ts';
import type { RankingState, RankingUpdate } from '../../model/rankings.ts';
import type { FlatCounts } from '../../model/shard-state.ts';
import { topN, type Ranked } from '../../model/top-n.ts';
import { flatten, MinuteCounts } from './minute-counts.ts';
import { WindowSums } from './window-sums.ts';

/**
 * A shard's streaming top-K per ranking spec (window length × optional filter).
 *
 * Ads are partitioned by shard, so the global top-K is the top-K of the union of the shards'
 * top-K lists: shards only ever send their top-K, never whole count tables.
 * - final rankings: window [end − window, end) where end = closedThrough + 1; sent as the full
 *   top-K list when a minute closes (and again if a late click corrects a minute in the window);
 * - provisional rankings: window [P − window, P) where P is the end of the current wall-clock
 *   minute, including open minutes; sent as deltas against the last list sent (`rev` numbered).
 * The provisional top-K is exact with few candidates: an ad that is neither in the closed part's
 * top-K nor in an open minute cannot beat any of the closed part's top-K.
 * Both windows' sums are kept incrementally (window-sums.ts): a minute close moves them by one
 * minute, a late click changes one ad's sum; nothing re-adds a whole window per click.
 */

const FINAL_HISTORY = 3;

interface SpecState {
  spec: RankSpec;
  leaseUntil: number;
  /** Provisional lists are sent only while a reducer holds a lease on the spec (someone watches it). */
  provUntil: number;
  finalEnd: number;
  /** The latest final list changed (a late click): send it again. */
  finalDirty: boolean;
  finals: Map<number, Ranked[]>;
  /** Sums of the latest final window [finalEnd − window, finalEnd); undefined: rebuild. */
  win: WindowSums | undefined;
  /** Sums of the provisional window's closed minutes [provEnd − window, closedThrough + 1). */
  closedPart: WindowSums | undefined;
  provEnd: number;
  provRev: number;
  provSent: Map<string, number>;
}

export class ShardRankings {
  private readonly retained = new Map<number, MinuteCounts>();
  private readonly specs = new Map<string, SpecState>();
  /**
   * After a restart the closed minutes of the longest window are read back from the store while
   * the actor already consumes, a few at a time (`beginWarmUp`, `warmUpIssued`, `completeWarmUp`).
   * A spec sends nothing while a minute of its windows is still unloaded; late clicks into an
   * unloaded minute are kept as a delta that the loaded minute absorbs.
   */
  private readonly unloaded = new Set<number>();
  /** The last dropBefore: minutes before it are kept only until the windows moved past them. */
  private dropFrom = -Infinity;

  constructor(
    readonly depth: number,
    readonly maxWindow: number,
    defaults: readonly RankSpec[] = [1, 5, 60].filter((w) => w <= maxWindow).map((window) => ({ window, dim: null, value: null })),
  ) {
    for (const s of defaults) this.addSpec(s, Infinity, false);
  }

  /**
   * Registers (or renews the lease of) a spec a reducer asked for; returns false if it is out of
   * range. `watched` specs also get provisional updates until the lease ends.
   */
  addSpec(spec: RankSpec, leaseUntil: number, watched = true): boolean {
    if (!Number.isInteger(spec.window) || spec.window < 1 || spec.window > this.maxWindow) return false;
    const key = specKey(spec);
    const cur = this.specs.get(key);
    if (cur) {
      cur.leaseUntil = Math.max(cur.leaseUntil, leaseUntil);
      if (watched) cur.provUntil = Math.max(cur.provUntil, leaseUntil);
      return true;
    }
    this.specs.set(key, {
      spec,
      leaseUntil,
      provUntil: watched ? leaseUntil : 0,
      finalEnd: -1,
      finalDirty: true,
      finals: new Map(),
      win: undefined,
      closedPart: undefined,
      provEnd: -1,
      provRev: 0,
      provSent: new Map(),
    });
    return true;
  }

  expireSpecs(now: number): void {
    for (const [k, s] of this.specs) if (s.leaseUntil < now) this.specs.delete(k);
  }

  /** The closed minutes `minutes` are to be read back (after a restart). */
  beginWarmUp(minutes: Iterable<number>): void {
    for (const m of minutes) this.unloaded.add(m);
  }

  /** Minutes still to be read back, newest first. */
  get warmUpPending(): number[] {
    return [...this.unloaded].sort((a, b) => b - a);
  }

  /**
   * The read of `minutes` was issued, with no uncommitted change to them: what late clicks added
   * so far is in what it reads, so their deltas start again from zero.
   */
  warmUpIssued(minutes: readonly number[]): void {
    for (const m of minutes) if (this.unloaded.has(m)) this.retained.delete(m);
  }

  /** Minutes read back: merged with the deltas of late clicks since their read was issued. */
  completeWarmUp(loaded: ReadonlyMap<number, MinuteCounts>, minutes: readonly number[], closedThrough: number): void {
    const from = closedThrough + 1 - this.maxWindow;
    for (const m of minutes) {
      if (!this.unloaded.delete(m) || m < from) continue;
      const mc = loaded.get(m) ?? new MinuteCounts();
      const delta = this.retained.get(m);
      if (delta) mc.addFrom(delta);
      this.retained.set(m, mc);
      this.markDirty(m);
    }
  }

  /** Whether every minute in [from, to) is loaded. */
  private loaded(from: number, to: number): boolean {
    if (this.unloaded.size === 0) return true;
    for (const m of this.unloaded) if (m >= from && m < to) return false;
    return true;
  }

  /** A minute closed: keep its counts (the same object keeps receiving late clicks until committed). */
  retain(minute: number, mc: MinuteCounts): void {
    this.retained.set(minute, mc);
    // Windows take the minute in when they move on; one that already spans it must be rebuilt.
    this.markDirty(minute, (w) => w.covers(minute));
  }

  /**
   * A late click for a closed minute. `shared`: the retained copy is the actor's own pending window,
   * which already counted it; otherwise it is counted in the retained copy (created if the minute
   * closed empty, as long as a live window can still reach the minute). Every spec whose windows
   * hold the minute adds it to that ad's sum.
   */
  lateClick(minute: number, closedThrough: number, click: Click, dimensions: readonly string[], shared: boolean): void {
    if (minute < closedThrough + 1 - this.maxWindow) return;
    if (!shared) this.copyOf(minute).add(click, dimensions);
    for (const s of this.specs.values()) {
      const { dim, value } = s.spec;
      if (dim !== null && dimensionValue(click, dim) !== value) continue;
      this.addToWindows(s, minute, click.ad_id, 1);
    }
  }

  /** A change of one field of a closed minute by `delta` (a hot child's report), like lateClick. */
  lateDelta(minute: number, closedThrough: number, ad: string, dim: string | null, value: string | null, delta: number, shared: boolean): void {
    if (minute < closedThrough + 1 - this.maxWindow) return;
    if (!shared) {
      const mc = this.copyOf(minute);
      mc.set(ad, (mc.get(ad, dim ?? undefined, value ?? undefined) ?? 0) + delta, dim ?? undefined, value ?? undefined);
    }
    for (const s of this.specs.values()) if (s.spec.dim === dim && s.spec.value === value) this.addToWindows(s, minute, ad, delta);
  }

  private copyOf(minute: number): MinuteCounts {
    let mc = this.retained.get(minute);
    if (!mc) this.retained.set(minute, (mc = new MinuteCounts()));
    return mc;
  }

  private addToWindows(s: SpecState, minute: number, ad: string, delta: number): void {
    if (minute >= s.finalEnd - s.spec.window && minute < s.finalEnd) {
      s.finalDirty = true;
      if (s.win?.covers(minute)) s.win.add(ad, delta);
      else s.win = undefined;
    }
    if (s.closedPart?.covers(minute)) s.closedPart.add(ad, delta);
  }

  /**
   * A closed minute changed in a way the sums did not follow (loaded after a restart): windows
   * holding it (or passing `test`) are rebuilt and the latest final list is sent again.
   */
  markDirty(minute: number, test: (w: WindowSums) => boolean = (w) => w.covers(minute)): void {
    for (const s of this.specs.values()) {
      if (minute >= s.finalEnd - s.spec.window && minute < s.finalEnd) s.finalDirty = true;
      if (s.win && test(s.win)) s.win = undefined;
      if (s.closedPart && test(s.closedPart)) s.closedPart = undefined;
    }
  }

  /** Forgets closed minutes no window can reach any more (those a window still has to subtract stay). */
  dropBefore(minute: number): void {
    let keep = minute;
    for (const s of this.specs.values()) {
      if (s.win) keep = Math.min(keep, s.win.from);
      if (s.closedPart) keep = Math.min(keep, s.closedPart.from);
    }
    for (const m of this.retained.keys()) if (m < keep) this.retained.delete(m);
    for (const m of this.unloaded) if (m < minute) this.unloaded.delete(m);
    this.dropFrom = minute;
  }

  get retainedMinutes(): number {
    return this.retained.size;
  }

  /**
   * Updates to send now. `closedThrough`: last closed minute; `open`: open minutes;
   * `provEnd`: end of the provisional window (wall-clock minute + 1); `withProvisional`: whether
   * the provisional cadence (≤ 1/s) allows a provisional update now.
   */
  updates(closedThrough: number, open: ReadonlyMap<number, MinuteCounts>, provEnd: number, withProvisional: boolean, now: number): RankingUpdate[] {
    const out: RankingUpdate[] = [];
    if (closedThrough < 0) return out;
    const end = closedThrough + 1;
    for (const [key, s] of this.specs) {
      // Warming up after a restart: a spec waits until every closed minute its windows hold is back.
      if (!this.loaded(end - FINAL_HISTORY + 1 - s.spec.window, end)) continue;
      if (end > s.finalEnd || s.finalDirty) {
        const first = Math.max(s.finalEnd + 1, end - FINAL_HISTORY + 1);
        const ends = s.finalDirty && end <= s.finalEnd ? [s.finalEnd] : range(first, end + 1);
        for (const e of ends) {
          const list = [...this.finalWindow(s, e).top()];
          s.finals.set(e, list);
          out.push({ k: 'final', spec: key, end: e, list: flatRanked(list) });
        }
        s.finalEnd = Math.max(s.finalEnd, end);
        s.finalDirty = false;
        for (const e of s.finals.keys()) if (e <= s.finalEnd - FINAL_HISTORY) s.finals.delete(e);
      }
      if (withProvisional && s.provUntil >= now) {
        const u = this.provisional(key, s, closedThrough, open, provEnd);
        if (u) out.push(u);
      }
    }
    this.dropBefore(this.dropFrom);
    return out;
  }

  /** The view of one closed minute for a spec's filter. */
  private viewOf(spec: RankSpec): (m: number) => ReadonlyMap<string, number> | undefined {
    return (m) => this.retained.get(m)?.view(spec.dim ?? undefined, spec.value ?? undefined);
  }

  /** The spec's final window moved to end at `end`. */
  private finalWindow(s: SpecState, end: number): WindowSums {
    const from = end - s.spec.window;
    s.win = s.win ? s.win.moveTo(this.viewOf(s.spec), from, end) : WindowSums.build(this.viewOf(s.spec), from, end, this.depth);
    return s.win;
  }

  private provisional(
    key: string,
    s: SpecState,
    closedThrough: number,
    open: ReadonlyMap<number, MinuteCounts>,
    provEnd: number,
  ): RankingUpdate | undefined {
    const from = provEnd - s.spec.window;
    const to = Math.max(from, Math.min(provEnd, closedThrough + 1));
    const view = this.viewOf(s.spec);
    s.closedPart = s.closedPart ? s.closedPart.moveTo(view, from, to) : WindowSums.build(view, from, to, this.depth);
    const part = s.closedPart;
    const cand = new Map<string, number>();
    for (const r of part.top()) cand.set(r.ad_id, r.count);
    for (const [m, mc] of open) {
      if (m < from || m >= provEnd) continue;
      const view = mc.view(s.spec.dim ?? undefined, s.spec.value ?? undefined);
      if (!view) continue;
      for (const [ad, n] of view) cand.set(ad, (cand.get(ad) ?? part.sums.get(ad) ?? 0) + n);
    }
    const list = topN(cand, this.depth);
    const full = s.provEnd !== provEnd;
    const changed: FlatCounts = [];
    const next = new Map<string, number>();
    for (const r of list) {
      next.set(r.ad_id, r.count);
      if (full || s.provSent.get(r.ad_id) !== r.count) changed.push(r.ad_id, r.count);
    }
    const removed = full ? [] : [...s.provSent.keys()].filter((ad) => !next.has(ad));
    if (!full && changed.length === 0 && removed.length === 0) return undefined;
    s.provSent = next;
    s.provEnd = provEnd;
    s.provRev++;
    return { k: 'prov', spec: key, end: provEnd, rev: s.provRev, full, changed, removed };
  }

  /** Everything a reducer needs to (re)start: recent finals and the last provisional list per spec. */
  state(): RankingState {
    const finals: RankingState['finals'] = [];
    const provs: RankingState['provs'] = [];
    for (const [key, s] of this.specs) {
      for (const [end, list] of s.finals) finals.push({ spec: key, end, list: flatRanked(list) });
      if (s.provEnd >= 0) provs.push({ spec: key, end: s.provEnd, rev: s.provRev, list: flatten(s.provSent) });
    }
    return { finals, provs };
  }
}

function range(from: number, to: number): number[] {
  const out: number[] = [];
  for (let i = from; i < to; i++) out.push(i);
  return out;
}

function flatRanked(list: readonly Ranked[]): FlatCounts {
  const out: FlatCounts = [];
  for (const r of list) out.push(r.ad_id, r.count);
  return out;
}
