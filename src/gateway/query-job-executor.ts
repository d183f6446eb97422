import { jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { AdaggError, ErrorCode } from '../errors.ts';
import { adKey } from '../model/hot-messages.ts';
import { shardOf } from '../model/partition.ts';
import { isoOf, minuteStartMs } from '../model/time.ts';
import { topN } from '../model/top-n.ts';
import type { ArchiveQuerySource } from '../runtime/archive/archive-query-source.ts';
import type { Clock } from '../runtime/clock.ts';
import type { RawBatch, RawScanRequest, RawScanResult, scanRawClicks } from '../runtime/raw-scan.ts';
import type { ShardBehaviourFactory } from '../runtime/shard-behaviour.ts';
import type { Topology } from '../runtime/topology.ts';
import { readArchiveSide, tailStartMs, type JobArchiveSide } from './query-job-archive.ts';
import { JobCounts } from './query-job-counts.ts';
import { jobAdId, type QueryJobSpec } from './query-job-request.ts';
import type { QueryJobRun } from './query-job-scheduler.ts';
import type { AdCountJobResult, JobMinuteCount, PopularJobResult, QueryJobResult } from './query-job-view.ts';

/**
 * Executes a query job by a bounded scan of the raw clicks stream, and, when the raw archive is
 * on, by DuckDB SQL over the archive for everything the archivers already wrote
 * (query-job-archive.ts): then only the stream tail after each archiver unit's cut is scanned.
 *
 * A click of event minute m is stored at most the correction horizon after m and at most
 * `maxFutureMs` before it, so the clicks of [from, to) are all among the messages stored in
 * [from − maxFutureMs, to + correctionHorizonMs]. Matching clicks go through a private ShardActor per
 * shard (query-job-counts.ts: click_id dedupe and minute windows are the production code),
 * configured so that no minute closes during the scan; the result is built from its queryAd /
 * queryTop like a synchronous query, plus the archive's counts.
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
  /** The raw archive (ADAGG_ARCHIVE on): archived messages are counted from it, only the tail is scanned. */
  archive?: ArchiveQuerySource | undefined;
}

/** Ranges longer than this list only the minutes with clicks in an aggregated_count result (see adCountResult). */
export const DENSE_MINUTES = 1440;

type ScanWindow = Pick<RawScanRequest, 'startMs' | 'endMs' | 'maxMessages' | 'maxClicks' | 'maxBytes' | 'signal'>;

