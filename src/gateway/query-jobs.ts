import path from 'node:path';
import type { NatsConnection } from '@nats-io/transport-node';
import type { Redis } from 'ioredis';
import { AdaggError, ErrorCode } from '../errors.ts';
import { minuteStartMs } from '../model/time.ts';
import { ArchiveQuerySource } from '../runtime/archive/archive-query-source.ts';
import { systemClock, type Clock } from '../runtime/clock.ts';
import type { Logger } from '../runtime/logger.ts';
import { scanRawClicks } from '../runtime/raw-scan.ts';
import type { RedisKeys } from '../runtime/redis-keys.ts';
import type { ShardBehaviourFactory } from '../runtime/shard-behaviour.ts';
import type { Topology } from '../runtime/topology.ts';
import { QueryJobExecutor } from './query-job-executor.ts';
import { parseQueryJobRequest, queryJobBodySchema, type QueryJobSpec } from './query-job-request.ts';
import { QueryJobScheduler, type JobReader, type JobSubmitter } from './query-job-scheduler.ts';
import type { QueryJobStatus, QueryJobSummary, QueryJobView } from './query-job-view.ts';

/**
 * Query jobs: answers for filters the shard actors do not pre-aggregate (`user_id`, `ip`, combinations
 * that are not configured cubes), computed by DuckDB SQL over the raw archive (when it is on) and a
 * bounded scan of the raw clicks stream (only its tail after the archive's cut). This facade
 * wires the three parts the routes use: the request (query-job-request.ts), the scheduler
 * (query-job-scheduler.ts) and the executor (query-job-executor.ts).
 */

export { clickMatcher, jobAdId, parseQueryJobRequest } from './query-job-request.ts';
export type { QueryJobKind, QueryJobLimits, QueryJobSpec } from './query-job-request.ts';
export type {
  AdCountJobResult,
  JobMinuteCount,
  PopularJobResult,
  QueryJobProgress,
  QueryJobResult,
  QueryJobStatus,
  QueryJobSummary,
  QueryJobView,
} from './query-job-view.ts';
export type { JobReader, JobSubmitter } from './query-job-scheduler.ts';

export interface QueryJobsOptions {
  shards: number;
  /** Clicks are stored at most this long after their event time (ingest refuses older ones). */
  correctionHorizonMs: number;
  /** Clicks are stored at most this long before their event time. */
  maxFutureMs: number;
  /** Largest `count` of a popular_ads job. */
  maxTopN: number;
  /** Raw clicks kept in JetStream; ranges whose messages may already be gone are refused. Unset: not checked. */
  rawRetentionMs?: number | undefined;
  /** Longest job range in minutes without the archive (larger → 400 ADAGG_E_RANGE_TOO_LARGE). @default 1440 (24 h) */
  maxRangeMinutes?: number | undefined;
  /** ADAGG_ARCHIVE: with `on` (and `redis` given), jobs count archived messages from the raw archive. @default 'off' */
  archive?: string | undefined;
  /** ADAGG_ARCHIVE_DIR: the archive folder (relative: from the working directory). @default './data/archive' */
  archiveDir?: string | undefined;
  /** Longest job range in days with the archive on (larger → 400 ADAGG_E_RANGE_TOO_LARGE). @default 400 */
  maxJobArchiveRangeDays?: number | undefined;
  /** Most stream messages one job may read (more → job failed with ADAGG_E_SCAN_LIMIT). @default 2000000 */
  maxScanMessages?: number | undefined;
  /** Most clicks one job may read (more → job failed with ADAGG_E_SCAN_LIMIT). @default 50000000 */
  maxScanClicks?: number | undefined;
  /** Most stream message bytes one job may read (more → job failed with ADAGG_E_SCAN_LIMIT). @default 2147483648 */
  maxScanBytes?: number | undefined;
  /** Most clicks one job may count before dedupe (~100 bytes each while it runs). @default 1000000 */
  maxMatchedClicks?: number | undefined;
  /** Most distinct (ad, minute) counts one popular_ads job may hold. @default 200000 */
  maxResultRows?: number | undefined;
  /** Jobs scanning at the same time, taken round-robin across tokens; later ones wait `queued`. @default 2 */
  maxRunningJobs?: number | undefined;
  /** Queued + running jobs per token (more → 429 ADAGG_E_JOB_QUOTA). @default 10 */
  jobQuotaPerToken?: number | undefined;
  /** How long a finished job (done or failed) stays readable. @default 3600000 (1 h) */
  finishedJobTtlMs?: number | undefined;
  /** Most jobs kept; the oldest finished ones are dropped first, and when none has finished new jobs get 429. @default 1000 */
  maxJobs?: number | undefined;
  /**
   * Extra stream time read before and after the window, for skew between the gateway's clock (which
   * validated the click) and the NATS server's (which stored it) and for publish retries. Only widens
   * the scan; clicks are still selected by their event time. @default 60000
   */
  scanSlackMs?: number | undefined;
}

