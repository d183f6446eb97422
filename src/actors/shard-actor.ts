import { AdaggError, ErrorCode } from '../errors.ts';
import type { Click } from '../model/click.ts';
import { dimensionValue } from '../model/click.ts';
import { MINUTE_MS, minuteOf } from '../model/time.ts';
import type { Clock } from '../runtime/clock.ts';
import type { HotControl } from '../model/hot-messages.ts';
import type { CountRead, CountWrite, ShardCommit, StateOp, StateReader, UnitId } from '../model/shard-state.ts';
import { ClickDedup, fnv1a32, murmur3_32 } from './shard/click-dedup.ts';
import { applyHotControl, type HotActorAccess } from './shard/hot-handlers.ts';
import { HotState, type ControlResult, type HotChildSpec, type HotForward, type HotSplitStatus, type ReportDelta } from './shard/hot-split.ts';
import { decodeLegacy, isLegacyVersion } from './shard/legacy-snapshot.ts';
import { flatten, MinuteCounts } from './shard/minute-counts.ts';
import { ShardRankings, type RankingState, type RankingUpdate, type RankSpec } from './shard/rankings.ts';
import { decodeStored, dedupPart, encodeHead, headVersion, parseHead } from './shard/state-head.ts';

/**
 * The shard actor's state machine: event-time one-minute tumbling windows per ad_id and per
 * ad_id × dimension value, a watermark with allowed lateness and idle advance, click_id dedupe
 * inside the correction horizon, and corrections of closed minutes.
 *
 * It is pure state plus two injected ports (clock, closed-count reader). The runtime's shard host
 * feeds it stream messages in order, one at a time, and persists `prepareCommit()` atomically.
 */

export interface ShardActorConfig {
  /** The shard number, or a hot ad's child unit id (`h<adkey>-<gen>-<k>`). */
  shard: UnitId;
  dimensions: readonly string[];
  allowedLatenessMs: number;
  idleTimeoutMs: number;
  /** Event-time span behind the watermark for which dedupe ids and corrections are kept. */
  retentionMs: number;
  /** Depth of the streaming top-K per ranking spec. @default 100 */
  topnDepth?: number;
  /** Closed minutes kept in memory for live rankings (longest live window). @default 60 */
  maxLiveWindow?: number;
  /**
   * Hot-ad splitting: `splits` honours split messages (managed mode; otherwise they are skipped);
   * `child` makes this actor a child counting part of one split ad's clicks.
   */
  hot?: { splits?: boolean; child?: HotChildSpec | undefined };
}

export interface ShardActorPorts {
  clock: Clock;
  /** Loads stored final values of closed-minute fields, for corrections by late clicks. */
  readClosed(reads: readonly CountRead[]): Promise<number[]>;
  /**
   * Hot child only: for each id (flat hash pairs, fnv1a32 then murmur3_32, and the click's event
   * time), whether the parent counted it before the split. Resolves only once the parent has
   * applied the split.
   */
  seenByParent?(hashes: readonly number[], ts: readonly number[]): Promise<boolean[]>;
}

export interface BatchResult {
  skipped: boolean;
  counted: number;
  duplicates: number;
  late: number;
  /** Clicks older than the retention behind the watermark: never counted, sent to dead letters. */
  tooOld: Click[];
  /** Clicks of split ads not counted here: the host republishes them (to a child, or back to the parent). */
  forward?: HotForward[];
}

export type { ControlResult, HotSplitStatus };

export interface AdQuery {
  adId: string;
  fromMinute: number;
  toMinute: number;
  dim?: string | undefined;
  value?: string | undefined;
}

export interface AdQueryReply {
  /** Minutes held in memory (open or closed-but-unflushed), with this ad's count in each. */
  minutes: Array<[number, number]>;
  /** Unflushed corrected values of closed minutes that override the store. */
  corrections: Array<[number, number]>;
  closedThrough: number;
  watermark: number;
}

export interface TopQuery {
  fromMinute: number;
  toMinute: number;
  dim?: string | undefined;
  value?: string | undefined;
}

export interface TopQueryReply {
  /** Minutes summed into `counts`; the caller reads the others from the store. */
  covered: number[];
  counts: Array<string | number>;
  /** Unflushed corrected values of closed minutes (per minute, flat ad/count) that override the store. */
  corrections: Array<[number, Array<string | number>]>;
  closedThrough: number;
}

