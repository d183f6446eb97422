import type { BatchResult, ControlResult, RiskResult } from '../model/apply-results.ts';
import type { Click } from '../model/click.ts';
import type { HotControl } from '../model/hot-messages.ts';
import type { HotSeenReply, HotSplitStatus, RetiredSplit, SplitView } from '../model/hot-report.ts';
import type { RankSpec } from '../model/rank-spec.ts';
import type { RiskMessage } from '../model/risk-messages.ts';
import type { RankingState, RankingUpdate } from '../model/rankings.ts';
import type { ShardActorConfig } from '../model/shard-config.ts';
import type { AdQuery, AdQueryReply, OffendersQuery, OffendersReply, ShardStatus, TopQuery, TopQueryReply } from '../model/shard-queries.ts';
import type { CountWrite, ShardCommit, StateOp, StateReader } from '../model/shard-state.ts';
import { MINUTE_MS, minuteOf } from '../model/time.ts';
import type { RestoreStats, ShardActorPorts, ShardBehaviour } from '../runtime/shard-behaviour.ts';
import { classifyBatch, type Classified } from './shard/batch-classify.ts';
import { applyHotControl } from './shard/hot-handlers.ts';
import { HotState } from './shard/hot-split.ts';
import { MinuteCounts } from './shard/minute-counts.ts';
import { ShardRankings } from './shard/rankings.ts';
import { applyVerdictChanges } from './shard/risk-counts.ts';
import type { RiskEngine } from './shard/risk-engine.ts';
import { applyRiskMessage } from './shard/risk-setup.ts';
import { encodeShardHead, freshDedup, NO_TIME, readShardImage, type ShardImage } from './shard/shard-codec.ts';
import type { ShardDedup } from './shard/shard-dedup.ts';
import { ShardWindows } from './shard/windows.ts';

/**
 * The shard actor's state machine: event-time one-minute tumbling windows per ad_id and per
 * ad_id × dimension value, a watermark with allowed lateness and idle advance, click_id dedupe
 * inside the correction horizon, and corrections of closed minutes.
 *
 * It is pure state plus two injected ports (clock, closed-count reader) and implements the
 * runtime's actor contract (runtime/shard-behaviour.ts): the shard host feeds it stream messages in
 * order, one at a time, and persists `prepareCommit()` atomically. Its parts: the windows and
 * corrections (shard/windows.ts), the keyed click-id dedupe (shard/shard-dedup.ts), the live rankings
 * (shard/rankings.ts), hot-ad splitting (shard/hot-split.ts, shard/hot-handlers.ts) and the
 * persisted form (shard/shard-codec.ts). This class owns the stream position and the watermark,
 * and decides what each message does to the parts.
 */
export class ShardActor implements ShardBehaviour {
  private seq: number;
  private maxTs: number;
  private wm: number;
  private expiredBeforeMinute: number;
  private readonly windows: ShardWindows;
  private readonly dedup: ShardDedup;
  private readonly rankings: ShardRankings;
  private readonly hot: HotState;
  private lastBatchWallMs: number;
  /** How the last restore spent its time (reading parts, rebuilding open minutes, the dedupe table). */
  readonly restoreStats: RestoreStats | undefined;
  /** Changes to parts handed out by the dedupe table and hot state, not yet committed. */
  private unsentOps: StateOp[] = [];
  /** Invalid-click rules (docs/risk.md): created by the first rules or presence message; absent: every click is valid. */
  private risk: RiskEngine | undefined;

  /** A fresh actor, or (`image`) one rebuilt from its committed state by `ShardActor.restore`. */
  constructor(
    readonly config: ShardActorConfig,
    private readonly ports: ShardActorPorts,
    image?: ShardImage,
  ) {
    this.lastBatchWallMs = ports.clock.now();
    this.rankings = new ShardRankings(config.topnDepth ?? 100, config.maxLiveWindow ?? 60);
    const p = image?.progress;
    this.seq = p?.lastSeq ?? 0;
    this.maxTs = p?.maxEventTs ?? NO_TIME;
    this.wm = p?.watermark ?? NO_TIME;
    this.expiredBeforeMinute = p?.expiredBeforeMinute ?? NO_TIME;
    this.windows = new ShardWindows(
      config.dimensions,
      this.rankings,
      (reads) => ports.readClosed(reads),
      image ? { closedThrough: image.progress.closedThrough, open: image.open } : undefined,
    );
    this.dedup = image?.dedup ?? freshDedup(config);
    this.hot = image?.hot ?? new HotState();
    this.risk = image?.risk;
    this.restoreStats = image?.restoreStats;
    this.reseal();
  }