export interface QueryJobsDeps {
  /**
   * Creates the scan's private shard actors: the production aggregation code, injected like
   * everywhere else (`actorRegistry.shardActors` from src/actors/index.ts).
   */
  actors: Pick<ShardBehaviourFactory, 'create'>;
  clock?: Clock | undefined;
  log?: Logger | undefined;
  /** The raw scan (injectable for unit tests). @default scanRawClicks */
  scan?: typeof scanRawClicks | undefined;
  /** Redis with the archivers' progress (their cuts): needed, with `keys`, for jobs over the archive. */
  redis?: Redis | undefined;
  keys?: RedisKeys | undefined;
}

type Limits = Required<
  Pick<
    QueryJobsOptions,
    | 'maxRangeMinutes'
    | 'maxJobArchiveRangeDays'
    | 'maxScanMessages'
    | 'maxScanClicks'
    | 'maxScanBytes'
    | 'maxMatchedClicks'
    | 'maxResultRows'
    | 'maxRunningJobs'
    | 'jobQuotaPerToken'
    | 'finishedJobTtlMs'
    | 'maxJobs'
    | 'scanSlackMs'
  >
>;

function compileLimits(opts: QueryJobsOptions): Limits {
  const limits: Limits = {
    maxRangeMinutes: opts.maxRangeMinutes ?? 1440,
    maxJobArchiveRangeDays: opts.maxJobArchiveRangeDays ?? 400,
    maxScanMessages: opts.maxScanMessages ?? 2_000_000,
    maxScanClicks: opts.maxScanClicks ?? 50_000_000,
    maxScanBytes: opts.maxScanBytes ?? 2 * 1024 * 1024 * 1024,
    maxMatchedClicks: opts.maxMatchedClicks ?? 1_000_000,
    maxResultRows: opts.maxResultRows ?? 200_000,
    maxRunningJobs: opts.maxRunningJobs ?? 2,
    jobQuotaPerToken: opts.jobQuotaPerToken ?? 10,
    finishedJobTtlMs: opts.finishedJobTtlMs ?? 3600_000,
    maxJobs: opts.maxJobs ?? 1000,
    scanSlackMs: opts.scanSlackMs ?? 60_000,
  };
  for (const [k, v] of Object.entries(limits)) {
    const min = k === 'scanSlackMs' ? 0 : 1;
    if (!Number.isSafeInteger(v) || v < min) {
      throw new AdaggError(ErrorCode.BadOption, `option ${k}: must be a whole number >= ${min}`, { details: { option: k } });
    }
  }
  return limits;
}

/**
 * The query jobs the routes use: validates requests, queues them (at most `maxRunningJobs`
 * scanning at once, `maxJobs` kept, finished ones readable for `finishedJobTtlMs`) and runs them.
 *
 * @example
 * const jobs = new QueryJobs(nc, topology(o.prefix), o, { actors: actorRegistry.shardActors });
 * const { id } = jobs.submit(jobs.parse({ kind: 'popular_ads', count: 5, from: t0, to: t1, filter: { user_id: 'u1' } }));
 * jobs.get(id); // { status: 'running', progress: {...}, ... }
 */
export class QueryJobs {
  readonly limits: Limits;
  /** Whether jobs read the raw archive (ADAGG_ARCHIVE on and Redis given). */
  readonly overArchive: boolean;
  private readonly clock: Clock;
  private readonly scheduler: QueryJobScheduler;

