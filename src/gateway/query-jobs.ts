import { randomBytes } from 'node:crypto';
import type { NatsConnection } from '@nats-io/transport-node';
import type { ShardActor, ShardActorConfig } from '../actors/shard-actor.ts';
import { AdaggError, ErrorCode } from '../errors.ts';
import { dimensionValue, type Click } from '../model/click.ts';
import { adKey } from '../model/hot-messages.ts';
import { shardOf } from '../model/partition.ts';
import { isoOf, MINUTE_MS, minuteOf, minuteStartMs, parseTime } from '../model/time.ts';
import { topN, type Ranked } from '../model/top-n.ts';
import { systemClock, type Clock } from '../runtime/clock.ts';
import type { Logger } from '../runtime/logger.ts';
import { scanRawClicks, type RawScanProgress } from '../runtime/raw-scan.ts';
import type { ShardActorFactory } from '../runtime/shard-host.ts';
import type { Topology } from '../runtime/topology.ts';
import { jetstreamManager } from '@nats-io/jetstream';

/**
 * Query jobs: answers for filters the shard actors do not pre-aggregate (`user_id`, `ip`, combinations
 * that are not configured cubes), computed by a bounded scan of the raw clicks stream.
 *
 * A click of event minute m is stored at most the correction horizon after m and at most
 * `maxFutureMs` before it, so the clicks of [from, to) are all among the messages stored in
 * [from − maxFutureMs, to + correctionHorizonMs]. Matching clicks go through a private ShardActor per
 * shard (click_id dedupe and minute windows are the production code), configured so that no minute
 * closes during the scan; the result is built from its queryAd / queryTop like a synchronous query.
 */

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
  /** Longest job range in minutes (larger → 400 ADAGG_E_RANGE_TOO_LARGE). @default 1440 (24 h) */
  maxRangeMinutes?: number | undefined;
  /** Most stream messages one job may read (more → job failed with ADAGG_E_SCAN_LIMIT). @default 2000000 */
  maxScanMessages?: number | undefined;
  /** Jobs scanning at the same time; later ones wait `queued`. @default 2 */
  maxRunningJobs?: number | undefined;
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
  actors: Pick<ShardActorFactory, 'create'>;
  clock?: Clock | undefined;
  log?: Logger | undefined;
  /** The raw scan (injectable for unit tests). @default scanRawClicks */
  scan?: typeof scanRawClicks | undefined;
}

export type QueryJobKind = 'aggregated_count' | 'popular_ads';
export type QueryJobStatus = 'queued' | 'running' | 'done' | 'failed';

/** A validated job request. `filter` values are compared exactly (`country` upper-cased). */
export type QueryJobSpec =
  | { kind: 'aggregated_count'; adId: string; fromMinute: number; toMinute: number; filter: Record<string, string> }
  | { kind: 'popular_ads'; count: number; fromMinute: number; toMinute: number; filter: Record<string, string> };

export interface JobMinuteCount {
  minute: string;
  count: number;
  final: boolean;
}

/** Same shape as GET /v1/ads/{ad_id}/aggregated_count (without the watermark). */
export interface AdCountJobResult {
  ad_id: string;
  from: string;
  to: string;
  count: number;
  minutes: JobMinuteCount[];
}

/** Same shape as GET /v1/ads/popular_ads. */
export interface PopularJobResult {
  from: string;
  to: string;
  ads: Ranked[];
}

export interface QueryJobProgress {
  scanned_messages: number;
  total_messages: number;
  scanned_clicks: number;
  /** Clicks in [from, to) matching the filter, before click_id dedupe. */
  matched_clicks: number;
  /** 0..1; 1 once done. */
  fraction: number;
}

export interface QueryJobView {
  id: string;
  kind: QueryJobKind;
  status: QueryJobStatus;
  progress: QueryJobProgress;
  result: AdCountJobResult | PopularJobResult | null;
  error: { code: string; error: string } | null;
  created_at: string;
  started_at: string | null;
  finished_at: string | null;
  links: { self: string };
}

