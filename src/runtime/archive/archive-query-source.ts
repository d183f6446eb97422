/**
 * The archive side of a query job, as a service: where the archive stops for each unit (its cut),
 * the counts of a range from the files (archive-query.ts), and which clicks of the stream tail the
 * archive already holds. The gateway's executor (src/gateway/query-job-executor.ts) joins this
 * with a raw scan of the tail.
 */
import type { DuckDBConnection } from '@duckdb/node-api';
import type { Redis } from 'ioredis';
import type { RedisKeys } from '../redis-keys.ts';
import { rangeStart, type PendingPair } from './archive-progress.ts';
import { archivedPairsSql, archiveJobSql, rawFilesBetween, type ArchiveJobQuery } from './archive-query.ts';
import { archiverUnitId } from './archiver.ts';
import { duckConnection } from './duckdb.ts';
import { deadLetterFilesFrom } from './reconcile-raw.ts';
import { fileExists } from './file-exists.ts';

/** Each unit's cut: the last stream sequence the job takes from the archive (0: nothing). */
export interface ArchiveCuts {
  /** Shard → cut of its subject (unit `s<shard>`). */
  shards: ReadonlyMap<number, number>;
  /** Cut of the hot child subjects (unit `hot`). */
  hot: number;
}

/** One archive count row: per (ad, minute) when grouped by minute, `minute` undefined when grouped by ad. */
export interface ArchiveCountRow {
  adId: string;
  minute?: number | undefined;
  clicks: number;
}

export interface ArchiveQuerySourceOptions {
  /** Absolute archive folder (ADAGG_ARCHIVE_DIR). */
  root: string;
  /** Subject of a shard (`<p>.clicks.<s>`). */
  clickSubject: (shard: number) => string;
  /** Prefix of hot child subjects (`<p>.hot.`). */
  hotPrefix: string;
  /** Copies of a click are archived at most this far (event time) from it: files of the hours this close to the range are read too. */
  marginMs: number;
}


/** The recorded staged → final pairs of a unit's last commit (an unreadable list counts as none). */
function pendingOf(raw: string | undefined): PendingPair[] {
  try {
    const p: unknown = JSON.parse(raw ?? '[]');
    return Array.isArray(p) ? p.filter((x): x is PendingPair => Array.isArray(x) && typeof x[0] === 'string' && typeof x[1] === 'string') : [];
  } catch {
    return [];
  }
}

/** The archive side of query jobs: cuts from Redis, counts and pair lookups by DuckDB over the files. */
export class ArchiveQuerySource {
  constructor(
    private readonly redis: Redis,
    private readonly keys: RedisKeys,
    private readonly opts: ArchiveQuerySourceOptions,
  ) {}

  /**
   * Each unit's cut: its recorded sequence (`keys.archive(a-<unit>)` `seq`), or, while the files
   * of its last commit are not all renamed yet (the archiver commits, then renames), the sequence
   * before that commit, so a cut never promises rows that are not readable yet.
   */
  async cuts(shards: readonly number[]): Promise<ArchiveCuts> {
    const units = [...shards.map((s) => `s${s}` as const), 'hot' as const];
    const p = this.redis.pipeline();
    for (const u of units) p.hmget(this.keys.archive(archiverUnitId(u)), 'seq', 'pending');
    const res = (await p.exec()) ?? [];
    const cutOf = async (i: number): Promise<number> => {
      const [err, v] = res[i] ?? [null, null];
      if (err) throw err;
      const [seq, pending] = (v as Array<string | null> | null) ?? [null, null];
      let cut = Number(seq ?? 0);
      const pairs = pendingOf(pending ?? undefined);
      for (const [, final] of pairs) {
        if (!(await fileExists(final))) {
          cut = Math.min(cut, (rangeStart(pairs) ?? cut + 1) - 1);
          break;
        }
      }
      return Number.isSafeInteger(cut) && cut > 0 ? cut : 0;
    };
    const out = new Map<number, number>();
    for (let i = 0; i < shards.length; i++) out.set(shards[i]!, await cutOf(i));
    return { shards: out, hot: await cutOf(shards.length) };
  }

