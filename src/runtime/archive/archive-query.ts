/**
 * Query jobs over the raw archive (docs/history.md#query-jobs-over-the-archive): the SQL that
 * counts a job's clicks in the Parquet files, and the files it reads. DuckDB does the dedupe,
 * the filter and the grouping; only counts come back to JavaScript.
 *
 * What a job counts from the archive, in SQL:
 * - only rows archived up to each unit's cut: on the shard subject `<p>.clicks.<s>` sequences up to
 *   the cut of unit `s<s>`, on hot child subjects up to the cut of unit `hot` (later messages are
 *   the stream tail, read by the raw scan: each message is counted by exactly one side);
 *   backfilled rows (subject `backfill`) are all taken, after every stream row;
 * - not the copies a shard actor refused as too old (dead-letter rows `reason = 'too_old'` with the
 *   same click_id and `src_seq` = the row's seq), as in reconciliation (reconcile-raw.ts);
 * - per (ad_id, click_id) the copy with the lowest (seq, pos): the first one, as the actors count it;
 * - then the job's range (the first copy's `ts`) and filter (ad_id, user_id, ip, country, or an
 *   extra attribute of `attrs`).
 *
 * @example
 * const sql = archiveJobSql({ rawFiles, deadLetterFiles: [], cuts: new Map([['p.clicks.0', 99]]), hotPrefix: 'p.hot.', hotCut: 0,
 *   fromMs, toMs, filter: { user_id: 'u42' }, adId: 'ad1', by: 'minute' });
 */
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { sqlString } from './duckdb.ts';
import { sqlList, subjectSeqsSql, tooOldCopiesSql } from './archive-sql.ts';
import { rawDir } from './layout.ts';

const HOUR_MS = 3_600_000;
const DAY_MS = 86_400_000;
/** Subject of backfilled rows (`adagg backfill`): no stream message carries them. */
export const BACKFILL_SUBJECT = 'backfill';

/** The inputs of one job's archive side. */
export interface ArchiveJobQuery {
  /** Raw files of the hours that can hold the range's clicks and their copies ({@link rawFilesBetween}). */
  rawFiles: readonly string[];
  /** Dead-letter files that may refuse clicks of the range (deadLetterFilesFrom, reconcile-raw.ts). */
  deadLetterFiles: readonly string[];
  /** Shard subject → last sequence taken from the archive (the unit's cut). Subjects not listed are not read. */
  cuts: ReadonlyMap<string, number>;
  /** Prefix of hot child subjects (`<p>.hot.`). */
  hotPrefix: string;
  /** Last sequence of the hot child subjects taken from the archive. */
  hotCut: number;
  /** The range, epoch ms, [fromMs, toMs). */
  fromMs: number;
  toMs: number;
  /** The ad (aggregated_count, or popular_ads with filter.ad_id): only its rows are read. */
  adId?: string | undefined;
  /** attribute → value, all must match (ad_id handled by `adId`). */
  filter: Readonly<Record<string, string>>;
  /** `minute`: one row per (ad_id, minute); `ad`: one row per ad_id (the range's total). */
  by: 'minute' | 'ad';
}

const BUILT_IN = new Set(['user_id', 'ip', 'country']);
/** Attribute names the request parser admits ([A-Za-z0-9_]{1,32}); checked again so no name reaches SQL unchecked. */
const ATTR_RE = /^[A-Za-z0-9_]{1,32}$/;

/** The SQL expression of an attribute of a `firsts` row. */
function attrExpr(name: string): string {
  if (BUILT_IN.has(name)) return name;
  if (!ATTR_RE.test(name)) throw new Error(`archive query: bad attribute name ${JSON.stringify(name)}`);
  return `json_extract_string(attrs, ${sqlString(`$."${name}"`)})`;
}

/**
 * The rows the actors applied, as a CTE body: the archived rows up to each unit's cut (and the
 * backfilled ones), without the too-old refusals. `rank` orders backfilled rows after stream rows.
 */
function appliedSql(q: Pick<ArchiveJobQuery, 'rawFiles' | 'deadLetterFiles' | 'cuts' | 'hotPrefix' | 'hotCut' | 'adId' | 'fromMs'>): string {
  const cuts = subjectSeqsSql(q.cuts);
  const tooOld = tooOldCopiesSql(q.deadLetterFiles, `ts >= ${Math.floor(q.fromMs) - DAY_MS}`);
  const ad = q.adId === undefined ? '' : `WHERE ad_id = ${sqlString(q.adId)}`;
  // NOT MATERIALIZED: a query reads `applied` twice (candidates, then first copies); materialized,
  // every row of the range would be copied first (measured: 8 M rows, 30 s instead of 5-8 s).
  return `
raw AS NOT MATERIALIZED (
  SELECT click_id, ad_id, ts, user_id, ip, country, attrs, subject, seq, pos
  FROM read_parquet(${sqlList(q.rawFiles)}, hive_partitioning = false) ${ad}
),
cuts AS (${cuts}),
too_old AS (${tooOld}),
applied AS NOT MATERIALIZED (
  SELECT r.*, CASE WHEN r.subject = ${sqlString(BACKFILL_SUBJECT)} THEN 1 ELSE 0 END AS rank
  FROM raw r
  LEFT JOIN cuts c ON c.subject = r.subject
  ANTI JOIN too_old d ON d.click_id = r.click_id AND d.src_seq = r.seq AND r.subject <> ${sqlString(BACKFILL_SUBJECT)}
  WHERE r.seq <= c.seq
     OR (starts_with(r.subject, ${sqlString(q.hotPrefix)}) AND r.seq <= ${Math.max(0, Math.floor(q.hotCut))})
     OR r.subject = ${sqlString(BACKFILL_SUBJECT)}
)`;
}