interface Job {
  id: string;
  spec: QueryJobSpec;
  status: QueryJobStatus;
  scan: RawScanProgress;
  matched: number;
  result: AdCountJobResult | PopularJobResult | null;
  error: { code: string; error: string } | null;
  createdAt: number;
  startedAt: number | null;
  finishedAt: number | null;
  abort: AbortController;
}

const AD_ID = /^[A-Za-z0-9_.:-]{1,128}$/;
const ATTR = /^[A-Za-z0-9_]{1,32}$/;
const MAX_FILTERS = 16;
const MAX_VALUE_LENGTH = 256;
const TOP_LEVEL: Record<QueryJobKind, readonly string[]> = {
  aggregated_count: ['kind', 'ad_id', 'from', 'to', 'filter'],
  popular_ads: ['kind', 'count', 'from', 'to', 'filter'],
};
/** Far beyond any range: the scan's actors never close a minute or expire a dedupe id. */
const NEVER_MS = 100 * 365 * 24 * 3600_000;

function badField(field: string, msg: string): AdaggError {
  return new AdaggError(ErrorCode.BadParam, `field ${field}: ${msg}`, { details: { param: field } });
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return false;
  const proto = Object.getPrototypeOf(v) as unknown;
  return proto === Object.prototype || proto === null;
}

function timeField(body: Record<string, unknown>, name: string): number {
  const v = body[name];
  if (v === undefined || v === null || v === '') throw badField(name, 'is required (ISO-8601 or epoch milliseconds)');
  const ms = typeof v === 'number' || typeof v === 'string' ? parseTime(v) : undefined;
  if (ms === undefined || ms < 0) throw badField(name, `${JSON.stringify(v)} is not an ISO-8601 time or epoch milliseconds`);
  return minuteOf(ms);
}

export interface QueryJobLimits {
  maxRangeMinutes: number;
  maxTopN: number;
}

/**
 * Validates a POST /v1/queries body. Throws ADAGG_E_BAD_PARAM naming the field, or
 * ADAGG_E_RANGE_TOO_LARGE. Times are floored to minutes like the REST API.
 */
export function parseQueryJobRequest(body: unknown, limits: QueryJobLimits): QueryJobSpec {
  if (!isPlainObject(body)) throw new AdaggError(ErrorCode.BadParam, 'body must be a JSON object', { details: { param: 'body' } });
  const kind = body.kind;
  if (kind !== 'aggregated_count' && kind !== 'popular_ads') {
    throw badField('kind', 'must be "aggregated_count" or "popular_ads"');
  }
  for (const k of Object.keys(body)) {
    if (TOP_LEVEL[kind].includes(k)) continue;
    const hint = k === 'ad_id' ? ' (restrict popular_ads to an ad with filter.ad_id)' : '';
    throw badField(k, `is not a field of a ${kind} query${hint}`);
  }
  const fromMinute = timeField(body, 'from');
  const toMinute = timeField(body, 'to');
  if (toMinute <= fromMinute) throw badField('to', 'must be at least one minute after from');
  if (toMinute - fromMinute > limits.maxRangeMinutes) {
    throw new AdaggError(
      ErrorCode.RangeTooLarge,
      `range of ${toMinute - fromMinute} minutes exceeds ${limits.maxRangeMinutes} (maxRangeMinutes of query jobs)`,
    );
  }
  const filter = parseFilter(body.filter, kind);
  if (kind === 'aggregated_count') {
    const adId = body.ad_id;
    if (typeof adId !== 'string' || !AD_ID.test(adId)) throw badField('ad_id', 'is required and must match [A-Za-z0-9_.:-]{1,128}');
    return { kind, adId, fromMinute, toMinute, filter };
  }
  let count = 10;
  if (body.count !== undefined) {
    const c = body.count;
    if (typeof c !== 'number' || !Number.isInteger(c) || c < 1 || c > limits.maxTopN) {
      throw badField('count', `must be a whole number between 1 and ${limits.maxTopN}`);
    }
    count = c;
  }
  return { kind, count, fromMinute, toMinute, filter };
}

