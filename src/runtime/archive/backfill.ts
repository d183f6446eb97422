/**
 * Backfill (issue 10, docs/history.md "Recompute, audit log, backfill"): clicks older than the
 * correction horizon — a late log file, or the `too_old` dead letters — go into the raw archive as
 * unit `bf` files (subject `backfill`, seq = a backfill batch number from Redis, pos = row index),
 * staged, fsynced and renamed like the archivers' files; then recompute --apply runs over the
 * minutes they touch, with cause `backfill` (those minutes are sealed: older than the horizon).
 *
 * Duplicates stay duplicates: a click id already in the archive for the same ad (a stream row the
 * live actors counted, or an earlier backfill's row) is dropped, so a second backfill of the same
 * file writes no row and its recompute finds nothing to change. Rows the live actors refused as
 * too old do not count as present (they were never counted).
 */
import { rm } from 'node:fs/promises';
import type { DuckDBConnection } from '@duckdb/node-api';
import type { Click } from '../../model/click.ts';
import { MINUTE_MS } from '../../model/time.ts';
import { ArchiveBuffer, stagingDir } from './archive-buffer.ts';
import { completeRenames } from './archive-progress.ts';
import { duckConnection, sqlString } from './duckdb.ts';
import { deadLetterFilesFrom } from './reconcile-raw.ts';
import { recompute, type RecomputeInput, type RecomputeRun } from './recompute.ts';
import { applyRecompute, type ApplyInput, type ApplyResult } from './recompute-commit.ts';
import { BACKFILL_SUBJECT, rawFilesOfHours } from './recompute-source.ts';

const HOUR_MS = 3_600_000;

/** Where a backfill is, for a progress line. */
export type BackfillProgress =
  | { phase: 'dedupe'; clicks: number; files: number }
  | { phase: 'written'; rows: number; files: number; batch: number }
  | { phase: 'recompute'; range: number; ranges: number; fromMs: number; toMs: number };

export interface BackfillInput extends Omit<RecomputeInput, 'fromMs' | 'toMs' | 'ads' | 'extra' | 'onProgress'> {
  /** Valid clicks to load (validated by the caller). */
  clicks: readonly Click[];
  dryRun: boolean;
  /** The apply's audit and corrections (unused on a dry run). */
  apply: Pick<ApplyInput, 'countTtlMs' | 'by' | 'reason' | 'command' | 'publish' | 'archiveApply'>;
  onProgress?: (p: BackfillProgress) => void;
  onRecomputeProgress?: RecomputeInput['onProgress'];
}

/** One recomputed range of minutes the backfill touches. */
export interface BackfillRange {
  run: RecomputeRun;
  applied: ApplyResult | undefined;
}

export interface BackfillResult {
  /** Valid clicks handed in. */
  clicks: number;
  /** Copies of a click id (same ad) earlier in the input. */
  duplicatesInInput: number;
  /** Clicks whose id the archive already holds for the ad. */
  alreadyArchived: number;
  /** Rows written (or, on a dry run, that would be). */
  written: number;
  /** The batch number (seq) of the rows written; null when none. */
  batch: number | null;
  files: string[];
  ranges: BackfillRange[];
}

/** Consecutive UTC hours touched by the clicks, as minute ranges [first minute of a run, last minute + 1). */
export function touchedRanges(clicks: readonly Click[]): Array<{ fromMs: number; toMs: number }> {
  const minutes = new Map<number, { min: number; max: number }>();
  for (const c of clicks) {
    const h = Math.floor(c.ts / HOUR_MS);
    const m = Math.floor(c.ts / MINUTE_MS);
    const cur = minutes.get(h);
    if (!cur) minutes.set(h, { min: m, max: m });
    else {
      cur.min = Math.min(cur.min, m);
      cur.max = Math.max(cur.max, m);
    }
  }
  const hours = [...minutes.keys()].sort((a, b) => a - b);
  const out: Array<{ fromMs: number; toMs: number }> = [];
  for (const h of hours) {
    const r = minutes.get(h)!;
    const last = out.at(-1);
    if (last && Math.floor((last.toMs - 1) / HOUR_MS) === h - 1) last.toMs = (r.max + 1) * MINUTE_MS;
    else out.push({ fromMs: r.min * MINUTE_MS, toMs: (r.max + 1) * MINUTE_MS });
  }
  return out;
}

let tables = 0;

