/**
 * The report of a reconciliation: archive counts against stored counts per ad-minute, for minutes
 * the ad's shard has closed (the comparison itself runs in DuckDB: reconcile-compare.ts).
 */

/** Mismatch rows a stored report keeps (`truncated: true` beyond). */
export const MAX_STORED_ROWS = 1000;

/** One ad-minute whose archive and stored counts differ. */
export interface Mismatch {
  ad_id: string;
  /** The minute's start, ISO-8601 UTC. */
  minute: string;
  shard: number;
  /** Distinct clicks in the raw archive. */
  archive: number;
  /** Final count in Redis (valid + invalid). */
  stored: number;
  /** stored − archive. */
  diff: number;
}

/** What `adagg reconcile` prints and `GET /v1/reconciliations/{day}` serves. */
export interface ReconcileReport {
  day: string;
  ran_at: string;
  duration_ms: number;
  shards: number;
  /** Raw archive files read. */
  files: number;
  /** Distinct ads in the compared ad-minutes. */
  ads: number;
  /** Ad-minutes compared (closed minutes with clicks on either side). */
  checked_minutes: number;
  /** Ad-minutes not compared yet: their shard has not closed the minute. */
  pending_minutes: number;
  /** Distinct clicks of the archive in the compared ad-minutes. */
  clicks: number;
  mismatches: number;
  /** At most {@link MAX_STORED_ROWS} mismatches, largest |diff| first. */
  rows: Mismatch[];
  truncated: boolean;
}

export interface Comparison {
  ads: number;
  checked_minutes: number;
  pending_minutes: number;
  clicks: number;
  mismatches: number;
  /** The mismatches (at most MAX_MISMATCH_ROWS), largest |diff| first, then by minute and ad. */
  all: Mismatch[];
}
