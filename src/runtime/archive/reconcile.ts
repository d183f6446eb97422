/**
 * Reconciliation of one UTC day (issue 10): distinct clicks per ad-minute in the raw archive
 * (DuckDB SQL, reconcile-raw.ts) against the final counts in Redis (reconcile-stored.ts). Used by
 * `adagg reconcile` and by the gateway's daily run (ADAGG_RECONCILE_AT); the report is stored in
 * Redis and served at `GET /v1/reconciliations/{day}`.
 *
 * @example
 * const report = await reconcileDay({ redis, keys, prefix: 'adagg', shards: 8, archiveDir: './data/archive', day: '2026-11-29' });
 * if (report.mismatches > 0) process.exitCode = 1;
 */
import type { Redis } from 'ioredis';
import { AdaggError, ErrorCode } from '../../errors.ts';
import { shardOf } from '../../model/partition.ts';
import { systemClock, type Clock } from '../clock.ts';
import type { RedisKeys } from '../redis-keys.ts';
import { topology } from '../topology.ts';
import { duckConnection } from './duckdb.ts';
import { ReconcileTables } from './reconcile-compare.ts';
import { deadLetterFilesFrom, rawCountsSql, rawDayFiles, rawFilesAround } from './reconcile-raw.ts';
import { readStoredCounts, shardPositions, type ShardPosition } from './reconcile-stored.ts';
import { MAX_STORED_ROWS, type Comparison, type Mismatch, type ReconcileReport } from './reconcile-report.ts';

export type { Mismatch, ReconcileReport } from './reconcile-report.ts';

const DAY_RE = /^(\d{4})-(\d{2})-(\d{2})$/;
const DAY_MS = 86_400_000;

/** The first millisecond of a `YYYY-MM-DD` UTC day, or undefined for anything else (2026-02-30 too). */
export function dayStartMs(day: string): number | undefined {
  if (!DAY_RE.test(day)) return undefined;
  const ms = Date.parse(`${day}T00:00:00.000Z`);
  return Number.isFinite(ms) && new Date(ms).toISOString().slice(0, 10) === day ? ms : undefined;
}

/** `day` checked, else ADAGG_E_BAD_PARAM. */
export function parseDay(day: string): number {
  const ms = dayStartMs(day);
  if (ms === undefined) throw new AdaggError(ErrorCode.BadParam, `day must be a UTC date YYYY-MM-DD, got '${day.slice(0, 32)}'`, { details: { param: 'day' } });
  return ms;
}

/** Where a run is, for a progress line. */
export type ReconcileProgress =
  | { phase: 'waiting'; behind: ReadonlyArray<{ shard: number | 'dlq'; archived: number; seq: number }>; waitedMs: number }
  | { phase: 'raw'; files: number; deadLetterFiles: number }
  | { phase: 'stored'; shard: number; shards: number };

export interface ReconcileInput {
  redis: Redis;
  keys: RedisKeys;
  /** ADAGG_PREFIX (subject names). */
  prefix: string;
  shards: number;
  archiveDir: string;
  day: string;
  /** How long to wait for the archivers to cover what the shards applied. @default 60 000 */
  waitMs?: number;
  /** ADAGG_CORRECTION_HORIZON_MS: copies this close to the day take part in the dedupe. @default 1 hour */
  horizonMs?: number;
  /**
   * The dead-letter stream's last sequence now. With it, the run also waits for the dead-letter
   * archiver (`a-dlq`) to reach it, so every refusal of a click the shards applied is in the
   * archive (an actor publishes its dead letters before the commit that applies their message).
   */
  deadLetterLast?: () => Promise<number>;
  clock?: Clock;
  onProgress?: (p: ReconcileProgress) => void;
  /** Store the report in Redis (`<prefix>:reconcile:<day>`). @default true */
  store?: boolean;
}

/** Waits until every shard's archiver covers the shard's committed seq; else ADAGG_E_ARCHIVE_BEHIND. */
async function awaitArchive(i: ReconcileInput, clock: Clock): Promise<ShardPosition[]> {
  const waitMs = i.waitMs ?? 60_000;
  const t0 = clock.now();
  for (;;) {
    const positions = await shardPositions(i.redis, i.keys, i.shards);
    const behind: Array<{ shard: number | 'dlq'; archived: number; seq: number }> = positions
      .filter((p) => p.archived < p.seq)
      .map(({ shard, archived, seq }) => ({ shard, archived, seq }));
    // Read after the positions: the letters of every message they cover are in the stream by now.
    if (i.deadLetterLast) {
      const last = await i.deadLetterLast();
      const archived = Number((await i.redis.hget(i.keys.archive('a-dlq'), 'seq')) ?? 0);
      if (archived < last) behind.push({ shard: 'dlq', archived, seq: last });
    }
    if (behind.length === 0) return positions;
    const waitedMs = clock.now() - t0;
    if (waitedMs >= waitMs) {
      const list = behind.map((b) => `${b.shard === 'dlq' ? 'dead letters' : `shard ${b.shard}`} archived ${b.archived} of ${b.seq}`).join(', ');
      throw new AdaggError(ErrorCode.ArchiveBehind, `the archive is behind what the shards applied after ${waitMs} ms: ${list}`, { details: { behind } });
    }
    i.onProgress?.({ phase: 'waiting', behind, waitedMs });
    await new Promise<void>((r) => clock.setTimeout(r, Math.min(500, waitMs - waitedMs)));
  }
}