function parseFilter(raw: unknown, kind: QueryJobKind): Record<string, string> {
  if (raw === undefined || raw === null) return {};
  if (!isPlainObject(raw)) throw badField('filter', 'must be an object of attribute → value');
  const keys = Object.keys(raw);
  if (keys.length > MAX_FILTERS) throw badField('filter', `has more than ${MAX_FILTERS} attributes`);
  const out: Record<string, string> = {};
  for (const k of keys) {
    if (!ATTR.test(k) || k === 'click_id' || k === 'ts') {
      throw badField(`filter.${k}`, 'is not a filterable attribute (user_id, ip, country, ad_id or an extra attribute [A-Za-z0-9_]{1,32})');
    }
    if (k === 'ad_id' && kind === 'aggregated_count') throw badField('filter.ad_id', 'give the ad as the top-level ad_id');
    const v = raw[k];
    if (typeof v !== 'string' || v.length < 1 || v.length > MAX_VALUE_LENGTH) {
      throw badField(`filter.${k}`, `must be a string of 1-${MAX_VALUE_LENGTH} characters`);
    }
    out[k] = k === 'country' ? v.toUpperCase() : v;
  }
  return out;
}

/** A predicate for "matches every filter": `ad_id` against the click's ad, anything else by dimensionValue. */
export function clickMatcher(filter: Readonly<Record<string, string>>): (c: Click) => boolean {
  const entries = Object.entries(filter);
  return (c) => {
    for (const [k, v] of entries) {
      if ((k === 'ad_id' ? c.ad_id : dimensionValue(c, k)) !== v) return false;
    }
    return true;
  };
}

/** The ad a job is restricted to (its shard is the only one scanned), if any. */
export function jobAdId(spec: QueryJobSpec): string | undefined {
  return spec.kind === 'aggregated_count' ? spec.adId : spec.filter.ad_id;
}

function fraction(j: Job): number {
  if (j.status === 'done') return 1;
  const { scannedMessages: s, totalMessages: t } = j.scan;
  if (t <= 0) return 0;
  return Math.round(Math.min(1, s / t) * 10_000) / 10_000;
}

/**
 * The job registry and runner: a FIFO queue with at most `maxRunningJobs` scans at a time, finished
 * jobs readable for `finishedJobTtlMs` (dropped lazily when the registry is next used) and at most
 * `maxJobs` jobs kept.
 *
 * @example
 * const jobs = new QueryJobs(nc, topology(o.prefix), o, { actors: actorRegistry.shardActors });
 * const { id } = jobs.submit(jobs.parse({ kind: 'popular_ads', count: 5, from: t0, to: t1, filter: { user_id: 'u1' } }));
 * jobs.get(id); // { status: 'running', progress: {...}, ... }
 */
export class QueryJobs {
  private readonly jobs = new Map<string, Job>();
  private readonly queue: Job[] = [];
  private readonly runs = new Set<Promise<void>>();
  private running = 0;
  private closed = false;
  private readonly clock: Clock;
  private readonly scan: typeof scanRawClicks;
  readonly limits: Required<Pick<QueryJobsOptions, 'maxRangeMinutes' | 'maxScanMessages' | 'maxRunningJobs' | 'finishedJobTtlMs' | 'maxJobs' | 'scanSlackMs'>>;

  constructor(
    private readonly nc: NatsConnection,
    private readonly topo: Topology,
    private readonly opts: QueryJobsOptions,
    private readonly deps: QueryJobsDeps,
  ) {
    this.clock = deps.clock ?? systemClock;
    this.scan = deps.scan ?? scanRawClicks;
    this.limits = {
      maxRangeMinutes: opts.maxRangeMinutes ?? 1440,
      maxScanMessages: opts.maxScanMessages ?? 2_000_000,
      maxRunningJobs: opts.maxRunningJobs ?? 2,
      finishedJobTtlMs: opts.finishedJobTtlMs ?? 3600_000,
      maxJobs: opts.maxJobs ?? 1000,
      scanSlackMs: opts.scanSlackMs ?? 60_000,
    };
    for (const [k, v] of Object.entries(this.limits)) {
      if (!Number.isSafeInteger(v) || v < (k === 'scanSlackMs' ? 0 : 1)) {
        throw new AdaggError(ErrorCode.BadOption, `option ${k}: must be a whole number >= ${k === 'scanSlackMs' ? 0 : 1}`, { details: { option: k } });
      }
    }
  }