export interface ShardStatus {
  shard: UnitId;
  lastSeq: number;
  watermark: number;
  closedThrough: number;
  maxEventTs: number;
  openMinutes: number;
  pendingClosedMinutes: number;
  trackedIds: number;
  dedupBytes: number;
  retainedMinutes: number;
}

const NO_TIME = -1;

export class ShardActor {
  lastSeq = 0;
  maxEventTs = NO_TIME;
  watermark = NO_TIME;
  /** Every minute <= closedThrough is closed (final). */
  closedThrough = NO_TIME;
  private open = new Map<number, MinuteCounts>();
  private pendingClosed = new Map<number, MinuteCounts>();
  private corrections = new Map<number, MinuteCounts>();
  private dedup: ClickDedup;
  readonly rankings: ShardRankings;
  private lastBatchWallMs: number;
  private expiredBeforeMinute = NO_TIME;
  /** How the last restore spent its time (reading parts, rebuilding open minutes, the dedupe table). */
  restoreStats: { readMs: number; openMs: number; dedupMs: number } | undefined;
  /** Changes to parts handed out by the dedupe table and hot state, not yet committed. */
  private unsentOps: StateOp[] = [];
  /** Hot-ad splitting state (hot-split.ts). */
  hot = new HotState();

  constructor(
    readonly config: ShardActorConfig,
    private readonly ports: ShardActorPorts,
  ) {
    this.lastBatchWallMs = ports.clock.now();
    this.rankings = new ShardRankings(config.topnDepth ?? 100, config.maxLiveWindow ?? 60);
    this.dedup = new ClickDedup({ bucketMinutes: dedupBucketMinutes(config) });
  }

  /** Applies one stream message. Messages at or below the last applied sequence are skipped. */
  async applyBatch(seq: number, clicks: readonly Click[]): Promise<BatchResult> {
    const res: BatchResult = { skipped: false, counted: 0, duplicates: 0, late: 0, tooOld: [] };
    if (seq <= this.lastSeq) return { ...res, skipped: true };
    if (this.hot.childEnded) {
      // A finished hot child counts nothing more: stragglers go back to the parent, whose table
      // holds this child's ids by the time it reads them.
      this.lastSeq = seq;
      if (clicks.length > 0) res.forward = [{ to: 'parent', clicks: [...clicks] }];
      return res;
    }
    this.lastBatchWallMs = this.ports.clock.now();
    const oldest = this.watermark === NO_TIME ? -Infinity : this.watermark - this.config.retentionMs;
    // Classify without changing state, so a failure while loading corrections leaves the actor
    // exactly as it was (its batch can be applied again); state changes only after the await.
    const fresh: Click[] = [];
    const kept: Click[] = [];
    const his: number[] = [];
    const los: number[] = [];
    const inBatch = new Set<string>();
    const diverting = this.hot.diverting;
    const diverted: Click[] = [];
    const askParent = this.ports.seenByParent;
    const freshHashes: number[] = [];
    const freshTs: number[] = [];
    for (const c of clicks) {
      if (c.ts < oldest) {
        res.tooOld.push(c);
        continue;
      }
      const h = fnv1a32(c.click_id);
      const l = murmur3_32(c.click_id);
      if (diverting && this.hot.diverts(c.ad_id)) {
        // A split ad: dropped if this shard counted it before the split, else forwarded or buffered
        // without recording its id (see hot-split.ts).
        if (this.dedup.hasHashed(h, l) || inBatch.has(c.click_id)) res.duplicates++;
        else {
          inBatch.add(c.click_id);
          diverted.push(c);
        }
        continue;
      }
      kept.push(c);
      his.push(h);
      los.push(l);
      if (this.dedup.hasHashed(h, l) || inBatch.has(c.click_id)) {
        res.duplicates++;
        continue;
      }
      inBatch.add(c.click_id);
      fresh.push(c);
      if (askParent) {
        freshHashes.push(h, l);
        freshTs.push(c.ts);
      }
    }
    if (askParent && fresh.length > 0) {
      // A hot child: a click its parent counted before the split is a duplicate here.
      const seen = await askParent(freshHashes, freshTs);
      let w = 0;
      for (let i = 0; i < fresh.length; i++) if (!seen[i]) fresh[w++] = fresh[i]!;
      res.duplicates += fresh.length - w;
      fresh.length = w;
    }
    await this.loadCorrections(fresh);
    for (let i = 0; i < kept.length; i++) this.dedup.addHashed(his[i]!, los[i]!, minuteOf(kept[i]!.ts));
    let maxTs = this.maxEventTs;
    for (const c of fresh) {
      const m = minuteOf(c.ts);
      this.windowFor(m).add(c, this.config.dimensions);
      if (m <= this.closedThrough) {
        res.late++;
        // Pending minutes are shared with the rankings; otherwise they correct their own copy.
        this.rankings.lateClick(m, this.closedThrough, c, this.config.dimensions, this.pendingClosed.has(m));
      }
      if (c.ts > maxTs) maxTs = c.ts;
    }
    res.counted = fresh.length;
    if (diverted.length > 0) {
      const forward = this.hot.divert(diverted);
      if (forward.length > 0) res.forward = forward;
    }
    this.lastSeq = seq;
    if (maxTs > this.maxEventTs) {
      this.maxEventTs = maxTs;
      this.advanceWatermark(maxTs - this.config.allowedLatenessMs);
    }
    return res;
  }