  /**
   * Restores an actor from its committed state (shard-codec.ts): the same code runs for every
   * restart; a legacy whole-state snapshot is migrated by its first commit.
   */
  static async restore(stored: Uint8Array, reader: StateReader, config: ShardActorConfig, ports: ShardActorPorts): Promise<ShardActor> {
    // Idle time counts from the start of the restore, not its end (as for a fresh actor).
    const startedAt = ports.clock.now();
    const actor = new ShardActor(config, ports, await readShardImage(stored, reader, config));
    actor.lastBatchWallMs = startedAt;
    return actor;
  }

  get lastSeq(): number {
    return this.seq;
  }

  get maxEventTs(): number {
    return this.maxTs;
  }

  get watermark(): number {
    return this.wm;
  }

  /** Every minute <= closedThrough is closed (final). */
  get closedThrough(): number {
    return this.windows.closedThrough;
  }

  /** Applies one stream message. Messages at or below the last applied sequence are skipped. */
  async applyBatch(seq: number, clicks: readonly Click[]): Promise<BatchResult> {
    const res: BatchResult = { skipped: false, counted: 0, duplicates: 0, late: 0, tooOld: [] };
    if (seq <= this.seq) return { ...res, skipped: true };
    if (this.hot.childEnded) {
      // A finished hot child counts nothing more: stragglers go back to the parent, whose table
      // holds this child's ids by the time it reads them.
      this.seq = seq;
      if (clicks.length > 0) res.forward = [{ to: 'parent', clicks: [...clicks] }];
      return res;
    }
    this.lastBatchWallMs = this.ports.clock.now();
    // Classify without changing state, so a failure while loading corrections leaves the actor
    // exactly as it was (its batch can be applied again); state changes only after the awaits.
    const oldest = this.wm === NO_TIME ? -Infinity : this.wm - this.config.retentionMs;
    const b = classifyBatch(clicks, { oldest, dedup: this.dedup, hot: this.hot, askParent: this.ports.seenByParent !== undefined }, res);
    if (this.ports.seenByParent && b.fresh.length > 0) await this.dropSeenByParent(b, res);
    let maxTs = this.maxTs;
    if (this.risk) {
      // Verdicts first (a late click can change earlier ones), then each change moves counts.
      for (let i = 0; i < b.kept.length; i++) this.dedup.add(b.his[i]!, b.los[i]!, minuteOf(b.kept[i]!.ts));
      const moved = await applyVerdictChanges(this.windows, this.config.dimensions, this.risk.add(b.fresh, seq));
      res.late += moved.late;
      if (hasMoves(moved.tally)) res.risk = moved.tally;
      for (const c of b.fresh) if (c.ts > maxTs) maxTs = c.ts;
    } else {
      await this.windows.loadCorrections(b.fresh);
      for (let i = 0; i < b.kept.length; i++) this.dedup.add(b.his[i]!, b.los[i]!, minuteOf(b.kept[i]!.ts));
      for (const c of b.fresh) {
        if (this.windows.addClick(c)) res.late++;
        if (c.ts > maxTs) maxTs = c.ts;
      }
    }
    res.counted = b.fresh.length;
    if (b.diverted.length > 0) {
      const forward = this.hot.divert(b.diverted);
      if (forward.length > 0) res.forward = forward;
    }
    this.seq = seq;
    if (maxTs > this.maxTs) {
      this.maxTs = maxTs;
      this.advanceWatermark(maxTs - this.config.allowedLatenessMs);
    }
    return res;
  }