  /** Validates a request body against this registry's limits (and the raw stream's retention). */
  parse(body: unknown): QueryJobSpec {
    const spec = parseQueryJobRequest(body, { maxRangeMinutes: this.limits.maxRangeMinutes, maxTopN: this.opts.maxTopN });
    const retention = this.opts.rawRetentionMs;
    if (retention !== undefined) {
      const firstStored = minuteStartMs(spec.fromMinute) - this.opts.maxFutureMs;
      if (firstStored < this.clock.now() - retention) {
        throw badField('from', `is too old: raw clicks are kept for ${retention} ms (ADAGG_RAW_RETENTION_MS), so the scan would miss some`);
      }
    }
    return spec;
  }

  /** Registers a job (status `queued`); it starts when a scan slot is free. */
  submit(spec: QueryJobSpec): QueryJobView {
    if (this.closed) throw new AdaggError(ErrorCode.ScanFailed, 'query jobs are shutting down');
    const now = this.clock.now();
    this.prune(now);
    this.makeRoom();
    const job: Job = {
      id: `q_${randomBytes(12).toString('base64url')}`,
      spec,
      status: 'queued',
      scan: { scannedMessages: 0, totalMessages: 0, scannedClicks: 0 },
      matched: 0,
      result: null,
      error: null,
      createdAt: now,
      startedAt: null,
      finishedAt: null,
      abort: new AbortController(),
    };
    this.jobs.set(job.id, job);
    this.queue.push(job);
    const view = this.view(job);
    queueMicrotask(() => this.pump());
    return view;
  }

  /** The job's current state, or undefined when unknown or already dropped. */
  get(id: string): QueryJobView | undefined {
    this.prune(this.clock.now());
    const job = this.jobs.get(id);
    return job ? this.view(job) : undefined;
  }

  /** Counts per status, e.g. for metrics. */
  stats(): Record<QueryJobStatus, number> {
    const out: Record<QueryJobStatus, number> = { queued: 0, running: 0, done: 0, failed: 0 };
    for (const j of this.jobs.values()) out[j.status]++;
    return out;
  }

  /** Fails queued jobs, aborts running scans and waits for them. Later submits are refused. */
  async close(): Promise<void> {
    this.closed = true;
    const now = this.clock.now();
    for (const job of this.queue.splice(0)) this.finish(job, now, { code: ErrorCode.ScanFailed, error: 'the gateway shut down before the job started' });
    for (const job of this.jobs.values()) {
      if (job.status === 'running') job.abort.abort(new AdaggError(ErrorCode.ScanFailed, 'the gateway shut down during the scan'));
    }
    await Promise.allSettled([...this.runs]);
  }

  private view(j: Job): QueryJobView {
    return {
      id: j.id,
      kind: j.spec.kind,
      status: j.status,
      progress: {
        scanned_messages: j.scan.scannedMessages,
        total_messages: j.scan.totalMessages,
        scanned_clicks: j.scan.scannedClicks,
        matched_clicks: j.matched,
        fraction: fraction(j),
      },
      result: j.result,
      error: j.error,
      created_at: isoOf(j.createdAt),
      started_at: j.startedAt === null ? null : isoOf(j.startedAt),
      finished_at: j.finishedAt === null ? null : isoOf(j.finishedAt),
      links: { self: `/v1/queries/${j.id}` },
    };
  }

  private prune(now: number): void {
    for (const [id, j] of this.jobs) {
      if (j.finishedAt !== null && now - j.finishedAt >= this.limits.finishedJobTtlMs) this.jobs.delete(id);
    }
  }

