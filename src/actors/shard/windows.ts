import type { Click } from '../../model/click.ts';
import { dimensionValue } from '../../model/click.ts';
import type { RankingUpdate } from '../../model/rankings.ts';
import type { AdQuery, AdQueryReply, TopQuery, TopQueryReply } from '../../model/shard-queries.ts';
import type { CorrectionCause, CountCorrection, CountRead, CountWrite } from '../../model/shard-state.ts';
import { MINUTE_MS, minuteOf } from '../../model/time.ts';
import type { ReportDelta } from './hot-parts.ts';
import { flatten, MinuteCounts } from './minute-counts.ts';
import type { ShardRankings } from './rankings.ts';

/** No minute closed yet. */
export const NO_MINUTE = -1;

/** A field of a closed, committed minute read for a correction: its stored value and what last changed it. */
interface Touched {
  minute: number;
  adId: string;
  dim: string | null;
  value: string | null;
  old: number;
  /** Undefined while read but not (yet) changed. */
  cause: CorrectionCause | undefined;
}

const fieldOf = (minute: number, dim: string | null, value: string | null, adId: string): string =>
  `${minute}\u0000${dim ?? ''}\u0000${value ?? ''}\u0000${adId}`;

/**
 * A shard actor's minute windows, in three places:
 * - open: minutes after `closedThrough`, counted in place (persisted as provisional values);
 * - pending closed: minutes closed since the last commit, shared with the live rankings until the
 *   commit writes their final values;
 * - corrections: closed, committed minutes touched by late clicks or child reports: only the
 *   fields touched, loaded from the store first, then changed here, so a commit writes absolute
 *   corrected values. Each such field keeps the value read and the cause of its last change, so
 *   a commit can name what it corrects (`pendingCorrections`, the corrections feed).
 *
 * Minutes up to `sealedThrough` are sealed: no live path may change them. The actor sets the
 * bound (from its watermark, the horizon and the invalid-click rules' held clicks); a change that
 * still reaches a sealed minute is refused here and counted (`sealedRefusals`).
 *
 * Every count change goes through here, so the rules of where a change lands (and that the live
 * rankings follow it) live in one place. The caller decides *when* minutes close (watermark,
 * hot-split cap); this class only moves them.
 */
export class ShardWindows {
  private readonly open: Map<number, MinuteCounts>;
  private readonly pendingClosed = new Map<number, MinuteCounts>();
  private readonly corrections = new Map<number, MinuteCounts>();
  /** Fields of `corrections` by fieldOf key: value read, last cause. */
  private readonly touched = new Map<string, Touched>();
  private closed: number;
  private sealBound = NO_MINUTE;
  private refusedSealed = 0;

  constructor(
    private readonly dimensions: readonly string[],
    private readonly rankings: ShardRankings,
    /** Loads stored values of closed-minute fields (the actor's `readClosed` port). */
    private readonly readClosed: (reads: readonly CountRead[]) => Promise<number[]>,
    restored?: { closedThrough: number; open: Map<number, MinuteCounts> },
  ) {
    this.closed = restored?.closedThrough ?? NO_MINUTE;
    this.open = restored?.open ?? new Map();
  }

  /** Every minute <= closedThrough is closed (final). */
  get closedThrough(): number {
    return this.closed;
  }

  /** Every minute <= sealedThrough is sealed (never after closedThrough); NO_MINUTE: none. */
  get sealedThrough(): number {
    return Math.min(this.sealBound, this.closed);
  }

  /** Raises the sealing bound: minutes up to `minute` can no longer be reached by a live change. */
  sealUpTo(minute: number): void {
    if (minute > this.sealBound) this.sealBound = minute;
  }

  /**
   * Seals what no live path can reach at watermark `wm`: a click is refused as too old before
   * `wm - retentionMs`, so none lands in a minute that ends by then; a verdict changes only clicks
   * the invalid-click rules hold, so none reaches a minute before `oldestHeld`; a hot child's
   * report for a sealed minute (a child far behind its parent) is refused by addDelta.
   */
  sealFor(wm: number, retentionMs: number, oldestHeld: number | undefined): void {
    const bound = Math.floor((wm - retentionMs) / MINUTE_MS) - 1;
    this.sealUpTo(oldestHeld === undefined ? bound : Math.min(bound, oldestHeld - 1));
  }

  /** Changes that reached a sealed minute and were refused (should stay 0: every path checks first). */
  get sealedRefusals(): number {
    return this.refusedSealed;
  }

  /** Open minutes, ascending (the head names them; the restore reads them back). */
  openMinutes(): number[] {
    return [...this.open.keys()].sort((a, b) => a - b);
  }

  get openCount(): number {
    return this.open.size;
  }

  get pendingClosedCount(): number {
    return this.pendingClosed.size;
  }