  /**
   * Periodic wall-clock tick. A shard that is caught up and has received nothing for the idle
   * timeout advances its watermark with the wall clock, so idle shards still close minutes
   * within lateness + idle timeout. Returns true when minutes were closed.
   */
  tick(caughtUp: boolean): boolean {
    const now = this.ports.clock.now();
    const before = this.closedThrough;
    if (caughtUp && now - this.lastBatchWallMs >= this.config.idleTimeoutMs) {
      this.advanceWatermark(now - this.config.allowedLatenessMs - this.config.idleTimeoutMs);
    }
    this.expireDedup();
    return this.closedThrough > before;
  }

  private advanceWatermark(w: number): void {
    if (w <= this.watermark) return;
    this.watermark = w;
    this.closeUpTo(Math.floor(w / MINUTE_MS) - 1);
  }

  /** Closes the open minutes up to `minute`, held back while a split ad's children have not closed them. */
  private closeUpTo(minute: number): void {
    const closeThrough = Math.min(minute, this.hot.closeCap());
    if (closeThrough <= this.closedThrough) return;
    for (const [m, counts] of this.open) {
      if (m > closeThrough) continue;
      this.open.delete(m);
      this.pendingClosed.set(m, counts);
      this.rankings.retain(m, counts);
    }
    this.closedThrough = closeThrough;
    this.rankings.dropBefore(closeThrough + 1 - this.rankings.maxWindow);
  }

  private expireDedup(): void {
    if (this.watermark === NO_TIME) return;
    const minMinute = minuteOf(this.watermark - this.config.retentionMs);
    if (minMinute <= this.expiredBeforeMinute) return;
    this.dedup.expireBefore(minMinute);
    this.hot.expireBefore(minMinute);
    this.expiredBeforeMinute = minMinute;
  }

  /** The window a click of minute `m` counts into: open, closed-unflushed, or a correction. */
  private windowFor(m: number): MinuteCounts {
    if (m > this.closedThrough) {
      let w = this.open.get(m);
      if (!w) this.open.set(m, (w = new MinuteCounts(true)));
      return w;
    }
    const pending = this.pendingClosed.get(m);
    if (pending) return pending;
    // Loaded by loadCorrections before any late click reaches here.
    return this.corrections.get(m)!;
  }

  /** Reads stored values of closed-minute fields into `corrections`, where late changes then apply. */
  private async readIntoCorrections(reads: readonly CountRead[]): Promise<void> {
    if (reads.length === 0) return;
    const values = await this.ports.readClosed(reads);
    reads.forEach((r, i) => {
      let mc = this.corrections.get(r.minute);
      if (!mc) this.corrections.set(r.minute, (mc = new MinuteCounts()));
      mc.set(r.adId, values[i] ?? 0, r.dim ?? undefined, r.value ?? undefined);
    });
  }