  constructor(nc: NatsConnection, topo: Topology, private readonly opts: QueryJobsOptions, deps: QueryJobsDeps) {
    this.clock = deps.clock ?? systemClock;
    this.limits = compileLimits(opts);
    const archive =
      opts.archive === 'on' && deps.redis && deps.keys
        ? new ArchiveQuerySource(deps.redis, deps.keys, {
            root: path.resolve(opts.archiveDir ?? './data/archive'),
            clickSubject: (s) => topo.clickSubject(s),
            hotPrefix: topo.hotSubjects.slice(0, -1),
            // Copies of a click are stored within the horizon of it: files of the hours that close to the range take part in the dedupe.
            marginMs: opts.correctionHorizonMs,
          })
        : undefined;
    this.overArchive = archive !== undefined;
    const executor = new QueryJobExecutor(
      nc,
      topo,
      { ...opts, ...this.limits },
      { actors: deps.actors, clock: this.clock, scan: deps.scan ?? scanRawClicks, archive },
    );
    this.scheduler = new QueryJobScheduler(this.limits, (run) => executor.execute(run), this.clock, deps.log);
  }

  /** JSON Schema of a request body under this registry's limits (for the route and /openapi.json). */
  bodySchema(): Record<string, unknown> {
    return queryJobBodySchema({ maxRangeMinutes: this.maxRangeMinutes, maxTopN: this.opts.maxTopN });
  }

  /** The longest job range: 24 h (maxRangeMinutes) over the stream alone, 400 days (maxJobArchiveRangeDays) over the archive. */
  get maxRangeMinutes(): number {
    return this.overArchive ? this.limits.maxJobArchiveRangeDays * 1440 : this.limits.maxRangeMinutes;
  }

  /**
   * Validates a request body against this registry's limits (and, without the archive, the raw
   * stream's retention: over the archive, messages the stream no longer holds are in the files).
   */
  parse(body: unknown): QueryJobSpec {
    const spec = parseQueryJobRequest(body, { maxRangeMinutes: this.maxRangeMinutes, maxTopN: this.opts.maxTopN });
    const retention = this.opts.rawRetentionMs;
    if (retention !== undefined && !this.overArchive) {
      const firstStored = minuteStartMs(spec.fromMinute) - this.opts.maxFutureMs;
      if (firstStored < this.clock.now() - retention) {
        throw new AdaggError(
          ErrorCode.BadParam,
          `field from: is too old: raw clicks are kept for ${retention} ms (ADAGG_RAW_RETENTION_MS), so the scan would miss some`,
          { details: { param: 'from' } },
        );
      }
    }
    return spec;
  }

  /**
   * Registers a job (status `queued`) for `who` (default: anonymous); it starts when a scan slot is
   * free and its client's turn comes. 429 ADAGG_E_JOB_QUOTA when the client has
   * `jobQuotaPerToken` jobs queued or running, 429 ADAGG_E_TOO_MANY_JOBS when `maxJobs` are unfinished.
   */
  submit(spec: QueryJobSpec, who?: JobSubmitter): QueryJobView {
    return this.scheduler.submit(spec, who);
  }

  /** The job's current state, or undefined when unknown, already dropped, or not the reader's (when a reader is given). */
  get(id: string, reader?: JobReader): QueryJobView | undefined {
    return this.scheduler.get(id, reader);
  }

  /** The reader's jobs (an admin's: every job), oldest first, without results. */
  list(reader: JobReader): QueryJobSummary[] {
    return this.scheduler.list(reader);
  }

  /** Cancels the reader's queued or running job (status `cancelled`), or forgets a finished one; undefined when not found. */
  cancel(id: string, reader: JobReader): QueryJobView | undefined {
    return this.scheduler.cancel(id, reader);
  }

  /** Counts per status, e.g. for metrics. */
  stats(): Record<QueryJobStatus, number> {
    return this.scheduler.stats();
  }

  /** Fails queued jobs, aborts running scans and waits for them. Later submits are refused. */
  close(): Promise<void> {
    return this.scheduler.close();
  }
}
