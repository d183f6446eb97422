import { AdaggError, ErrorCode } from '../errors.ts';
import type { Click } from '../model/click.ts';
import type { ShardActorConfig } from '../model/shard-config.ts';
import { MINUTE_MS, minuteStartMs } from '../model/time.ts';
import type { Clock } from '../runtime/clock.ts';
import type { ShardBehaviour, ShardBehaviourFactory } from '../runtime/shard-behaviour.ts';
import { clickMatcher, type QueryJobSpec } from './query-job-request.ts';
import type { QueryJobRun } from './query-job-scheduler.ts';

/**
 * What one query job counts from the raw stream: the clicks of [from, to) that match its filter,
 * through a private ShardActor per shard (click_id dedupe and minute windows are the production
 * code), configured so that no minute closes and no id expires during the job.
 *
 * When the job also reads the archive (query-job-archive.ts), the stream's matching clicks are
 * held (`hold`) until the archive has said which of them it already holds: those are later copies
 * of clicks the archive side counted (or decided not to count), and are dropped before the actors
 * see the rest, in stream order.
 */

/** Far beyond any range: the scan's actors never close a minute or expire a dedupe id. */
const NEVER_MS = 100 * 365 * 24 * 3600_000;

export interface JobCountsLimits {
  /** Most clicks one job may count, before dedupe (more → ADAGG_E_SCAN_LIMIT). */
  maxMatchedClicks: number;
  /** Most distinct (ad, minute) counts one job may hold (more → ADAGG_E_SCAN_LIMIT). */
  maxResultRows: number;
}

export interface JobCountsDeps {
  /** Creates the scan's private shard actors (the production aggregation code). */
  actors: Pick<ShardBehaviourFactory, 'create'>;
  clock: Clock;
}

/** A batch of matching clicks held until the archive's answer: its shard and its actor sequence (undefined: next). */
interface HeldBatch {
  shard: number;
  seq: number | undefined;
  clicks: Click[];
}

/** The key of a click for the archive's pair lookup. */
export function pairKey(adId: string, clickId: string): string {
  return `${adId}\n${clickId}`;
}

/** A job's private shard actors and what it counts: clicks of [from, to) that match its filter. */
export class JobCounts {
  readonly fromMs: number;
  readonly toMs: number;
  private readonly actors = new Map<number, ShardBehaviour>();
  private readonly matches: (c: Click) => boolean;
  private matched = 0;
  /** Distinct (ad, minute) rows held; only tracked for popular_ads (one ad's rows are bounded by the range). */
  private readonly rows: Set<string> | undefined;
  /** Batches held for the archive's answer (see the module comment); undefined: counted at once. */
  private held: HeldBatch[] | undefined;

  constructor(
    private readonly spec: QueryJobSpec,
    private readonly run: QueryJobRun,
    private readonly deps: JobCountsDeps,
    private readonly limits: JobCountsLimits,
    opts: { hold?: boolean } = {},
  ) {
    this.rows = spec.kind === 'popular_ads' ? new Set() : undefined;
    this.fromMs = minuteStartMs(spec.fromMinute);
    this.toMs = minuteStartMs(spec.toMinute);
    this.matches = clickMatcher(spec.kind === 'aggregated_count' ? { ...spec.filter, ad_id: spec.adId } : spec.filter);
    this.held = opts.hold ? [] : undefined;
  }

  /**
   * Counts a batch's matching clicks in the shard's actor, at stream sequence `seq` (default: the
   * one after the actor's last, for batches read after its own subject); held instead while the
   * job waits for the archive's answer.
   */
  async apply(shard: number, clicks: readonly Click[], seq?: number): Promise<void> {
    const kept = clicks.filter((c) => c.ts >= this.fromMs && c.ts < this.toMs && this.matches(c));
    this.run.matched(kept.length);
    if (kept.length === 0) return;
    this.checkBounds(kept);
    if (this.held) {
      this.held.push({ shard, seq, clicks: kept });
      return;
    }
    const a = this.actor(shard);
    await a.applyBatch(seq ?? a.lastSeq + 1, kept);
  }