  /** Loads the stored values of every closed-minute field these late clicks will correct. */
  private async loadCorrections(fresh: readonly Click[]): Promise<void> {
    const reads: CountRead[] = [];
    const seen = new Set<string>();
    const want = (minute: number, dim: string | null, value: string | null, adId: string): void => {
      const key = `${minute}\u0000${dim ?? ''}\u0000${value ?? ''}\u0000${adId}`;
      if (seen.has(key)) return;
      seen.add(key);
      if (this.corrections.get(minute)?.get(adId, dim ?? undefined, value ?? undefined) !== undefined) return;
      reads.push({ minute, dim, value, adId });
    };
    for (const c of fresh) {
      const m = minuteOf(c.ts);
      if (m > this.closedThrough || this.pendingClosed.has(m)) continue;
      want(m, null, null, c.ad_id);
      for (const d of this.config.dimensions) {
        const v = dimensionValue(c, d);
        if (v !== undefined) want(m, d, v, c.ad_id);
      }
    }
    await this.readIntoCorrections(reads);
  }

  /**
   * What must be persisted now, or null when nothing changed since the last commit: the count
   * fields changed since then (open minutes in place, closing and corrected minutes), the dedupe
   * ids recorded since then (appended to their block), expired blocks, hot-split changes and the
   * head. Its size follows the clicks applied since the previous commit, never the state's size.
   * Nothing is forgotten until `committed()`: preparing again without committing (a failed write,
   * a look in a test) yields the same changes plus any newer ones.
   */
  prepareCommit(committedSeq: number, force = false): ShardCommit | null {
    const writes: CountWrite[] = [];
    for (const [m, mc] of this.open) mc.dirtyWrites(m, writes);
    for (const [m, mc] of this.pendingClosed) mc.dirtyWrites(m, writes);
    for (const [m, mc] of this.corrections) mc.writes(m, writes);
    const d = this.dedup.takeChanges();
    for (const a of d.appends) this.unsentOps.push({ kind: 'append', part: dedupPart(a.block), bytes: a.bytes });
    for (const b of d.dropped) this.unsentOps.push({ kind: 'del', part: dedupPart(b) });
    for (const op of this.hot.takeChanges()) this.unsentOps.push(op);
    const closing = this.pendingClosed.size > 0 || this.corrections.size > 0;
    if (!force && !closing && writes.length === 0 && this.unsentOps.length === 0 && this.lastSeq === committedSeq) return null;
    return {
      seq: this.lastSeq,
      watermark: this.watermark,
      closedThrough: this.closedThrough,
      head: this.head(),
      writes,
      ops: [...this.unsentOps],
    };
  }

  /**
   * After a successful commit (of the last `prepareCommit`, with nothing applied in between, as the
   * shard host guarantees): closed and corrected minutes live in the store only; nothing is pending.
   */
  committed(_c: ShardCommit): void {
    for (const mc of this.open.values()) mc.clearDirty();
    // Closed minutes live on in the live rankings: drop their change tracking with them.
    for (const mc of this.pendingClosed.values()) mc.clearDirty();
    this.pendingClosed.clear();
    this.corrections.clear();
    this.unsentOps = [];
  }

  /** Applies a hot-split control message (split, unsplit, a child's report, an end marker) at `seq`. */
  async applyControl(seq: number, msg: HotControl): Promise<ControlResult> {
    if (seq <= this.lastSeq) return { skipped: true, changed: false };
    return applyHotControl(this.hotAccess(), seq, msg);
  }

  /**
   * A child's question: which of these ids (flat hash pairs) this parent counted before split `gen`
   * of `ad`, and the highest event time it had counted then (the child need not ask about later
   * clicks). Null until this actor has applied that split (restored from an older snapshot, it
   * must not answer early); the answer never changes afterwards (forwarded ids are not recorded).
   */
  hotSeen(ad: string, gen: number, hashes: readonly number[]): { seen: boolean[]; maxTs: number } | null {
    return this.hot.seen(ad, gen, hashes, this.dedup);
  }

  hotStatus(): HotSplitStatus[] {
    return this.hot.status();
  }

  /** Hot child: the absolute counts of its open minutes, as count writes (for its reports). */
  openWrites(): CountWrite[] {
    const out: CountWrite[] = [];
    for (const [m, mc] of this.open) mc.writes(m, out);
    return out;
  }

  /** Hot child: its dedupe table image (ClickDedup.toBytes), sent with its final report. */
  dedupBytes(): Uint8Array {
    return this.dedup.toBytes();
  }

