import { decode, encode } from '@msgpack/msgpack';
import { AdaggError, ErrorCode } from '../errors.ts';
import type { Click } from '../model/click.ts';
import { dimensionValue } from '../model/click.ts';
import { MINUTE_MS, minuteOf } from '../model/time.ts';
import type { Clock } from '../runtime/clock.ts';
import type { CountRead, CountWrite, ShardCommit } from '../runtime/shard-store.ts';
import { ClickDedup, fnv1a32, murmur3_32 } from './shard/click-dedup.ts';
import { flatten, MinuteCounts } from './shard/minute-counts.ts';
import { ShardRankings, type RankingState, type RankingUpdate, type RankSpec } from './shard/rankings.ts';

/**
 * The shard actor's state machine: event-time one-minute tumbling windows per ad_id and per
 * ad_id × dimension value, a watermark with allowed lateness and idle advance, click_id dedupe
 * inside the correction horizon, and corrections of closed minutes.
 *
 * It is pure state plus two injected ports (clock, closed-count reader). The runtime's shard host
 * feeds it stream messages in order, one at a time, and persists `prepareCommit()` atomically.
 */

export interface ShardActorConfig {
  shard: number;
  dimensions: readonly string[];
  allowedLatenessMs: number;
  idleTimeoutMs: number;
  /** Event-time span behind the watermark for which dedupe ids and corrections are kept. */
  retentionMs: number;
  /** Depth of the streaming top-K per ranking spec. @default 100 */
  topnDepth?: number;
  /** Closed minutes kept in memory for live rankings (longest live window). @default 60 */
  maxLiveWindow?: number;
}

export interface ShardActorPorts {
  clock: Clock;
  /** Loads stored final values of closed-minute fields, for corrections by late clicks. */
  readClosed(reads: readonly CountRead[]): Promise<number[]>;
}

export interface BatchResult {
  skipped: boolean;
  counted: number;
  duplicates: number;
  late: number;
  /** Clicks older than the retention behind the watermark: never counted, sent to dead letters. */
  tooOld: Click[];
}

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
  shard: number;
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
const SNAPSHOT_VERSION = 1;

export class ShardActor {
  lastSeq = 0;
  maxEventTs = NO_TIME;
  watermark = NO_TIME;
  /** Every minute <= closedThrough is closed (final). */
  closedThrough = NO_TIME;
  private open = new Map<number, MinuteCounts>();
  private pendingClosed = new Map<number, MinuteCounts>();
  private corrections = new Map<number, MinuteCounts>();
  private dedup = new ClickDedup();
  readonly rankings: ShardRankings;
  private lastBatchWallMs: number;
  private expiredBeforeMinute = NO_TIME;

  constructor(
    readonly config: ShardActorConfig,
    private readonly ports: ShardActorPorts,
  ) {
    this.lastBatchWallMs = ports.clock.now();
    this.rankings = new ShardRankings(config.topnDepth ?? 100, config.maxLiveWindow ?? 60);
  }

  /** Applies one stream message. Messages at or below the last applied sequence are skipped. */
  async applyBatch(seq: number, clicks: readonly Click[]): Promise<BatchResult> {
    const res: BatchResult = { skipped: false, counted: 0, duplicates: 0, late: 0, tooOld: [] };
    if (seq <= this.lastSeq) return { ...res, skipped: true };
    this.lastBatchWallMs = this.ports.clock.now();
    const oldest = this.watermark === NO_TIME ? -Infinity : this.watermark - this.config.retentionMs;
    // Classify without changing state, so a failure while loading corrections leaves the actor
    // exactly as it was (its batch can be applied again); state changes only after the await.
    const fresh: Click[] = [];
    const kept: Click[] = [];
    const his: number[] = [];
    const los: number[] = [];
    const inBatch = new Set<string>();
    for (const c of clicks) {
      if (c.ts < oldest) {
        res.tooOld.push(c);
        continue;
      }
      const h = fnv1a32(c.click_id);
      const l = murmur3_32(c.click_id);
      kept.push(c);
      his.push(h);
      los.push(l);
      if (this.dedup.hasHashed(h, l) || inBatch.has(c.click_id)) {
        res.duplicates++;
        continue;
      }
      inBatch.add(c.click_id);
      fresh.push(c);
    }
    await this.loadCorrections(fresh);
    for (let i = 0; i < kept.length; i++) this.dedup.addHashed(his[i]!, los[i]!, minuteOf(kept[i]!.ts));
    let maxTs = this.maxEventTs;
    for (const c of fresh) {
      const m = minuteOf(c.ts);
      this.windowFor(m).add(c, this.config.dimensions);
      if (m <= this.closedThrough) {
        res.late++;
        // Pending minutes are shared with the rankings; otherwise correct the rankings' own copy.
        if (this.pendingClosed.has(m)) this.rankings.markDirty(m);
        else this.rankings.addLate(m, this.closedThrough, (mc) => mc.add(c, this.config.dimensions));
      }
      if (c.ts > maxTs) maxTs = c.ts;
    }
    res.counted = fresh.length;
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
    const closeThrough = Math.floor(w / MINUTE_MS) - 1;
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
    this.expiredBeforeMinute = minMinute;
  }