  /** Drops the oldest finished jobs until a new one fits; 429 when every kept job is unfinished. */
  private makeRoom(): void {
    if (this.jobs.size < this.limits.maxJobs) return;
    const finished = [...this.jobs.values()]
      .filter((j) => j.finishedAt !== null)
      .sort((a, b) => a.finishedAt! - b.finishedAt! || a.createdAt - b.createdAt);
    for (const j of finished) {
      if (this.jobs.size < this.limits.maxJobs) break;
      this.jobs.delete(j.id);
    }
    if (this.jobs.size >= this.limits.maxJobs) {
      throw new AdaggError(
        ErrorCode.TooManyJobs,
        `${this.jobs.size} query jobs are queued or running (at most ${this.limits.maxJobs} are kept); retry when some have finished`,
      );
    }
  }

  private pump(): void {
    while (!this.closed && this.running < this.limits.maxRunningJobs && this.queue.length > 0) {
      const job = this.queue.shift()!;
      this.running++;
      const run = this.run(job).finally(() => {
        this.running--;
        this.runs.delete(run);
        this.pump();
      });
      this.runs.add(run);
    }
  }

  private finish(job: Job, now: number, error: { code: string; error: string } | null): void {
    job.status = error ? 'failed' : 'done';
    job.error = error;
    job.finishedAt = now;
  }