  private hotAccess(): HotActorAccess {
    const self = this; // for the getters below
    return {
      config: this.config,
      hot: this.hot,
      dedup: this.dedup,
      get closedThrough() {
        return self.closedThrough;
      },
      get maxEventTs() {
        return self.maxEventTs;
      },
      get openMinutes() {
        return [...self.open.keys()];
      },
      setLastSeq: (seq) => {
        if (seq > this.lastSeq) this.lastSeq = seq;
      },
      loadDeltaFields: (ad, deltas) => this.loadDeltaFields(ad, deltas),
      addDelta: (ad, d) => this.addDelta(ad, d),
      closeUpTo: (minute) => this.closeUpTo(minute),
      recloseToWatermark: () => {
        if (this.watermark !== NO_TIME) this.closeUpTo(Math.floor(this.watermark / MINUTE_MS) - 1);
      },
      applyBatch: (seq, clicks) => this.applyBatch(seq, clicks),
    };
  }

  /** Like loadCorrections, for the fields a child's report changes. */
  private async loadDeltaFields(adId: string, deltas: readonly ReportDelta[]): Promise<void> {
    const reads: CountRead[] = [];
    const seen = new Set<string>();
    for (const d of deltas) {
      if (d.minute > this.closedThrough || this.pendingClosed.has(d.minute)) continue;
      const key = `${d.minute}\u0000${d.dim ?? ''}\u0000${d.value ?? ''}`;
      if (seen.has(key)) continue;
      seen.add(key);
      if (this.corrections.get(d.minute)?.get(adId, d.dim ?? undefined, d.value ?? undefined) !== undefined) continue;
      reads.push({ minute: d.minute, dim: d.dim, value: d.value, adId });
    }
    await this.readIntoCorrections(reads);
  }

  /** Adds a report delta as late clicks are added: into the minute's window and the live rankings. */
  private addDelta(adId: string, d: ReportDelta): void {
    const dim = d.dim ?? undefined;
    const value = d.value ?? undefined;
    const bump = (mc: MinuteCounts): void => mc.set(adId, (mc.get(adId, dim, value) ?? 0) + d.delta, dim, value);
    bump(this.windowFor(d.minute));
    if (d.minute <= this.closedThrough) {
      this.rankings.lateDelta(d.minute, this.closedThrough, adId, d.dim, d.value, d.delta, this.pendingClosed.has(d.minute));
    }
  }

  queryAd(q: AdQuery): AdQueryReply {
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
    return { minutes, corrections, closedThrough: this.closedThrough, watermark: this.watermark };
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
    return { covered, counts: flatten(sums), corrections, closedThrough: this.closedThrough };
  }

  /** Ranking updates to publish now (final lists on minute close, provisional deltas if due). */
  rankingUpdates(withProvisional: boolean): RankingUpdate[] {
    const now = this.ports.clock.now();
    this.rankings.expireSpecs(now);
    return this.rankings.updates(this.closedThrough, this.open, minuteOf(now) + 1, withProvisional, now);
  }

  addRankSpecs(specs: readonly RankSpec[], leaseMs: number): boolean[] {
    const until = this.ports.clock.now() + leaseMs;
    return specs.map((s) => this.rankings.addSpec(s, until));
  }

  rankingState(): RankingState {
    return this.rankings.state();
  }

  /** Minutes the live rankings need from the store after a restart (closed ones within the longest window). */
  retainedRange(): [number, number] {
    return [this.closedThrough + 1 - this.rankings.maxWindow, this.closedThrough + 1];
  }

  /**
   * After a restart the live rankings need the closed minutes of `retainedRange()`; they are read
   * back while the actor consumes, a few at a time: `rankingWarmUpNext` names the next ones (and
   * must be called with nothing uncommitted, right after a commit), `rankingsLoaded` hands them in.
   */
  beginRankingWarmUp(): void {
    const [from, to] = this.retainedRange();
    const minutes: number[] = [];
    for (let m = Math.max(from, 0); m < to; m++) minutes.push(m);
    this.rankings.beginWarmUp(minutes);
  }

  /** Whether closed minutes are still to be read back for the live rankings. */
  get rankingsWarming(): boolean {
    return this.rankings.warmUpPending.length > 0;
  }

  rankingWarmUpNext(max: number): number[] {
    const next = this.rankings.warmUpPending.slice(0, max);
    this.rankings.warmUpIssued(next);
    return next;
  }

  rankingsLoaded(stored: readonly CountWrite[], minutes: readonly number[]): void {
    this.rankings.completeWarmUp(MinuteCounts.fromWrites(stored), minutes, this.closedThrough);
  }

