import { randomBytes } from 'node:crypto';
import { AdaggError, ErrorCode } from '../errors.ts';
import type { Clock } from '../runtime/clock.ts';
import type { Logger } from '../runtime/logger.ts';
import type { RawScanProgress } from '../runtime/raw-scan.ts';
import { FairQueue } from './fair-queue.ts';
import type { QueryJobSpec } from './query-job-request.ts';
import { summaryOf, viewOf, type JobError, type QueryJobRecord, type QueryJobResult, type QueryJobStatus, type QueryJobSummary, type QueryJobView } from './query-job-view.ts';

/** What a running job tells its executor, and how the executor reports back. */
export interface QueryJobRun {
  readonly spec: QueryJobSpec;
  /** When the job started (a minute is final in the result once it had ended by then). */
  readonly startedAt: number;
  /** Aborted when the job is cancelled or the scheduler closes: the scan rejects with the signal's reason. */
  readonly signal: AbortSignal;
  /** The scan's progress so far (replaces the previous report). */
  progress(p: RawScanProgress): void;
  /** `n` more clicks matched the range and filter. */
  matched(n: number): void;
  /** What the archive side read: its files, and the clicks it counted (after dedupe). */
  archived(p: { files: number; clicks: number }): void;
}

/** Computes a job's result (src/gateway/query-job-executor.ts). */
export type QueryJobExecute = (run: QueryJobRun) => Promise<QueryJobResult>;

export interface QueryJobSchedulerLimits {
  /** Jobs executing at the same time; later ones wait `queued`. */
  maxRunningJobs: number;
  /** How long a finished job (done, failed or cancelled) stays readable. */
  finishedJobTtlMs: number;
  /** Most jobs kept; the oldest finished ones are dropped first, and when none has finished new jobs get 429. */
  maxJobs: number;
  /** Queued + running jobs per client (more → 429 ADAGG_E_JOB_QUOTA). */
  jobQuotaPerToken: number;
}

/** Who submits a job: `owner` may read and cancel it; `client` is whose quota and queue turn it takes. */
export interface JobSubmitter {
  owner: string;
  client: string;
}

/** Who reads, lists or cancels jobs: an admin sees every job, anyone else only their own. */
export interface JobReader {
  name: string;
  admin: boolean;
}

/** Everyone, e.g. when authentication is off and no caller is named. */
const ANONYMOUS_SUBMITTER: JobSubmitter = { owner: 'anonymous', client: 'anonymous' };

/**
 * The job registry and runner: a queue per client served round-robin (one client's backlog never
 * holds back another's first job by more than a turn), at most `maxRunningJobs` executions at a
 * time, at most `jobQuotaPerToken` queued + running per client, finished jobs readable for
 * `finishedJobTtlMs` (dropped lazily when the registry is next used) and at most `maxJobs` kept.
 * What a job computes is the executor's business.
 */
export class QueryJobScheduler {
  private readonly jobs = new Map<string, QueryJobRecord>();
  private readonly queue = new FairQueue<QueryJobRecord>();
  /** Each running job's run, and whether it still holds a scan slot (a cancel frees it at once). */
  private readonly runs = new Map<QueryJobRecord, { done: Promise<void>; holdsSlot: boolean }>();
  /** Queued + running jobs per client. */
  private readonly active = new Map<string, number>();
  private running = 0;
  private closed = false;

  constructor(
    private readonly limits: QueryJobSchedulerLimits,
    private readonly execute: QueryJobExecute,
    private readonly clock: Clock,
    private readonly log?: Logger | undefined,
  ) {}

  /** Registers a job (status `queued`); it starts when a slot is free and its client's turn comes. */
  submit(spec: QueryJobSpec, who: JobSubmitter = ANONYMOUS_SUBMITTER): QueryJobView {
    if (this.closed) throw new AdaggError(ErrorCode.ScanFailed, 'query jobs are shutting down');
    const now = this.clock.now();
    this.prune(now);
    const mine = this.active.get(who.client) ?? 0;
    if (mine >= this.limits.jobQuotaPerToken) {
      throw new AdaggError(
        ErrorCode.JobQuota,
        `${mine} of your query jobs are queued or running (at most ${this.limits.jobQuotaPerToken} per token, ADAGG_JOB_QUOTA_PER_TOKEN); retry when one has finished, or cancel one`,
        { details: { quota: this.limits.jobQuotaPerToken } },
      );
    }
    this.makeRoom();
    const job: QueryJobRecord = {
      id: `q_${randomBytes(12).toString('base64url')}`,
      spec,
      owner: who.owner,
      client: who.client,
      status: 'queued',
      scan: { scannedMessages: 0, totalMessages: 0, scannedClicks: 0 },
      matched: 0,
      archive: undefined,
      result: null,
      error: null,
      createdAt: now,
      startedAt: null,
      finishedAt: null,
      abort: new AbortController(),
    };
    this.jobs.set(job.id, job);
    this.active.set(who.client, mine + 1);
    this.queue.push(who.client, job);
    const v = viewOf(job);
    queueMicrotask(() => this.pump());
    return v;
  }