  /**
   * Applies a risk message at `seq` (docs/risk.md): new rules re-evaluate the clicks held, a
   * presence report updates a spread group this shard is the risk partition of, a verdict marks a
   * spread group of this shard's ads. Verdict changes move counts like late clicks.
   */
  async applyRisk(seq: number, msg: RiskMessage): Promise<RiskResult> {
    if (seq <= this.seq) return { skipped: true };
    const res: RiskResult = { skipped: false };
    if (typeof this.config.shard === 'number' && this.config.shards !== undefined && !this.hot.childEnded) {
      const r = applyRiskMessage(this.risk, msg, seq, { unit: this.config.shard, partitions: this.config.shards });
      this.risk = r.engine;
      const changes = r.changes;
      const moved = await applyVerdictChanges(this.windows, this.config.dimensions, changes);
      if (hasMoves(moved.tally)) res.risk = moved.tally;
    }
    this.seq = seq;
    return res;
  }

  /** A hot child: a click its parent counted before the split is a duplicate here. */
  private async dropSeenByParent(b: Classified, res: BatchResult): Promise<void> {
    // Two pairs per click (keyed, legacy: see classifyBatch): seen if the parent holds either.
    const seen = await this.ports.seenByParent!(b.freshHashes, b.freshTs);
    let w = 0;
    for (let i = 0; i < b.fresh.length; i++) if (!seen[2 * i] && !seen[2 * i + 1]) b.fresh[w++] = b.fresh[i]!;
    res.duplicates += b.fresh.length - w;
    b.fresh.length = w;
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

  /** Raises the sealing bound as the watermark or the held clicks move (ShardWindows.sealFor). */
  private reseal(): void {
    if (this.wm !== NO_TIME) this.windows.sealFor(this.wm, this.config.retentionMs, this.risk?.oldestHeldMinute());
  }

  private advanceWatermark(w: number): void {
    if (w <= this.wm) return;
    this.wm = w;
    this.closeUpTo(Math.floor(w / MINUTE_MS) - 1);
    this.reseal();
  }

  /** Closes the open minutes up to `minute`, held back while a split ad's children have not closed them. */
  private closeUpTo(minute: number): void {
    this.windows.closeUpTo(Math.min(minute, this.hot.closeCap()));
  }

  private expireDedup(): void {
    if (this.wm === NO_TIME) return;
    const minMinute = minuteOf(this.wm - this.config.retentionMs);
    if (minMinute <= this.expiredBeforeMinute) return;
    this.dedup.expireBefore(minMinute);
    this.hot.expireBefore(minMinute);
    this.risk?.expire(this.wm - this.config.retentionMs, this.config.retentionMs);
    this.expiredBeforeMinute = minMinute;
    this.reseal();
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
    const closing = this.windows.changedWrites(writes);
    for (const op of this.dedup.takeChanges()) this.unsentOps.push(op);
    for (const op of this.hot.takeChanges()) this.unsentOps.push(op);
    if (this.risk) for (const op of this.risk.takeOps()) this.unsentOps.push(op);
    const outbox = this.risk?.outbox() ?? [];
    const corrections = this.windows.pendingCorrections();
    if (!force && !closing && writes.length === 0 && this.unsentOps.length === 0 && outbox.length === 0 && this.seq === committedSeq) return null;
    return {
      seq: this.seq,
      watermark: this.wm,
      closedThrough: this.closedThrough,
      head: this.head(),
      writes,
      ops: [...this.unsentOps],
      ...(outbox.length > 0 ? { outbox: [...outbox] } : {}),
      ...(corrections.length > 0 ? { corrections } : {}),
    };
  }

  /**
   * After a successful commit (of the last `prepareCommit`, with nothing applied in between, as the
   * shard host guarantees): closed and corrected minutes live in the store only; nothing is pending.
   */
  committed(_c: ShardCommit): void {
    this.windows.committed();
    this.unsentOps = [];
    this.risk?.outboxSent();
  }

  /** The head of the persisted state (state-head.ts): scalars and the names of its parts. */
  head(): Uint8Array {
    const progress = { lastSeq: this.seq, maxEventTs: this.maxTs, watermark: this.wm, closedThrough: this.closedThrough, expiredBeforeMinute: this.expiredBeforeMinute };
    return encodeShardHead(this.config, progress, this.windows.openMinutes(), this.dedup, this.hot, this.risk?.head());
  }

  /** Applies a hot-split control message (split, unsplit, a child's report, an end marker) at `seq`. */
  async applyControl(seq: number, msg: HotControl): Promise<ControlResult> {
    if (seq <= this.seq) return { skipped: true, changed: false };
    const out = await applyHotControl({ config: this.config, hot: this.hot, dedup: this.dedup, windows: this.windows, maxEventTs: this.maxTs }, seq, msg);
    const res: ControlResult = { skipped: false, changed: out.changed };
    if (out.reported) res.reported = out.reported;
    // A finished split's buffer is counted as this message's clicks (deduped against the children's ids).
    if (out.buffered) res.batch = await this.applyBatch(seq, out.buffered);
    if (seq > this.seq) this.seq = seq;
    // The cap may have risen: close what the watermark already allows.
    if (out.reclose && this.wm !== NO_TIME) this.closeUpTo(Math.floor(this.wm / MINUTE_MS) - 1);
    return res;
  }

  hotSeen(ad: string, gen: number, hashes: readonly number[]): HotSeenReply | null {
    return this.hot.seen(ad, gen, hashes, this.dedup);
  }

  hotStatus(): HotSplitStatus[] {
    return this.hot.status();
  }

  splits(): SplitView[] {
    return this.hot.views();
  }

  retired(): RetiredSplit[] {
    return this.hot.retired();
  }

  dropRetired(ad: string, gen: number): void {
    this.hot.dropRetired(ad, gen);
  }

  get childEnded(): boolean {
    return this.hot.childEnded;
  }

  /** The clicks a draining split of `ad` buffers until its children are final (diagnostics, tests). */
  hotBuffered(ad: string): Click[] {
    return this.hot.buffered(ad);
  }

  openWrites(): CountWrite[] {
    return this.windows.openWrites();
  }

  dedupBytes(): Uint8Array {
    return this.dedup.toBytes();
  }

  queryAd(q: AdQuery): AdQueryReply {
    return this.windows.queryAd(q, this.wm);
  }

  queryTop(q: TopQuery): TopQueryReply {
    return this.windows.queryTop(q);
  }

  riskOffenders(q: OffendersQuery): OffendersReply {
    const horizonFromMs = this.wm === NO_TIME ? 0 : this.wm - this.config.retentionMs;
    return { offenders: this.risk?.offenders(q.rule, q.fromMs, q.toMs, q.limit) ?? [], horizonFromMs };
  }

  /** Ranking updates to publish now (final lists on minute close, provisional deltas if due). */
  rankingUpdates(withProvisional: boolean): RankingUpdate[] {
    const now = this.ports.clock.now();
    this.rankings.expireSpecs(now);
    return this.windows.rankingUpdates(minuteOf(now) + 1, withProvisional, now);
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

  beginRankingWarmUp(): void {
    const [from, to] = this.retainedRange();
    const minutes: number[] = [];
    for (let m = Math.max(from, 0); m < to; m++) minutes.push(m);
    this.rankings.beginWarmUp(minutes);
  }

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
      lastSeq: this.seq,
      watermark: this.wm,
      closedThrough: this.closedThrough,
      maxEventTs: this.maxTs,
      openMinutes: this.windows.openCount,
      pendingClosedMinutes: this.windows.pendingClosedCount,
      trackedIds: this.dedup.size,
      dedupBytes: this.dedup.byteLength,
      retainedMinutes: this.rankings.retainedMinutes,
      riskClicks: this.risk?.size ?? 0,
      sealedThrough: this.windows.sealedThrough,
      sealedRefusals: this.windows.sealedRefusals,
    };
  }
}

function hasMoves(t: { taken: Record<string, number>; released: Record<string, number> }): boolean {
  return Object.keys(t.taken).length > 0 || Object.keys(t.released).length > 0;
}