  /** The window a click of minute `m` counts into: open, closed-unflushed, or a correction. */
  private windowFor(m: number): MinuteCounts {
    if (m > this.closedThrough) {
      let w = this.open.get(m);
      if (!w) this.open.set(m, (w = new MinuteCounts()));
      return w;
    }
    const pending = this.pendingClosed.get(m);
    if (pending) return pending;
    // Loaded by loadCorrections before any late click reaches here.
    return this.corrections.get(m)!;
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
    if (reads.length === 0) return;
    const values = await this.ports.readClosed(reads);
    reads.forEach((r, i) => {
      let mc = this.corrections.get(r.minute);
      if (!mc) this.corrections.set(r.minute, (mc = new MinuteCounts()));
      mc.set(r.adId, values[i] ?? 0, r.dim ?? undefined, r.value ?? undefined);
    });
  }

  /** What must be persisted now, or null when nothing changed since the last commit. */
  prepareCommit(committedSeq: number, force = false): ShardCommit | null {
    const writes: CountWrite[] = [];
    for (const [m, mc] of this.pendingClosed) writes.push(...toWrites(m, mc));
    for (const [m, mc] of this.corrections) writes.push(...toWrites(m, mc));
    if (!force && writes.length === 0 && this.lastSeq === committedSeq) return null;
    return {
      seq: this.lastSeq,
      watermark: this.watermark,
      closedThrough: this.closedThrough,
      snapshot: this.toSnapshot(),
      writes,
    };
  }

  /** After a successful commit, closed and corrected minutes live in the store only. */
  committed(c: ShardCommit): void {
    for (const w of c.writes) {
      this.pendingClosed.delete(w.minute);
      this.corrections.delete(w.minute);
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

  restoreRetained(stored: readonly CountWrite[]): void {
    for (const [m, mc] of MinuteCounts.fromWrites(stored)) if (m <= this.closedThrough) this.rankings.retain(m, mc);
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

  /**
   * Snapshot of the state a restart needs besides the store's final counts: sequence, event-time
   * progress, open windows and the dedupe ids. Closed minutes are not in it: they are committed
   * with it, in the same atomic step.
   */
  toSnapshot(): Uint8Array {
    const open: unknown[] = [];
    for (const [m, mc] of this.open) open.push([m, ...mc.encode()]);
    return encode([
      SNAPSHOT_VERSION,
      this.config.shard,
      this.lastSeq,
      this.maxEventTs,
      this.watermark,
      this.closedThrough,
      open,
      this.dedup.toBytes(),
    ]);
  }

  static fromSnapshot(bytes: Uint8Array, config: ShardActorConfig, ports: ShardActorPorts): ShardActor {
    let doc: unknown;
    try {
      doc = decode(bytes);
    } catch (err) {
      throw new AdaggError(ErrorCode.SnapshotCorrupt, `shard ${config.shard}: snapshot is not MessagePack`, { cause: err });
    }
    if (!Array.isArray(doc) || doc[0] !== SNAPSHOT_VERSION || doc.length !== 8) {
      throw new AdaggError(ErrorCode.SnapshotCorrupt, `shard ${config.shard}: unknown snapshot layout`);
    }
    if (doc[1] !== config.shard) {
      throw new AdaggError(ErrorCode.SnapshotCorrupt, `snapshot of shard ${String(doc[1])} loaded into shard ${config.shard}`);
    }
    const [, , lastSeq, maxEventTs, watermark, closedThrough, open, dedup] = doc as unknown[];
    const nums = [lastSeq, maxEventTs, watermark, closedThrough];
    if (!nums.every((n) => typeof n === 'number' && Number.isFinite(n)) || !Array.isArray(open) || !(dedup instanceof Uint8Array)) {
      throw new AdaggError(ErrorCode.SnapshotCorrupt, `shard ${config.shard}: snapshot fields have the wrong types`);
    }
    const a = new ShardActor(config, ports);
    a.lastSeq = lastSeq as number;
    a.maxEventTs = maxEventTs as number;
    a.watermark = watermark as number;
    a.closedThrough = closedThrough as number;
    try {
      for (const [m, totals, dims] of open as Array<[number, unknown, unknown]>) a.open.set(m, MinuteCounts.decode([totals, dims]));
    } catch (err) {
      throw new AdaggError(ErrorCode.SnapshotCorrupt, `shard ${config.shard}: snapshot windows are malformed`, { cause: err });
    }
    a.dedup = ClickDedup.fromBytes(dedup);
    return a;
  }
}

function toWrites(minute: number, mc: MinuteCounts): CountWrite[] {
  const out: CountWrite[] = [];
  if (mc.totals.size > 0) out.push({ minute, dim: null, value: null, counts: flatten(mc.totals) });
  for (const [dim, byValue] of mc.dims) {
    for (const [value, byAd] of byValue) out.push({ minute, dim, value, counts: flatten(byAd) });
  }
  return out;
}