  status(): ShardStatus {
    return {
      shard: this.config.shard,
      lastSeq: this.lastSeq,
      watermark: this.watermark,
      closedThrough: this.closedThrough,
      maxEventTs: this.maxEventTs,
      openMinutes: this.open.size,
      pendingClosedMinutes: this.pendingClosed.size,
      trackedIds: this.dedup.size,
      dedupBytes: this.dedup.byteLength,
      retainedMinutes: this.rankings.retainedMinutes,
    };
  }

  /** The head of the persisted state (state-head.ts): scalars and the names of its parts. */
  head(): Uint8Array {
    return encodeHead({
      shard: this.config.shard,
      lastSeq: this.lastSeq,
      maxEventTs: this.maxEventTs,
      watermark: this.watermark,
      closedThrough: this.closedThrough,
      expiredBeforeMinute: this.expiredBeforeMinute,
      bucketMinutes: this.dedup.bucketMinutes,
      open: [...this.open.keys()].sort((a, b) => a - b),
      blocks: this.dedup.blocks(),
      hot: this.hot.isEmpty() ? null : this.hot.encodeHead(),
    });
  }

  /**
   * Restores an actor from its committed state: the head names the open minutes (read from the
   * count hashes), the dedupe blocks and the hot-split parts, all read in parallel. The same code
   * runs for every restart. A legacy whole-state snapshot (format 1 or 2) is migrated: its state is
   * marked changed, so the first commit writes it out as increments and replaces it with a head.
   */
  static async restore(stored: Uint8Array, reader: StateReader, config: ShardActorConfig, ports: ShardActorPorts): Promise<ShardActor> {
    const doc = decodeStored(stored, config.shard);
    const a = new ShardActor(config, ports);
    if (isLegacyVersion(headVersion(doc))) {
      const old = decodeLegacy(doc, config.shard);
      a.setProgress(old.lastSeq, old.maxEventTs, old.watermark, old.closedThrough);
      a.open = old.open;
      if (old.hot) a.hot = old.hot;
      // fromBytes marks every id pending, so the first commit appends each to its block.
      a.dedup = ClickDedup.fromBytes(old.dedup, { bucketMinutes: a.dedup.bucketMinutes });
      return a;
    }
    const h = parseHead(doc, config.shard);
    a.setProgress(h.lastSeq, h.maxEventTs, h.watermark, h.closedThrough);
    a.expiredBeforeMinute = h.expiredBeforeMinute;
    const t0 = performance.now();
    const [minutes, blocks, hot] = await Promise.all([
      reader.minutes(h.open),
      reader.logs(h.blocks.map(dedupPart)),
      h.hot === null ? Promise.resolve(undefined) : HotState.restore(h.hot, reader),
    ]);
    const missing = h.blocks.filter((_, i) => blocks[i] === null);
    if (missing.length > 0) {
      throw new AdaggError(ErrorCode.SnapshotCorrupt, `shard ${config.shard}: dedupe blocks ${missing.join(', ')} named by the head are missing`);
    }
    const t1 = performance.now();
    for (const [m, mc] of MinuteCounts.fromWrites(minutes, true)) a.open.set(m, mc);
    const t2 = performance.now();
    a.dedup = ClickDedup.fromBlocks(
      h.blocks.map((block, i) => ({ block, bytes: blocks[i]! })),
      { bucketMinutes: h.bucketMinutes, ...(h.expiredBeforeMinute === NO_TIME ? {} : { minMinute: h.expiredBeforeMinute }) },
    );
    if (hot) a.hot = hot;
    a.restoreStats = { readMs: Math.round(t1 - t0), openMs: Math.round(t2 - t1), dedupMs: Math.round(performance.now() - t2) };
    return a;
  }

  private setProgress(lastSeq: number, maxEventTs: number, watermark: number, closedThrough: number): void {
    this.lastSeq = lastSeq;
    this.maxEventTs = maxEventTs;
    this.watermark = watermark;
    this.closedThrough = closedThrough;
  }
}

/** Minutes per dedupe block, from the span of event time the table must cover. */
function dedupBucketMinutes(config: ShardActorConfig): number {
  return ClickDedup.bucketMinutesFor(Math.ceil((config.retentionMs + config.allowedLatenessMs) / MINUTE_MS) + 2);
}
