import { jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { AdaggError, ErrorCode } from '../errors.ts';
import type { Click } from '../model/click.ts';
import type { ShardActorConfig } from '../model/shard-config.ts';
import { adKey } from '../model/hot-messages.ts';
import { shardOf } from '../model/partition.ts';
import { isoOf, MINUTE_MS, minuteStartMs } from '../model/time.ts';
import { topN } from '../model/top-n.ts';
import type { Clock } from '../runtime/clock.ts';
import type { RawBatch, RawScanRequest, RawScanResult, scanRawClicks } from '../runtime/raw-scan.ts';
import type { ShardBehaviour, ShardBehaviourFactory } from '../runtime/shard-behaviour.ts';
import type { Topology } from '../runtime/topology.ts';
import { clickMatcher, jobAdId, type QueryJobSpec } from './query-job-request.ts';
import type { QueryJobRun } from './query-job-scheduler.ts';
import type { AdCountJobResult, JobMinuteCount, PopularJobResult, QueryJobResult } from './query-job-view.ts';

/**
 * Executes a query job by a bounded scan of the raw clicks stream.
 *
 * A click of event minute m is stored at most the correction horizon after m and at most
 * `maxFutureMs` before it, so the clicks of [from, to) are all among the messages stored in
 * [from − maxFutureMs, to + correctionHorizonMs]. Matching clicks go through a private ShardActor per
 * shard (click_id dedupe and minute windows are the production code), configured so that no minute
 * closes during the scan; the result is built from its queryAd / queryTop like a synchronous query.
 */

export interface QueryJobExecutorOptions {
  shards: number;
  /** Clicks are stored at most this long after their event time. */
  correctionHorizonMs: number;
  /** Clicks are stored at most this long before their event time. */
  maxFutureMs: number;
  /** Most stream messages one job may read (more → ADAGG_E_SCAN_LIMIT). */
  maxScanMessages: number;
  /** Most clicks one job may read (more → ADAGG_E_SCAN_LIMIT). */
  maxScanClicks: number;
  /** Most stream message bytes one job may read (more → ADAGG_E_SCAN_LIMIT). */
  maxScanBytes: number;
  /** Most clicks one job may count, before dedupe (each costs dedupe state; more → ADAGG_E_SCAN_LIMIT). */
  maxMatchedClicks: number;
  /** Most distinct (ad, minute) counts one job may hold (more → ADAGG_E_SCAN_LIMIT). */
  maxResultRows: number;
  /** Extra stream time read before and after the window (clock skew, publish retries). */
  scanSlackMs: number;
}

export interface QueryJobExecutorDeps {
  /** Creates the scan's private shard actors (the production aggregation code). */
  actors: Pick<ShardBehaviourFactory, 'create'>;
  clock: Clock;
  scan: typeof scanRawClicks;
}

/** Far beyond any range: the scan's actors never close a minute or expire a dedupe id. */
const NEVER_MS = 100 * 365 * 24 * 3600_000;

/** One job's private shard actors and what it counts: clicks of [from, to) that match its filter. */
class JobCounts {
  readonly fromMs: number;
  readonly toMs: number;
  private readonly actors = new Map<number, ShardBehaviour>();
  private readonly matches: (c: Click) => boolean;
  private matched = 0;
  /** Distinct (ad, minute) rows held; only tracked for popular_ads (one ad's rows are bounded by the range). */
  private readonly rows: Set<string> | undefined;

  constructor(
    private readonly spec: QueryJobSpec,
    private readonly run: QueryJobRun,
    private readonly deps: QueryJobExecutorDeps,
    private readonly limits: Pick<QueryJobExecutorOptions, 'maxMatchedClicks' | 'maxResultRows'>,
  ) {
    this.rows = spec.kind === 'popular_ads' ? new Set() : undefined;
    this.fromMs = minuteStartMs(spec.fromMinute);
    this.toMs = minuteStartMs(spec.toMinute);
    this.matches = clickMatcher(spec.kind === 'aggregated_count' ? { ...spec.filter, ad_id: spec.adId } : spec.filter);
  }

  /**
   * Counts a batch's matching clicks in the shard's actor, at stream sequence `seq` (default: the
   * one after the actor's last, for batches read after its own subject).
   */
  async apply(shard: number, clicks: readonly Click[], seq?: number): Promise<void> {
    const kept = clicks.filter((c) => c.ts >= this.fromMs && c.ts < this.toMs && this.matches(c));
    this.run.matched(kept.length);
    if (kept.length === 0) return;
    this.checkBounds(kept);
    const a = this.actor(shard);
    await a.applyBatch(seq ?? a.lastSeq + 1, kept);
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

/** Runs query jobs (the scheduler's {@link QueryJobRun}s) against the raw clicks stream. */
export class QueryJobExecutor {
  constructor(
    private readonly nc: NatsConnection,
    private readonly topo: Topology,
    private readonly opts: QueryJobExecutorOptions,
    private readonly deps: QueryJobExecutorDeps,
  ) {}

  /** Scans, counts and builds the result; throws ADAGG_E_SCAN_LIMIT when the window holds too many messages. */
  async execute(run: QueryJobRun): Promise<QueryJobResult> {
    const spec = run.spec;
    const counts = new JobCounts(spec, run, this.deps, this.opts);
    const adId = jobAdId(spec);
    const window: Pick<RawScanRequest, 'startMs' | 'endMs' | 'maxMessages' | 'maxClicks' | 'maxBytes' | 'signal'> = {
      startMs: counts.fromMs - this.opts.maxFutureMs - this.opts.scanSlackMs,
      endMs: counts.toMs + this.opts.correctionHorizonMs + this.opts.scanSlackMs,
      maxMessages: this.opts.maxScanMessages,
      maxClicks: this.opts.maxScanClicks,
      maxBytes: this.opts.maxScanBytes,
      signal: run.signal,
    };
    const res = await this.deps.scan(
      this.nc,
      this.topo,
      // Every ad: one scan of the whole stream, hot ads' child subjects included (in stream order,
      // so a forwarded copy of a click meets its original in the same actor's dedupe).
      adId === undefined
        ? { ...window, subject: this.topo.streamSubjects, onProgress: (p) => run.progress(p) }
        : { ...window, shard: shardOf(adId, this.opts.shards), onProgress: (p) => run.progress(p) },
      // Per shard, like production: the same click_id on ads of two shards is two clicks there too.
      (b) => counts.apply(this.shardOfBatch(b), b.clicks, b.seq),
    );
    // A named ad that was split: its clicks that went straight to child subjects, after the shard's
    // (copies of forwarded clicks are dropped by click_id; sequences continue the actor's own).
    run.progress(res);
    if (res.stopped === 'limit') throw this.limitError(res);
    if (adId !== undefined && (await this.hotMessages(adId))) {
      const shard = shardOf(adId, this.opts.shards);
      // The hot subjects get what the main scan left of the click and byte budgets.
      const left = {
        ...window,
        maxClicks: Math.max(0, this.opts.maxScanClicks - res.scannedClicks),
        maxBytes: Math.max(0, this.opts.maxScanBytes - (res.scannedBytes ?? 0)),
      };
      const hot = await this.deps.scan(this.nc, this.topo, { ...left, shard, subject: this.topo.hotSubjectsOf(adKey(adId)) }, (b) => counts.apply(shard, b.clicks));
      if (hot.stopped === 'limit') throw this.limitError(hot);
    }
    counts.checkOpen();
    return spec.kind === 'aggregated_count' ? this.adCountResult(spec, counts, run.startedAt) : this.popularResult(spec.count, counts);
  }

  private limitError(res: RawScanResult): AdaggError {
    const o = this.opts;
    const by = res.limitedBy ?? 'messages';
    const what =
      by === 'clicks'
        ? `more than ${o.maxScanClicks} clicks (ADAGG_JOB_MAX_SCAN_CLICKS)`
        : by === 'bytes'
          ? `more than ${o.maxScanBytes} bytes (ADAGG_JOB_MAX_SCAN_BYTES)`
          : `more than ${o.maxScanMessages} stream messages (${res.totalMessages} counted at start; ADAGG_JOB_MAX_SCAN_MESSAGES)`;
    return new AdaggError(ErrorCode.ScanLimit, `the scan window holds ${what}; narrow the range or name an ad`, {
      details: { limit: by, totalMessages: res.totalMessages, scannedClicks: res.scannedClicks },
    });
  }

  /** A hot child subject (shard -1) holds one ad's clicks: that ad's shard. */
  private shardOfBatch(b: RawBatch): number {
    if (b.shard >= 0) return b.shard;
    return b.clicks.length > 0 ? shardOf(b.clicks[0]!.ad_id, this.opts.shards) : 0;
  }

  private adCountResult(spec: Extract<QueryJobSpec, { kind: 'aggregated_count' }>, counts: JobCounts, startedAt: number): AdCountJobResult {
    const adId = spec.adId;
    const held = counts.adMinutes(shardOf(adId, this.opts.shards), adId);
    const minutes: JobMinuteCount[] = [];
    let count = 0;
    for (let m = spec.fromMinute; m < spec.toMinute; m++) {
      const n = held.get(m) ?? 0;
      count += n;
      // A minute is final once it had ended when the scan started (the actors' `final` means closed).
      minutes.push({ minute: isoOf(minuteStartMs(m)), count: n, final: minuteStartMs(m + 1) <= startedAt });
    }
    return { ad_id: adId, from: isoOf(counts.fromMs), to: isoOf(counts.toMs), count, minutes };
  }

  private popularResult(n: number, counts: JobCounts): PopularJobResult {
    return { from: isoOf(counts.fromMs), to: isoOf(counts.toMs), ads: topN(counts.totals(), n) };
  }

  /** Whether any message is stored on the ad's hot child subjects (it was split within retention). */
  private async hotMessages(adId: string): Promise<boolean> {
    try {
      const jsm = await jetstreamManager(this.nc);
      const info = await jsm.streams.info(this.topo.clicksStream, { subjects_filter: this.topo.hotSubjectsOf(adKey(adId)) });
      return Object.keys(info.state.subjects ?? {}).length > 0;
    } catch {
      return false;
    }
  }
}
