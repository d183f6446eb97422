import { isoOf } from '../model/time.ts';
import type { Ranked } from '../model/top-n.ts';
import type { RawScanProgress } from '../runtime/raw-scan.ts';
import type { QueryJobKind, QueryJobSpec } from './query-job-request.ts';

/**
 * What a query job looks like from outside: its states, progress, result shapes, and the views
 * `GET /v1/queries/{id}` and `GET /v1/queries` send, built from the scheduler's {@link QueryJobRecord}.
 */

/** `cancelled`: by `DELETE /v1/queries/{id}` while queued or running. */
export type QueryJobStatus = 'queued' | 'running' | 'done' | 'failed' | 'cancelled';

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
  /** Clicks read from the stream (only its tail when the archive is on) in [from, to) matching the filter, before click_id dedupe. */
  matched_clicks: number;
  /** Raw archive files read (only with the archive on). */
  archive_files?: number;
  /** Clicks counted from the archive, after dedupe and filter (only with the archive on). */
  archive_clicks?: number;
  /** 0..1; 1 once done. */
  fraction: number;
}

/** A job as `GET /v1/queries` lists it: no result (results are read one job at a time). */
export interface QueryJobSummary {
  id: string;
  kind: QueryJobKind;
  status: QueryJobStatus;
  progress: QueryJobProgress;
  created_at: string;
  started_at: string | null;
  finished_at: string | null;
  links: { self: string };
}

export interface QueryJobView extends QueryJobSummary {
  result: QueryJobResult | null;
  error: { code: string; error: string } | null;
}

export type JobError = { code: string; error: string };

/** The scheduler's record of one job. */
export interface QueryJobRecord {
  readonly id: string;
  readonly spec: QueryJobSpec;
  /** The principal that submitted it: only it (or an admin) may read or cancel the job. */
  readonly owner: string;
  /** Whose quota and queue turn the job takes (the owner, or the address of an anonymous caller). */
  readonly client: string;
  status: QueryJobStatus;
  scan: RawScanProgress;
  matched: number;
  /** What the archive side read (query-job-archive.ts); undefined until it has (never with the archive off). */
  archive: { files: number; clicks: number } | undefined;
  result: QueryJobResult | null;
  error: JobError | null;
  readonly createdAt: number;
  startedAt: number | null;
  finishedAt: number | null;
  readonly abort: AbortController;
}

function fraction(j: QueryJobRecord): number {
  if (j.status === 'done') return 1;
  const { scannedMessages: s, totalMessages: t } = j.scan;
  if (t <= 0) return 0;
  return Math.round(Math.min(1, s / t) * 10_000) / 10_000;
}

/** The listing view of a job. */
export function summaryOf(j: QueryJobRecord): QueryJobSummary {
  return {
    id: j.id,
    kind: j.spec.kind,
    status: j.status,
    progress: {
      scanned_messages: j.scan.scannedMessages,
      total_messages: j.scan.totalMessages,
      scanned_clicks: j.scan.scannedClicks,
      matched_clicks: j.matched,
      ...(j.archive ? { archive_files: j.archive.files, archive_clicks: j.archive.clicks } : {}),
      fraction: fraction(j),
    },
    created_at: isoOf(j.createdAt),
    started_at: j.startedAt === null ? null : isoOf(j.startedAt),
    finished_at: j.finishedAt === null ? null : isoOf(j.finishedAt),
    links: { self: `/v1/queries/${j.id}` },
  };
}

/** The full view of a job (`GET /v1/queries/{id}`), in the field order it always had. */
export function viewOf(j: QueryJobRecord): QueryJobView {
  const s = summaryOf(j);
  return {
    id: s.id,
    kind: s.kind,
    status: s.status,
    progress: s.progress,
    result: j.result,
    error: j.error,
    created_at: s.created_at,
    started_at: s.started_at,
    finished_at: s.finished_at,
    links: s.links,
  };
}