  /** Closes the open minutes up to `closeThrough` (already capped by the caller); true when it moved. */
  closeUpTo(closeThrough: number): boolean {
    if (closeThrough <= this.closed) return false;
    for (const [m, counts] of this.open) {
      if (m > closeThrough) continue;
      this.open.delete(m);
      this.pendingClosed.set(m, counts);
      this.rankings.retain(m, counts);
    }
    this.closed = closeThrough;
    this.rankings.dropBefore(closeThrough + 1 - this.rankings.maxWindow);
    return true;
  }

  /**
   * Counts a fresh click into the window its minute lives in; a late one (its minute closed) also
   * moves the live rankings. Its corrections must have been loaded (`loadCorrections`). Returns
   * whether it was late.
   */
  addClick(c: Click): boolean {
    const m = minuteOf(c.ts);
    if (m <= this.sealedThrough) {
      // Unreachable: the actor refuses clicks older than its horizon first (too_old).
      this.refusedSealed++;
      return true;
    }
    this.windowFor(m).add(c, this.dimensions);
    if (m > this.closed) return false;
    if (!this.pendingClosed.has(m)) {
      this.touch(m, c.ad_id, null, null, 'late_click');
      for (const d of this.dimensions) {
        const v = dimensionValue(c, d);
        if (v !== undefined) this.touch(m, c.ad_id, d, v, 'late_click');
      }
    }
    // Pending minutes are shared with the rankings; otherwise they correct their own copy.
    this.rankings.lateClick(m, this.closed, c, this.dimensions, this.pendingClosed.has(m));
    return true;
  }

  /**
   * Adds a report delta as late clicks are added: into the minute's window and the live rankings.
   * `cause` names it if it corrects a closed, committed minute. Returns false when refused (a
   * sealed minute).
   */
  addDelta(adId: string, d: ReportDelta, cause: CorrectionCause): boolean {
    if (d.minute <= this.sealedThrough) {
      this.refusedSealed++;
      return false;
    }
    const dim = d.dim ?? undefined;
    const value = d.value ?? undefined;
    const mc = this.windowFor(d.minute);
    mc.set(adId, (mc.get(adId, dim, value) ?? 0) + d.delta, dim, value);
    if (d.minute <= this.closed) {
      if (!this.pendingClosed.has(d.minute)) this.touch(d.minute, adId, d.dim, d.value, cause);
      this.rankings.lateDelta(d.minute, this.closed, adId, d.dim, d.value, d.delta, this.pendingClosed.has(d.minute));
    }
    return true;
  }

  /** A correction field changed: remember its cause (its stored value was read by readIntoCorrections). */
  private touch(m: number, adId: string, dim: string | null, value: string | null, cause: CorrectionCause): void {
    const t = this.touched.get(fieldOf(m, dim, value, adId));
    if (t) t.cause = cause;
  }

  /** The window a change of minute `m` counts into: open, closed-unflushed, or a correction. */
  private windowFor(m: number): MinuteCounts {
    if (m > this.closed) {
      let w = this.open.get(m);
      if (!w) this.open.set(m, (w = new MinuteCounts(true)));
      return w;
    }
    const pending = this.pendingClosed.get(m);
    if (pending) return pending;
    // Loaded by loadCorrections / loadDeltaFields before any late change reaches here.
    return this.corrections.get(m)!;
  }

  /** Whether a change to this field of minute `m` needs its stored value read first. */
  private needsRead(m: number, adId: string, dim: string | null, value: string | null): boolean {
    if (m > this.closed || this.pendingClosed.has(m) || m <= this.sealedThrough) return false;
    return this.corrections.get(m)?.get(adId, dim ?? undefined, value ?? undefined) === undefined;
  }

  /**
   * Loads the stored values of every closed-minute field these late clicks will correct. Changes
   * nothing else, so a failed read leaves the windows as they were.
   */
  async loadCorrections(fresh: readonly Click[]): Promise<void> {
    const reads: CountRead[] = [];
    const seen = new Set<string>();
    const want = (minute: number, dim: string | null, value: string | null, adId: string): void => {
      const key = `${minute}\u0000${dim ?? ''}\u0000${value ?? ''}\u0000${adId}`;
      if (seen.has(key)) return;
      seen.add(key);
      if (this.needsRead(minute, adId, dim, value)) reads.push({ minute, dim, value, adId });
    };
    for (const c of fresh) {
      const m = minuteOf(c.ts);
      if (m > this.closed || this.pendingClosed.has(m) || m <= this.sealedThrough) continue;
      want(m, null, null, c.ad_id);
      for (const d of this.dimensions) {
        const v = dimensionValue(c, d);
        if (v !== undefined) want(m, d, v, c.ad_id);
      }
    }
    await this.readIntoCorrections(reads);
  }