  /** The (ad_id, click_id) pairs of the held clicks, each once. */
  heldPairs(): Array<[string, string]> {
    const seen = new Set<string>();
    const out: Array<[string, string]> = [];
    for (const b of this.held ?? []) {
      for (const c of b.clicks) {
        const k = pairKey(c.ad_id, c.click_id);
        if (seen.has(k)) continue;
        seen.add(k);
        out.push([c.ad_id, c.click_id]);
      }
    }
    return out;
  }

  /**
   * Counts the held batches, in the order they were read, without the clicks whose pair is in
   * `drop` (keys of {@link pairKey}); from then on batches are counted at once.
   */
  async release(drop: ReadonlySet<string>): Promise<void> {
    const held = this.held ?? [];
    this.held = undefined;
    for (const b of held) {
      const kept = drop.size === 0 ? b.clicks : b.clicks.filter((c) => !drop.has(pairKey(c.ad_id, c.click_id)));
      if (kept.length === 0) continue;
      const a = this.actor(b.shard);
      await a.applyBatch(b.seq ?? a.lastSeq + 1, kept);
    }
  }

  /**
   * The job's memory grows with the clicks it counts (their dedupe ids) and the rows it holds:
   * both are bounded, and the job fails with ADAGG_E_SCAN_LIMIT before exceeding either.
   */
  private checkBounds(kept: readonly Click[]): void {
    this.matched += kept.length;
    if (this.matched > this.limits.maxMatchedClicks) {
      throw new AdaggError(
        ErrorCode.ScanLimit,
        `more than ${this.limits.maxMatchedClicks} clicks match the job (ADAGG_JOB_MAX_MATCHED_CLICKS); narrow the range or the filter`,
        { details: { limit: 'matched_clicks', maxMatchedClicks: this.limits.maxMatchedClicks } },
      );
    }
    if (!this.rows) return;
    for (const c of kept) this.rows.add(`${Math.floor(c.ts / MINUTE_MS)} ${c.ad_id}`);
    if (this.rows.size > this.limits.maxResultRows) {
      throw new AdaggError(
        ErrorCode.ScanLimit,
        `the job would hold more than ${this.limits.maxResultRows} (ad, minute) counts (ADAGG_JOB_MAX_RESULT_ROWS); narrow the range or the filter`,
        { details: { limit: 'result_rows', maxResultRows: this.limits.maxResultRows } },
      );
    }
  }

  /** Throws if a minute of the range closed (the scan's actors are configured so that none does). */
  checkOpen(): void {
    for (const a of this.actors.values()) {
      if (a.closedThrough >= this.spec.fromMinute) throw new AdaggError(ErrorCode.Internal, 'query job: a minute of the range closed during the scan');
    }
  }

  /** Per-minute counts of the ad in its shard's actor. */
  adMinutes(shard: number, adId: string): Map<number, number> {
    const reply = this.actors.get(shard)?.queryAd({ adId, fromMinute: this.spec.fromMinute, toMinute: this.spec.toMinute });
    return new Map(reply?.minutes ?? []);
  }

  /** Each ad's count over the range, summed across the shards' actors. */
  totals(): Map<string, number> {
    const totals = new Map<string, number>();
    for (const a of this.actors.values()) {
      const r = a.queryTop({ fromMinute: this.spec.fromMinute, toMinute: this.spec.toMinute });
      for (let i = 0; i + 1 < r.counts.length; i += 2) {
        const ad = r.counts[i] as string;
        totals.set(ad, (totals.get(ad) ?? 0) + (r.counts[i + 1] as number));
      }
    }
    return totals;
  }

  private actor(shard: number): ShardBehaviour {
    let a = this.actors.get(shard);
    if (a) return a;
    const config: ShardActorConfig = {
      shard,
      dimensions: [],
      // Watermark = max event time − lateness stays below `from`: no minute of the range closes.
      allowedLatenessMs: this.toMs - this.fromMs + MINUTE_MS,
      idleTimeoutMs: NEVER_MS,
      retentionMs: NEVER_MS,
    };
    a = this.deps.actors.create(config, {
      clock: this.deps.clock,
      readClosed: () => Promise.reject(new AdaggError(ErrorCode.Internal, 'query job: a minute closed during the scan')),
    });
    this.actors.set(shard, a);
    return a;
  }
}