  /** The query of a range, ready for {@link counts} and {@link archivedPairs}: files listed, cuts as subjects. */
  async plan(cuts: ArchiveCuts, q: Pick<ArchiveJobQuery, 'fromMs' | 'toMs' | 'adId' | 'filter' | 'by'>): Promise<ArchiveJobQuery> {
    const o = this.opts;
    const rawFiles = await rawFilesBetween(o.root, q.fromMs, q.toMs, o.marginMs);
    const fromDay = new Date(Math.max(0, q.fromMs - o.marginMs)).toISOString().slice(0, 10);
    const deadLetterFiles = rawFiles.length === 0 ? [] : await deadLetterFilesFrom(o.root, fromDay);
    const subjects = new Map<string, number>();
    for (const [s, cut] of cuts.shards) if (cut > 0) subjects.set(o.clickSubject(s), cut);
    return { ...q, rawFiles, deadLetterFiles, cuts: subjects, hotPrefix: o.hotPrefix, hotCut: cuts.hot };
  }

  /**
   * The range's counts from the archive (none when no file is in the range). Aborting `signal`
   * interrupts the query (it then rejects with the signal's reason).
   */
  async counts(q: ArchiveJobQuery, signal?: AbortSignal): Promise<ArchiveCountRow[]> {
    if (q.rawFiles.length === 0) return [];
    return this.withConnection(signal, async (conn) => {
      const reader = await conn.runAndReadAll(archiveJobSql(q));
      return reader.getRowObjects().map((r) => ({
        adId: String(r.ad_id),
        minute: r.minute === undefined || r.minute === null ? undefined : Number(r.minute),
        clicks: Number(r.clicks),
      }));
    });
  }

  /**
   * Which of `pairs` ([ad_id, click_id]) the archive side holds (any applied copy): a stream-tail
   * copy of one of them is a duplicate, never a new click. Returns keys `ad_id + '\n' + click_id`.
   */
  async archivedPairs(q: ArchiveJobQuery, pairs: ReadonlyArray<readonly [string, string]>, signal?: AbortSignal): Promise<Set<string>> {
    const found = new Set<string>();
    if (q.rawFiles.length === 0 || pairs.length === 0) return found;
    return this.withConnection(signal, async (conn) => {
      const table = `job_pairs_${process.pid}_${Date.now().toString(36)}_${Math.random().toString(36).slice(2, 8)}`;
      await conn.run(`CREATE TEMP TABLE ${table} (ad_id VARCHAR NOT NULL, click_id VARCHAR NOT NULL)`);
      try {
        const app = await conn.createAppender(table, 'main', 'temp');
        for (const [ad, click] of pairs) {
          app.appendVarchar(ad);
          app.appendVarchar(click);
          app.endRow();
        }
        app.closeSync();
        const reader = await conn.runAndReadAll(archivedPairsSql(q, table));
        for (const r of reader.getRowObjects()) found.add(`${String(r.ad_id)}\n${String(r.click_id)}`);
        return found;
      } finally {
        await conn.run(`DROP TABLE IF EXISTS ${table}`).catch(() => undefined);
      }
    });
  }

  /** Runs `f` on a connection of its own, interrupted when `signal` aborts, and closes it. */
  private async withConnection<T>(signal: AbortSignal | undefined, f: (conn: DuckDBConnection) => Promise<T>): Promise<T> {
    signal?.throwIfAborted();
    const conn = await duckConnection();
    const onAbort = (): void => conn.interrupt();
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      const out = await f(conn);
      signal?.throwIfAborted();
      return out;
    } catch (err) {
      signal?.throwIfAborted();
      throw err;
    } finally {
      signal?.removeEventListener('abort', onAbort);
      conn.closeSync();
    }
  }
}