/** Indexes (into `clicks`) of clicks whose (ad_id, click_id) the archive holds, refused too-old copies aside. */
async function archivedIndexes(conn: DuckDBConnection, clicks: readonly Click[], rawFiles: readonly string[], deadLetterFiles: readonly string[]): Promise<Set<number>> {
  if (rawFiles.length === 0 || clicks.length === 0) return new Set();
  const t = `bf_cand_${process.pid}_${++tables}`;
  await conn.run(`CREATE TEMP TABLE ${t} (idx INTEGER, click_id VARCHAR, ad_id VARCHAR)`);
  try {
    const a = await conn.createAppender(t);
    clicks.forEach((c, i) => {
      a.appendInteger(i);
      a.appendVarchar(c.click_id);
      a.appendVarchar(c.ad_id);
      a.endRow();
    });
    a.flushSync();
    a.closeSync();
    const list = (xs: readonly string[]): string => `[${xs.map(sqlString).join(', ')}]`;
    const tooOld =
      deadLetterFiles.length === 0
        ? `SELECT NULL::VARCHAR AS click_id, NULL::UBIGINT AS src_seq WHERE false`
        : `SELECT DISTINCT click_id, src_seq FROM read_parquet(${list(deadLetterFiles)}, hive_partitioning = false) WHERE reason = 'too_old' AND click_id IS NOT NULL AND src_seq IS NOT NULL`;
    const reader = await conn.runAndReadAll(`
WITH too_old AS (${tooOld}),
present AS (
  SELECT r.click_id, r.ad_id FROM read_parquet(${list(rawFiles)}, hive_partitioning = false) r
  LEFT JOIN too_old d ON d.click_id = r.click_id AND d.src_seq = r.seq AND r.subject <> ${sqlString(BACKFILL_SUBJECT)}
  WHERE d.click_id IS NULL
)
SELECT c.idx FROM ${t} c SEMI JOIN present p ON p.click_id = c.click_id AND p.ad_id = c.ad_id`);
    return new Set(reader.getRows().map((r) => Number(r[0])));
  } finally {
    await conn.run(`DROP TABLE IF EXISTS ${t}`).catch(() => undefined);
  }
}

/** The raw files of every hour within `marginMs` of a click. */
async function filesAround(root: string, clicks: readonly Click[], marginMs: number): Promise<string[]> {
  const seen = new Set<string>();
  for (const r of touchedRanges(clicks)) for (const f of await rawFilesOfHours(root, r.fromMs - marginMs, r.toMs + marginMs)) seen.add(f);
  return [...seen].sort();
}

/** Writes `rows` as batch `batch` (one file per UTC hour): staged, fsynced, renamed, folders fsynced. */
async function writeBatch(root: string, batch: number, rows: readonly Click[]): Promise<string[]> {
  const unitId = `a-bf-${batch}`;
  const staging = stagingDir(root, unitId);
  const buffer = await ArchiveBuffer.open('bf', unitId);
  try {
    buffer.appendClicks(BACKFILL_SUBJECT, batch, rows);
    const staged = await buffer.stage(root, staging, batch, batch, 0);
    const missing = await completeRenames(staged.map((f) => [f.tmp, f.final] as [string, string]));
    if (missing.length > 0) throw new Error(`backfill: staged files vanished before their rename: ${missing.map((p) => p[0]).join(', ')}`);
    return staged.map((f) => f.final);
  } finally {
    await buffer.close().catch(() => undefined);
    await rm(staging, { recursive: true, force: true }).catch(() => undefined);
  }
}

/** Loads the clicks and recomputes (see the module comment). */
export async function backfill(i: BackfillInput): Promise<BackfillResult> {
  // The first copy of each (ad, click id) in the input.
  const seen = new Set<string>();
  const unique: Click[] = [];
  for (const c of i.clicks) {
    const k = JSON.stringify([c.ad_id, c.click_id]);
    if (seen.has(k)) continue;
    seen.add(k);
    unique.push(c);
  }
  const rawFiles = await filesAround(i.archiveDir, unique, i.marginMs);
  const first = unique.reduce((m, c) => Math.min(m, c.ts), Infinity);
  const deadLetterFiles = Number.isFinite(first) ? await deadLetterFilesFrom(i.archiveDir, new Date(first - i.marginMs).toISOString().slice(0, 10)) : [];
  i.onProgress?.({ phase: 'dedupe', clicks: unique.length, files: rawFiles.length });
  const conn = await duckConnection();
  let present: Set<number>;
  try {
    present = await archivedIndexes(conn, unique, rawFiles, deadLetterFiles);
  } finally {
    conn.closeSync();
  }
  const fresh = unique.filter((_, k) => !present.has(k));
  let batch: number | null = null;
  let files: string[] = [];
  if (!i.dryRun && fresh.length > 0) {
    batch = await i.redis.incr(i.keys.backfillBatch());
    files = await writeBatch(i.archiveDir, batch, fresh);
    i.onProgress?.({ phase: 'written', rows: fresh.length, files: files.length, batch });
  }
  // Every minute the input touches, also when its rows were written by an earlier (interrupted) run.
  const ranges = touchedRanges(unique);
  const out: BackfillRange[] = [];
  for (const [k, r] of ranges.entries()) {
    i.onProgress?.({ phase: 'recompute', range: k + 1, ranges: ranges.length, fromMs: r.fromMs, toMs: r.toMs });
    const inRange = (c: Click): boolean => c.ts >= r.fromMs && c.ts < r.toMs;
    const ads = [...new Set(unique.filter(inRange).map((c) => c.ad_id))];
    const run = await recompute({
      ...i,
      fromMs: r.fromMs,
      toMs: r.toMs,
      // Few ads: only their fields are compared (their shards are still fed whole).
      ads: ads.length <= 1000 ? ads : undefined,
      extra: i.dryRun ? fresh.filter(inRange) : undefined,
      onProgress: i.onRecomputeProgress,
    });
    const applied = i.dryRun ? undefined : await applyRecompute({ ...i.apply, redis: i.redis, keys: i.keys, archiveDir: i.archiveDir, run, cause: 'backfill', clock: i.clock });
    out.push({ run, applied });
  }
  return { clicks: i.clicks.length, duplicatesInInput: i.clicks.length - unique.length, alreadyArchived: present.size, written: fresh.length, batch, files, ranges: out };
}
