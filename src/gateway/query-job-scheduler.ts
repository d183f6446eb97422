import { randomBytes } from 'node:crypto';
import { AdaggError, ErrorCode } from '../errors.ts';
import { isoOf } from '../model/time.ts';
import type { Ranked } from '../model/top-n.ts';
import type { Clock } from '../runtime/clock.ts';
import type { Logger } from '../runtime/logger.ts';
import type { RawScanProgress } from '../runtime/raw-scan.ts';
import type { QueryJobKind, QueryJobSpec } from './query-job-request.ts';

export type QueryJobStatus = 'queued' | 'running' | 'done' | 'failed';

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

export type QueryJobResult = AdCountJobResult | PopularJobResult;

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
  result: QueryJobResult | null;
  error: { code: string; error: string } | null;
  created_at: string;
  started_at: string | null;
  finished_at: string | null;
  links: { self: string };
}

/** What a running job tells its executor, and how the executor reports back. */
export interface QueryJobRun {
  readonly spec: QueryJobSpec;
  /** When the job started (a minute is final in the result once it had ended by then). */
  readonly startedAt: number;
  /** Aborted when the scheduler closes: the scan rejects with the signal's reason. */
  readonly signal: AbortSignal;
  /** The scan's progress so far (replaces the previous report). */
  progress(p: RawScanProgress): void;
  /** `n` more clicks matched the range and filter. */
  matched(n: number): void;
}

/** Computes a job's result (src/gateway/query-job-executor.ts). */
export type QueryJobExecute = (run: QueryJobRun) => Promise<QueryJobResult>;

export interface QueryJobSchedulerLimits {
  /** Jobs executing at the same time; later ones wait `queued`. */
  maxRunningJobs: number;
  /** How long a finished job (done or failed) stays readable. */
  finishedJobTtlMs: number;
  /** Most jobs kept; the oldest finished ones are dropped first, and when none has finished new jobs get 429. */
  maxJobs: number;
}

type JobError = { code: string; error: string };

interface Job {
  readonly id: string;
  readonly spec: QueryJobSpec;
  status: QueryJobStatus;
  scan: RawScanProgress;
  matched: number;
  result: QueryJobResult | null;
  error: JobError | null;
  readonly createdAt: number;
  startedAt: number | null;
  finishedAt: number | null;
  readonly abort: AbortController;
}

function fraction(j: Job): number {
  if (j.status === 'done') return 1;
  const { scannedMessages: s, totalMessages: t } = j.scan;
  if (t <= 0) return 0;
  return Math.round(Math.min(1, s / t) * 10_000) / 10_000;
}

function view(j: Job): QueryJobView {
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

/**
 * The job registry and runner: a FIFO queue with at most `maxRunningJobs` executions at a time,
 * finished jobs readable for `finishedJobTtlMs` (dropped lazily when the registry is next used)
 * and at most `maxJobs` jobs kept. What a job computes is the executor's business.
 */
export class QueryJobScheduler {
  private readonly jobs = new Map<string, Job>();
  private readonly queue: Job[] = [];
  private readonly runs = new Set<Promise<void>>();
  private running = 0;
  private closed = false;

  constructor(
    private readonly limits: QueryJobSchedulerLimits,
    private readonly execute: QueryJobExecute,
    private readonly clock: Clock,
    private readonly log?: Logger | undefined,
  ) {}

  /** Registers a job (status `queued`); it starts when a slot is free. */
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
    const v = view(job);
    queueMicrotask(() => this.pump());
    return v;
  }

  /** The job's current state, or undefined when unknown or already dropped. */
  get(id: string): QueryJobView | undefined {
    this.prune(this.clock.now());
    const job = this.jobs.get(id);
    return job ? view(job) : undefined;
  }

  /** Counts per status, e.g. for metrics. */
  stats(): Record<QueryJobStatus, number> {
    const out: Record<QueryJobStatus, number> = { queued: 0, running: 0, done: 0, failed: 0 };
    for (const j of this.jobs.values()) out[j.status]++;
    return out;
  }

  /** Fails queued jobs, aborts running ones and waits for them. Later submits are refused. */
  async close(): Promise<void> {
    this.closed = true;
    const now = this.clock.now();
    for (const job of this.queue.splice(0)) this.finish(job, now, { code: ErrorCode.ScanFailed, error: 'the gateway shut down before the job started' });
    for (const job of this.jobs.values()) {
      if (job.status === 'running') job.abort.abort(new AdaggError(ErrorCode.ScanFailed, 'the gateway shut down during the scan'));
    }
    await Promise.allSettled([...this.runs]);
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

  private finish(job: Job, now: number, error: JobError | null): void {
    job.status = error ? 'failed' : 'done';
    job.error = error;
    job.finishedAt = now;
  }

  private async run(job: Job): Promise<void> {
    job.status = 'running';
    const startedAt = this.clock.now();
    job.startedAt = startedAt;
    try {
      job.result = await this.execute({
        spec: job.spec,
        startedAt,
        signal: job.abort.signal,
        progress: (p) => void (job.scan = { scannedMessages: p.scannedMessages, totalMessages: p.totalMessages, scannedClicks: p.scannedClicks }),
        matched: (n) => void (job.matched += n),
      });
      // The count taken at start is an upper bound: once done, what was read is the total.
      job.scan.totalMessages = job.scan.scannedMessages;
      this.finish(job, this.clock.now(), null);
    } catch (err) {
      const signal = job.abort.signal;
      const e = signal.aborted && signal.reason instanceof AdaggError ? signal.reason : err;
      const error = e instanceof AdaggError
        ? { code: e.code, error: e.message }
        : { code: ErrorCode.ScanFailed, error: `scan of the raw stream failed: ${e instanceof Error ? e.message : String(e)}` };
      if (!(e instanceof AdaggError)) this.log?.error({ err: e, job: job.id }, 'query job failed');
      this.finish(job, this.clock.now(), error);
    }
  }
}