  /** The job's current state, or undefined when unknown, dropped, or not the reader's (when a reader is given). */
  get(id: string, reader?: JobReader): QueryJobView | undefined {
    this.prune(this.clock.now());
    const job = this.jobs.get(id);
    return job && mayRead(job, reader) ? viewOf(job) : undefined;
  }

  /** The reader's jobs (every job for an admin), oldest first. */
  list(reader: JobReader): QueryJobSummary[] {
    this.prune(this.clock.now());
    return [...this.jobs.values()].filter((j) => mayRead(j, reader)).map(summaryOf);
  }

  /**
   * Cancels a queued or running job (status `cancelled`, error ADAGG_E_JOB_CANCELLED): a queued one
   * leaves the queue, a running one's scan is aborted and its slot freed at once. A finished job is
   * forgotten (its result deleted). Undefined when unknown or not the reader's.
   */
  cancel(id: string, reader: JobReader): QueryJobView | undefined {
    const now = this.clock.now();
    this.prune(now);
    const job = this.jobs.get(id);
    if (!job || !mayRead(job, reader)) return undefined;
    if (job.finishedAt !== null) {
      this.jobs.delete(id);
      return viewOf(job);
    }
    const error = { code: ErrorCode.JobCancelled, error: `cancelled by ${reader.name}` };
    if (job.status === 'queued') {
      this.queue.remove(job.client, job);
      this.finish(job, now, error, 'cancelled');
    } else {
      this.finish(job, now, error, 'cancelled');
      job.abort.abort(new AdaggError(ErrorCode.JobCancelled, error.error));
      const run = this.runs.get(job);
      if (run?.holdsSlot) {
        run.holdsSlot = false;
        this.running--;
      }
      queueMicrotask(() => this.pump());
    }
    return viewOf(job);
  }

  /** Counts per status, e.g. for metrics. */
  stats(): Record<QueryJobStatus, number> {
    const out: Record<QueryJobStatus, number> = { queued: 0, running: 0, done: 0, failed: 0, cancelled: 0 };
    for (const j of this.jobs.values()) out[j.status]++;
    return out;
  }

  /** Fails queued jobs, aborts running ones and waits for them. Later submits are refused. */
  async close(): Promise<void> {
    this.closed = true;
    const now = this.clock.now();
    for (const job of this.queue.drain()) this.finish(job, now, { code: ErrorCode.ScanFailed, error: 'the gateway shut down before the job started' });
    for (const job of this.jobs.values()) {
      if (job.status === 'running') job.abort.abort(new AdaggError(ErrorCode.ScanFailed, 'the gateway shut down during the scan'));
    }
    await Promise.allSettled([...this.runs.values()].map((r) => r.done));
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
    while (!this.closed && this.running < this.limits.maxRunningJobs && this.queue.size > 0) {
      const job = this.queue.shift()!;
      this.running++;
      const entry = { done: Promise.resolve(), holdsSlot: true };
      entry.done = this.run(job).finally(() => {
        if (entry.holdsSlot) this.running--;
        this.runs.delete(job);
        this.pump();
      });
      this.runs.set(job, entry);
    }
  }

  /** Ends a job once (a cancelled job's late scan result or error is ignored) and releases its quota. */
  private finish(job: QueryJobRecord, now: number, error: JobError | null, status?: QueryJobStatus): void {
    if (job.finishedAt !== null) return;
    job.status = status ?? (error ? 'failed' : 'done');
    job.error = error;
    job.finishedAt = now;
    const left = (this.active.get(job.client) ?? 1) - 1;
    if (left > 0) this.active.set(job.client, left);
    else this.active.delete(job.client);
  }

  private async run(job: QueryJobRecord): Promise<void> {
    job.status = 'running';
    const startedAt = this.clock.now();
    job.startedAt = startedAt;
    try {
      const result = await this.execute({
        spec: job.spec,
        startedAt,
        signal: job.abort.signal,
        progress: (p) => void (job.scan = { scannedMessages: p.scannedMessages, totalMessages: p.totalMessages, scannedClicks: p.scannedClicks }),
        matched: (n) => void (job.matched += n),
        archived: (p) => void (job.archive = { files: p.files, clicks: p.clicks }),
      });
      if (job.finishedAt !== null) return;
      job.result = result;
      // The count taken at start is an upper bound: once done, what was read is the total.
      job.scan.totalMessages = job.scan.scannedMessages;
      this.finish(job, this.clock.now(), null);
    } catch (err) {
      if (job.finishedAt !== null) return;
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

function mayRead(job: QueryJobRecord, reader: JobReader | undefined): boolean {
  return reader === undefined || reader.admin || job.owner === reader.name;
}