  private async run(job: Job): Promise<void> {
    job.status = 'running';
    job.startedAt = this.clock.now();
    try {
      job.result = await this.execute(job);
      // The count taken at start is an upper bound: once done, what was read is the total.
      job.scan.totalMessages = job.scan.scannedMessages;
      this.finish(job, this.clock.now(), null);
    } catch (err) {
      const e = job.abort.signal.aborted && job.abort.signal.reason instanceof AdaggError ? job.abort.signal.reason : err;
      const error = e instanceof AdaggError
        ? { code: e.code, error: e.message }
        : { code: ErrorCode.ScanFailed, error: `scan of the raw stream failed: ${e instanceof Error ? e.message : String(e)}` };
      if (!(e instanceof AdaggError)) this.deps.log?.error({ err: e, job: job.id }, 'query job failed');
      this.finish(job, this.clock.now(), error);
    }
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

  private async execute(job: Job): Promise<AdCountJobResult | PopularJobResult> {
    const spec = job.spec;
    const fromMs = minuteStartMs(spec.fromMinute);
    const toMs = minuteStartMs(spec.toMinute);
    const adId = jobAdId(spec);
    const matches = clickMatcher(spec.kind === 'aggregated_count' ? { ...spec.filter, ad_id: spec.adId } : spec.filter);
    const actors = new Map<number, ShardActor>();
    const clock = this.clock;
    const actorFor = (shard: number): ShardActor => {
      let a = actors.get(shard);
      if (a) return a;
      const config: ShardActorConfig = {
        shard,
        dimensions: [],
        // Watermark = max event time − lateness stays below `from`: no minute of the range closes.
        allowedLatenessMs: toMs - fromMs + MINUTE_MS,
        idleTimeoutMs: NEVER_MS,
        retentionMs: NEVER_MS,
      };
      a = this.deps.actors.create(config, {
        clock,
        readClosed: () => Promise.reject(new AdaggError(ErrorCode.Internal, 'query job: a minute closed during the scan')),
      });
      actors.set(shard, a);
      return a;
    };
    const res = await this.scan(
      this.nc,
      this.topo,
      {
        shard: adId === undefined ? undefined : shardOf(adId, this.opts.shards),
        // Every ad: one scan of the whole stream, hot ads' child subjects included (in stream order,
        // so a forwarded copy of a click meets its original in the same actor's dedupe).
        ...(adId === undefined ? { subject: this.topo.streamSubjects } : {}),
        startMs: fromMs - this.opts.maxFutureMs - this.limits.scanSlackMs,
        endMs: toMs + this.opts.correctionHorizonMs + this.limits.scanSlackMs,
        maxMessages: this.limits.maxScanMessages,
        signal: job.abort.signal,
        onProgress: (p) => void (job.scan = { ...p }),
      },
      async (b) => {
        const kept: Click[] = [];
        for (const c of b.clicks) if (c.ts >= fromMs && c.ts < toMs && matches(c)) kept.push(c);
        job.matched += kept.length;
        // Per shard, like production: the same click_id on ads of two shards is two clicks there too.
        // A hot child subject (shard -1) holds one ad's clicks: that ad's shard.
        const shard = b.shard >= 0 ? b.shard : b.clicks.length > 0 ? shardOf(b.clicks[0]!.ad_id, this.opts.shards) : 0;
        if (kept.length > 0) await actorFor(shard).applyBatch(b.seq, kept);
      },
    );
    // A named ad that was split: its clicks that went straight to child subjects, after the shard's
    // (copies of forwarded clicks are dropped by click_id; sequences continue the actor's own).
    if (adId !== undefined && res.stopped !== 'limit' && (await this.hotMessages(adId))) {
      const shard = shardOf(adId, this.opts.shards);
      await this.scan(
        this.nc,
        this.topo,
        {
          shard,
          subject: this.topo.hotSubjectsOf(adKey(adId)),
          startMs: fromMs - this.opts.maxFutureMs - this.limits.scanSlackMs,
          endMs: toMs + this.opts.correctionHorizonMs + this.limits.scanSlackMs,
          maxMessages: this.limits.maxScanMessages,
          signal: job.abort.signal,
        },
        async (b) => {
          const kept: Click[] = [];
          for (const c of b.clicks) if (c.ts >= fromMs && c.ts < toMs && matches(c)) kept.push(c);
          job.matched += kept.length;
          const a = actorFor(shard);
          if (kept.length > 0) await a.applyBatch(a.lastSeq + 1, kept);
        },
      );
    }
    job.scan = { scannedMessages: res.scannedMessages, totalMessages: res.totalMessages, scannedClicks: res.scannedClicks };
    if (res.stopped === 'limit') {
      throw new AdaggError(
        ErrorCode.ScanLimit,
        `the scan window holds more than ${this.limits.maxScanMessages} stream messages (${res.totalMessages} counted at start; maxScanMessages); narrow the range or name an ad`,
        { details: { totalMessages: res.totalMessages, maxScanMessages: this.limits.maxScanMessages } },
      );
    }
    for (const a of actors.values()) {
      if (a.closedThrough >= spec.fromMinute) throw new AdaggError(ErrorCode.Internal, 'query job: a minute of the range closed during the scan');
    }
    const from = isoOf(fromMs);
    const to = isoOf(toMs);
    if (spec.kind === 'aggregated_count') {
      const reply = actors.get(shardOf(spec.adId, this.opts.shards))?.queryAd({ adId: spec.adId, fromMinute: spec.fromMinute, toMinute: spec.toMinute });
      const held = new Map(reply?.minutes ?? []);
      // A minute is final once it had ended when the scan started (the actors' `final` means closed).
      const startedAt = job.startedAt ?? clock.now();
      const minutes: JobMinuteCount[] = [];
      let count = 0;
      for (let m = spec.fromMinute; m < spec.toMinute; m++) {
        const n = held.get(m) ?? 0;
        count += n;
        minutes.push({ minute: isoOf(minuteStartMs(m)), count: n, final: minuteStartMs(m + 1) <= startedAt });
      }
      return { ad_id: spec.adId, from, to, count, minutes };
    }
    const totals = new Map<string, number>();
    for (const a of actors.values()) {
      const r = a.queryTop({ fromMinute: spec.fromMinute, toMinute: spec.toMinute });
      for (let i = 0; i + 1 < r.counts.length; i += 2) {
        const ad = r.counts[i] as string;
        totals.set(ad, (totals.get(ad) ?? 0) + (r.counts[i + 1] as number));
      }
    }
    return { from, to, ads: topN(totals, spec.count) };
  }
}
