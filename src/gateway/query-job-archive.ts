import { jetstreamManager, type MsgRequest } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { AdaggError, ErrorCode } from '../errors.ts';
import { minuteStartMs } from '../model/time.ts';
import type { ArchiveJobQuery } from '../runtime/archive/archive-query.ts';
import type { ArchiveCountRow, ArchiveCuts, ArchiveQuerySource } from '../runtime/archive/archive-query-source.ts';
import type { QueryJobSpec } from './query-job-request.ts';

/**
 * The archive side of a query job (docs/history.md#query-jobs-over-the-archive). Each archiver
 * unit (`s<shard>`, `hot`) has a cut, the last stream sequence its files hold when the job starts:
 * messages up to the cut are counted from the Parquet files by DuckDB (archive-query.ts), later
 * ones (the stream tail) by the raw scan. Each message is counted by one side only; a click whose
 * copies fall on both sides is decided by the archive side (its copy came first), and the tail's
 * copies are dropped by (ad_id, click_id) before the job's actors see them (query-job-counts.ts).
 */

/** A job's archive side, read once at its start. */
export interface JobArchiveSide {
  cuts: ArchiveCuts;
  query: ArchiveJobQuery;
  /** The archive's counts: per (ad, minute) for aggregated_count, per ad for popular_ads. */
  rows: ArchiveCountRow[];
}

/** Reads the archive side of `spec` (only the ad's shard when an ad is named). */
export async function readArchiveSide(
  source: ArchiveQuerySource,
  spec: QueryJobSpec,
  scope: { shards: readonly number[]; adId: string | undefined; maxResultRows: number; signal: AbortSignal },
): Promise<JobArchiveSide> {
  const cuts = await source.cuts(scope.shards);
  const filter = Object.assign(Object.create(null) as Record<string, string>, spec.filter);
  delete filter.ad_id;
  const query = await source.plan(cuts, {
    fromMs: minuteStartMs(spec.fromMinute),
    toMs: minuteStartMs(spec.toMinute),
    adId: scope.adId,
    filter,
    by: spec.kind === 'aggregated_count' ? 'minute' : 'ad',
  });
  const rows = await source.counts(query, scope.signal);
  if (rows.length > scope.maxResultRows) {
    throw new AdaggError(
      ErrorCode.ScanLimit,
      `the archive holds more than ${scope.maxResultRows} counts for the job (ADAGG_JOB_MAX_RESULT_ROWS); narrow the range or the filter`,
      { details: { limit: 'result_rows', maxResultRows: scope.maxResultRows } },
    );
  }
  return { cuts, query, rows };
}

/**
 * A lower bound of the store time (epoch ms) of every message of `subject` (a filter) after
 * sequence `cut`: the store time of the first such message (JetStream stores in sequence order),
 * found by a direct get with `next_by_subj`. `now` when the stream holds none yet; undefined when
 * it cannot tell (then the whole window is read).
 */
export async function tailStartMs(nc: NatsConnection, stream: string, subject: string, cut: number, now: number): Promise<number | undefined> {
  try {
    const jsm = await jetstreamManager(nc);
    const state = (await jsm.streams.info(stream)).state;
    if (cut + 1 > state.last_seq) return now;
    // STREAM.MSG.GET takes `seq` with `next_by_subj` (the client's MsgRequest type lacks the pair).
    const query = { seq: Math.max(cut + 1, state.first_seq), next_by_subj: subject } as unknown as MsgRequest;
    const m = await jsm.streams.getMessage(stream, query);
    return m ? m.time.getTime() : now;
  } catch {
    return undefined;
  }
}