/** Runs query jobs (the scheduler's {@link QueryJobRun}s) against the raw clicks stream and the archive. */
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
    const adId = jobAdId(spec);
    const shard = adId === undefined ? undefined : shardOf(adId, this.opts.shards);
    const archive = this.deps.archive
      ? await readArchiveSide(this.deps.archive, spec, {
          shards: shard === undefined ? Array.from({ length: this.opts.shards }, (_, s) => s) : [shard],
          adId,
          maxResultRows: this.opts.maxResultRows,
          signal: run.signal,
        })
      : undefined;
    if (archive) run.archived({ files: archive.query.rawFiles.length, clicks: archive.rows.reduce((n, r) => n + r.clicks, 0) });
    const counts = new JobCounts(spec, run, this.deps, this.opts, { hold: archive !== undefined });
    const window: ScanWindow = {
      startMs: counts.fromMs - this.opts.maxFutureMs - this.opts.scanSlackMs,
      endMs: counts.toMs + this.opts.correctionHorizonMs + this.opts.scanSlackMs,
      maxMessages: this.opts.maxScanMessages,
      maxClicks: this.opts.maxScanClicks,
      maxBytes: this.opts.maxScanBytes,
      signal: run.signal,
    };
    /** A message at or below its unit's cut is counted from the archive. */
    const archived = (b: RawBatch, unit: number | 'hot'): boolean => {
      if (!archive) return false;
      return b.seq <= (unit === 'hot' ? archive.cuts.hot : (archive.cuts.shards.get(unit) ?? 0));
    };
    const res = await this.deps.scan(
      this.nc,
      this.topo,
      // Every ad: one scan of the whole stream, hot ads' child subjects included (in stream order,
      // so a forwarded copy of a click meets its original in the same actor's dedupe).
      shard === undefined
        ? { ...(await this.tailWindow(window, archive, 'all')), subject: this.topo.streamSubjects, onProgress: (p) => run.progress(p) }
        : { ...(await this.tailWindow(window, archive, shard)), shard, onProgress: (p) => run.progress(p) },
      // Per shard, like production: the same click_id on ads of two shards is two clicks there too.
      (b) => {
        const s = this.shardOfBatch(b);
        if (archived(b, shard !== undefined || b.shard >= 0 ? s : 'hot')) return;
        return counts.apply(s, b.clicks, b.seq);
      },
    );
    // A named ad that was split: its clicks that went straight to child subjects, after the shard's
    // (copies of forwarded clicks are dropped by click_id; sequences continue the actor's own).
    run.progress(res);
    if (res.stopped === 'limit') throw this.limitError(res);
    if (adId !== undefined && shard !== undefined && (await this.hotMessages(adId))) {
      // The hot subjects get what the main scan left of the click and byte budgets.
      const left = {
        ...(await this.tailWindow(window, archive, 'hot')),
        maxClicks: Math.max(0, this.opts.maxScanClicks - res.scannedClicks),
        maxBytes: Math.max(0, this.opts.maxScanBytes - (res.scannedBytes ?? 0)),
      };
      const hot = await this.deps.scan(this.nc, this.topo, { ...left, shard, subject: this.topo.hotSubjectsOf(adKey(adId)) }, (b) =>
        archived(b, 'hot') ? undefined : counts.apply(shard, b.clicks),
      );
      if (hot.stopped === 'limit') throw this.limitError(hot);
    }
    if (archive) await counts.release(await this.deps.archive!.archivedPairs(archive.query, counts.heldPairs(), run.signal));
    counts.checkOpen();
    return spec.kind === 'aggregated_count' ? this.adCountResult(spec, counts, run.startedAt, archive) : this.popularResult(spec.count, counts, archive);
  }

  /**
   * The scan window, starting no earlier than needed to read the messages after the cuts of the
   * units read (one shard's subject, the hot subjects, or all): from the earliest store time of a
   * unit's first message past its cut, less the slack. The whole window without the archive.
   */
  private async tailWindow(window: ScanWindow, archive: JobArchiveSide | undefined, units: number | 'hot' | 'all'): Promise<ScanWindow> {
    if (!archive) return window;
    const now = this.deps.clock.now();
    const cuts: Array<[string, number]> =
      units === 'hot'
        ? [[this.topo.hotSubjects, archive.cuts.hot]]
        : units === 'all'
          ? [...[...archive.cuts.shards].map(([s, cut]): [string, number] => [this.topo.clickSubject(s), cut]), [this.topo.hotSubjects, archive.cuts.hot]]
          : [[this.topo.clickSubject(units), archive.cuts.shards.get(units) ?? 0]];
    let start = Infinity;
    for (const [subject, cut] of cuts) {
      const t = await tailStartMs(this.nc, this.topo.clicksStream, subject, cut, now);
      if (t === undefined) return window;
      start = Math.min(start, t);
    }
    return { ...window, startMs: Math.max(window.startMs, start - this.opts.scanSlackMs) };
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

  /**
   * The ad's minutes: every minute of the range (as the REST query), or, for a range longer than
   * {@link DENSE_MINUTES} (only possible over the archive), only the minutes with clicks.
   */
  private adCountResult(spec: Extract<QueryJobSpec, { kind: 'aggregated_count' }>, counts: JobCounts, startedAt: number, archive: JobArchiveSide | undefined): AdCountJobResult {
    const adId = spec.adId;
    const held = counts.adMinutes(shardOf(adId, this.opts.shards), adId);
    for (const r of archive?.rows ?? []) {
      if (r.adId === adId && r.minute !== undefined) held.set(r.minute, (held.get(r.minute) ?? 0) + r.clicks);
    }
    const minutes: JobMinuteCount[] = [];
    let count = 0;
    // A minute is final once it had ended when the scan started (the actors' `final` means closed).
    const entry = (m: number, n: number): JobMinuteCount => ({ minute: isoOf(minuteStartMs(m)), count: n, final: minuteStartMs(m + 1) <= startedAt });
    if (spec.toMinute - spec.fromMinute <= DENSE_MINUTES) {
      for (let m = spec.fromMinute; m < spec.toMinute; m++) {
        const n = held.get(m) ?? 0;
        count += n;
        minutes.push(entry(m, n));
      }
    } else {
      for (const [m, n] of [...held].sort((a, b) => a[0] - b[0])) {
        if (n <= 0 || m < spec.fromMinute || m >= spec.toMinute) continue;
        count += n;
        minutes.push(entry(m, n));
      }
    }
    return { ad_id: adId, from: isoOf(counts.fromMs), to: isoOf(counts.toMs), count, minutes };
  }

  private popularResult(n: number, counts: JobCounts, archive: JobArchiveSide | undefined): PopularJobResult {
    const totals = counts.totals();
    for (const r of archive?.rows ?? []) totals.set(r.adId, (totals.get(r.adId) ?? 0) + r.clicks);
    return { from: isoOf(counts.fromMs), to: isoOf(counts.toMs), ads: topN(totals, n) };
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