/** One comparison against fixed positions, in DuckDB (reconcile-compare.ts). */
async function compareOnce(i: ReconcileInput, positions: readonly ShardPosition[], startMs: number): Promise<Comparison & { shards: number; files: number }> {
  const topo = topology(i.prefix);
  const [dayFiles, around, deadLetterFiles] = await Promise.all([
    rawDayFiles(i.archiveDir, i.day),
    rawFilesAround(i.archiveDir, startMs, i.horizonMs ?? 3_600_000),
    deadLetterFilesFrom(i.archiveDir, i.day),
  ]);
  const rawFiles = [...dayFiles, ...around];
  i.onProgress?.({ phase: 'raw', files: rawFiles.length, deadLetterFiles: deadLetterFiles.length });
  const conn = await duckConnection();
  const tables = new ReconcileTables(conn);
  try {
    const rawSql =
      rawFiles.length === 0
        ? undefined
        : rawCountsSql({
            rawFiles,
            deadLetterFiles,
            committed: new Map(positions.map((p) => [topo.clickSubject(p.shard), p.seq])),
            hotSubjectPrefix: topo.hotSubjects.slice(0, -1),
            dayStartMs: startMs,
          });
    await tables.loadRaw(rawSql, (ad) => shardOf(ad, i.shards));
    const firstMinute = startMs / 60_000;
    await tables.loadStored(async (append) => {
      for (const p of positions) {
        i.onProgress?.({ phase: 'stored', shard: p.shard, shards: positions.length });
        const last = Math.min(firstMinute + DAY_MS / 60_000 - 1, p.closedThrough);
        const minutes: number[] = [];
        for (let m = firstMinute; m <= last; m++) minutes.push(m);
        await readStoredCounts(i.redis, i.keys, p.shard, minutes, (minute, ad, n) => append(p.shard, minute, ad, n));
      }
    });
    const result = await tables.compare(new Map(positions.map((p) => [p.shard, p.closedThrough])));
    return { shards: positions.length, files: rawFiles.length, ...result };
  } finally {
    await tables.drop().catch(() => undefined);
    conn.closeSync();
  }
}

/**
 * Reconciles one day and (by default) stores the report. Throws ADAGG_E_BAD_PARAM for a bad day,
 * ADAGG_E_ARCHIVE_BEHIND when an archiver does not catch up within `waitMs`.
 *
 * A shard may commit while the run reads Redis; a closed minute it corrects then reads newer than
 * the positions used for the archive side. So when mismatches show and a shard with mismatches moved
 * during the run, the comparison runs once more from fresh positions.
 */
export async function reconcileDay(i: ReconcileInput): Promise<ReconcileReport & { all: Mismatch[] }> {
  const startMs = parseDay(i.day);
  const clock = i.clock ?? systemClock;
  const t0 = clock.now();
  let positions = await awaitArchive(i, clock);
  let result = await compareOnce(i, positions, startMs);
  if (result.mismatches > 0) {
    const now = await shardPositions(i.redis, i.keys, i.shards);
    const moved = new Set(now.filter((p, s) => p.seq !== positions[s]?.seq).map((p) => p.shard));
    if (result.all.some((m) => moved.has(m.shard))) {
      positions = await awaitArchive(i, clock);
      result = await compareOnce(i, positions, startMs);
    }
  }
  const { all, ...summary } = result;
  const report: ReconcileReport = {
    day: i.day,
    ran_at: new Date(t0).toISOString(),
    duration_ms: clock.now() - t0,
    ...summary,
    rows: all.slice(0, MAX_STORED_ROWS),
    truncated: all.length > MAX_STORED_ROWS,
  };
  if (i.store !== false) await i.redis.set(i.keys.reconcile(i.day), JSON.stringify(report));
  return { ...report, all };
}

/** The stored report of a day, or undefined. */
export async function storedReport(redis: Redis, keys: RedisKeys, day: string): Promise<ReconcileReport | undefined> {
  const s = await redis.get(keys.reconcile(day));
  return s === null ? undefined : (JSON.parse(s) as ReconcileReport);
}