/** The SQL of a job's archive side: `(ad_id, minute, clicks)` or `(ad_id, clicks)` rows (see the module comment). */
export function archiveJobSql(q: ArchiveJobQuery): string {
  const where = [`ts >= ${Math.floor(q.fromMs)}`, `ts < ${Math.floor(q.toMs)}`];
  for (const [k, v] of Object.entries(q.filter)) {
    if (k === 'ad_id') where.push(`ad_id = ${sqlString(v)}`);
    else where.push(`${attrExpr(k)} = ${sqlString(v)}`);
  }
  const select = q.by === 'minute' ? `ad_id, ts // 60000 AS minute, count(*) AS clicks` : `ad_id, count(*) AS clicks`;
  const group = q.by === 'minute' ? `ad_id, minute` : `ad_id`;
  // A click counts when its first copy matches. Such a click has a matching row, so the first
  // copies are looked for only among the clicks with one (a semi join), not by sorting every row
  // of the range: a selective filter then costs a scan, not a sort of the whole range.
  return `
WITH ${appliedSql(q)},
candidates AS (
  SELECT DISTINCT ad_id, click_id FROM applied WHERE ${where.join(' AND ')}
),
firsts AS (
  SELECT a.* FROM applied a SEMI JOIN candidates c ON a.ad_id = c.ad_id AND a.click_id = c.click_id
  QUALIFY row_number() OVER (PARTITION BY a.ad_id, a.click_id ORDER BY a.rank, a.seq, a.pos) = 1
)
SELECT ${select} FROM firsts
WHERE ${where.join(' AND ')}
GROUP BY ${group}`;
}

/**
 * The SQL that names which (ad_id, click_id) pairs of table `pairs` (columns ad_id, click_id) the
 * archive side holds (any copy the actors applied, whatever its time or attributes): the stream
 * tail's copies of those clicks are duplicates of a click the archive side already decided on.
 */
export function archivedPairsSql(q: Pick<ArchiveJobQuery, 'rawFiles' | 'deadLetterFiles' | 'cuts' | 'hotPrefix' | 'hotCut' | 'adId' | 'fromMs'>, pairsTable: string): string {
  if (!/^[A-Za-z0-9_]+$/.test(pairsTable)) throw new Error(`archive query: bad table name ${pairsTable}`);
  return `
WITH ${appliedSql(q)}
SELECT DISTINCT p.ad_id, p.click_id FROM ${pairsTable} p
SEMI JOIN applied a ON a.ad_id = p.ad_id AND a.click_id = p.click_id`;
}

async function listDir(dir: string): Promise<string[]> {
  return readdir(dir).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return [] as string[];
    throw err;
  });
}

/**
 * Raw files of every UTC hour that overlaps [fromMs − marginMs, toMs + marginMs), in path order
 * (finished files only: a writer's `*.parquet.tmp-…` is not part of the archive). Reads the date
 * folders once and only the hour folders of the span.
 */
export async function rawFilesBetween(root: string, fromMs: number, toMs: number, marginMs: number): Promise<string[]> {
  const first = Math.floor((fromMs - marginMs) / HOUR_MS) * HOUR_MS;
  const end = toMs + marginMs;
  const firstDay = new Date(first).toISOString().slice(0, 10);
  const lastDay = new Date(end - 1).toISOString().slice(0, 10);
  const base = rawDir(root);
  const out: string[] = [];
  const days = (await listDir(base)).filter((d) => d.startsWith('date=') && d.slice(5) >= firstDay && d.slice(5) <= lastDay).sort();
  for (const d of days) {
    const hours = (await listDir(path.join(base, d))).filter((h) => /^hour=\d{2}$/.test(h)).sort();
    for (const h of hours) {
      const startMs = Date.parse(`${d.slice(5)}T${h.slice(5)}:00:00.000Z`);
      if (!Number.isFinite(startMs) || startMs + HOUR_MS <= first || startMs >= end) continue;
      const files = await listDir(path.join(base, d, h));
      for (const f of files.filter((x) => x.endsWith('.parquet')).sort()) out.push(path.join(base, d, h, f));
    }
  }
  return out;
}