  /** Like loadCorrections, for the fields a child's report changes. */
  async loadDeltaFields(adId: string, deltas: readonly ReportDelta[]): Promise<void> {
    const reads: CountRead[] = [];
    const seen = new Set<string>();
    for (const d of deltas) {
      const key = `${d.minute}\u0000${d.dim ?? ''}\u0000${d.value ?? ''}`;
      if (seen.has(key)) continue;
      seen.add(key);
      if (this.needsRead(d.minute, adId, d.dim, d.value)) reads.push({ minute: d.minute, dim: d.dim, value: d.value, adId });
    }
    await this.readIntoCorrections(reads);
  }

  /** Reads stored values of closed-minute fields into `corrections`, where late changes then apply. */
  private async readIntoCorrections(reads: readonly CountRead[]): Promise<void> {
    if (reads.length === 0) return;
    const values = await this.readClosed(reads);
    reads.forEach((r, i) => {
      let mc = this.corrections.get(r.minute);
      if (!mc) this.corrections.set(r.minute, (mc = new MinuteCounts()));
      const old = values[i] ?? 0;
      mc.set(r.adId, old, r.dim ?? undefined, r.value ?? undefined);
      this.touched.set(fieldOf(r.minute, r.dim, r.value, r.adId), { minute: r.minute, adId: r.adId, dim: r.dim, value: r.value, old, cause: undefined });
    });
  }

  /**
   * The count fields changed since the last commit (open minutes in place, closing and corrected
   * minutes), appended to `writes`; returns whether minutes are closing or corrected (a commit is
   * due even if no field changed).
   */
  changedWrites(writes: CountWrite[]): boolean {
    for (const [m, mc] of this.open) mc.dirtyWrites(m, writes);
    for (const [m, mc] of this.pendingClosed) mc.dirtyWrites(m, writes);
    for (const [m, mc] of this.corrections) mc.writes(m, writes);
    return this.pendingClosed.size > 0 || this.corrections.size > 0;
  }

  /**
   * The corrected fields since the last commit: value read, value to commit, cause of the last
   * change. Includes fields whose value came back to the stored one (old === new).
   */
  pendingCorrections(): CountCorrection[] {
    const out: CountCorrection[] = [];
    for (const t of this.touched.values()) {
      if (t.cause === undefined) continue;
      const now = this.corrections.get(t.minute)?.get(t.adId, t.dim ?? undefined, t.value ?? undefined) ?? t.old;
      out.push({ minute: t.minute, adId: t.adId, dim: t.dim, value: t.value, old: t.old, new: now, cause: t.cause });
    }
    return out;
  }

  /** After a successful commit: closed and corrected minutes live in the store only. */
  committed(): void {
    for (const mc of this.open.values()) mc.clearDirty();
    // Closed minutes live on in the live rankings: drop their change tracking with them.
    for (const mc of this.pendingClosed.values()) mc.clearDirty();
    this.pendingClosed.clear();
    this.corrections.clear();
    this.touched.clear();
  }

  /** The absolute counts of the open minutes, as count writes (a hot child's reports). */
  openWrites(): CountWrite[] {
    const out: CountWrite[] = [];
    for (const [m, mc] of this.open) mc.writes(m, out);
    return out;
  }

  /** Ranking updates over these windows (see ShardRankings.updates). */
  rankingUpdates(provEnd: number, withProvisional: boolean, now: number): RankingUpdate[] {
    return this.rankings.updates(this.closed, this.open, provEnd, withProvisional, now);
  }

  queryAd(q: AdQuery, watermark: number): AdQueryReply {
    const minutes: Array<[number, number]> = [];
    const corrections: Array<[number, number]> = [];
    for (let m = q.fromMinute; m < q.toMinute; m++) {
      const mc = this.open.get(m) ?? this.pendingClosed.get(m);
      if (mc) {
        minutes.push([m, mc.get(q.adId, q.dim, q.value) ?? 0]);
        continue;
      }
      const corr = this.corrections.get(m)?.get(q.adId, q.dim, q.value);
      if (corr !== undefined) corrections.push([m, corr]);
    }
    return { minutes, corrections, closedThrough: this.closed, sealedThrough: this.sealedThrough, watermark };
  }

  queryTop(q: TopQuery): TopQueryReply {
    const covered: number[] = [];
    const sums = new Map<string, number>();
    for (const [m, mc] of [...this.open, ...this.pendingClosed]) {
      if (m < q.fromMinute || m >= q.toMinute) continue;
      covered.push(m);
      const view = mc.view(q.dim, q.value);
      if (view) for (const [ad, n] of view) sums.set(ad, (sums.get(ad) ?? 0) + n);
    }
    const corrections: TopQueryReply['corrections'] = [];
    for (const [m, mc] of this.corrections) {
      if (m < q.fromMinute || m >= q.toMinute) continue;
      const view = mc.view(q.dim, q.value);
      if (view && view.size > 0) corrections.push([m, flatten(view)]);
    }
    return { covered, counts: flatten(sums), corrections, closedThrough: this.closed };
  }
}
