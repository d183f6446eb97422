/**
 * The comparison of reconciliation, done by DuckDB: the raw side (reconcile-raw.ts) becomes a temp
 * table, the stored counts stream into another through an appender, and one FULL OUTER JOIN finds
 * the ad-minutes that differ. Nothing proportional to the day's ad-minutes is held in JavaScript,
 * so a day of tens of millions of clicks is compared in DuckDB's columnar memory (spilling to disk
 * if it must), not in millions of Map entries.
 *
 * An ad-minute is compared when its shard has closed the minute (`closedThrough`); later minutes
 * of the archive are counted as pending. The stored side only holds closed minutes.
 */
import type { DuckDBConnection } from '@duckdb/node-api';
import type { Comparison, Mismatch } from './reconcile-report.ts';

/** Mismatch rows returned at most (the count is always exact). */
export const MAX_MISMATCH_ROWS = 100_000;

/** Appends one stored field (an ad-minute's totals or one of its `!inv` fields; they are summed). */
export type StoredAppend = (shard: number, minute: number, adId: string, clicks: number) => void;

/** The comparison's working tables on one connection (temp: gone with the connection). */
export class ReconcileTables {
  constructor(private readonly conn: DuckDBConnection) {}

  /** The raw side from its SQL (columns ad_id, minute, clicks, shard); a hot-only ad's shard is filled in by `shardOfAd`. */
  async loadRaw(rawSql: string | undefined, shardOfAd: (adId: string) => number): Promise<void> {
    await this.conn.run(
      rawSql === undefined
        ? 'CREATE OR REPLACE TEMP TABLE rc_raw (ad_id VARCHAR, minute BIGINT, clicks BIGINT, shard INTEGER)'
        : `CREATE OR REPLACE TEMP TABLE rc_raw AS ${rawSql}`,
    );
    // Ads whose clicks all came on hot child subjects: their shard is the parent's, by ad_id.
    const hot = (await this.conn.runAndReadAll('SELECT DISTINCT ad_id FROM rc_raw WHERE shard IS NULL')).getRowObjects();
    if (hot.length === 0) return;
    await this.conn.run('CREATE OR REPLACE TEMP TABLE rc_hot (ad_id VARCHAR, shard INTEGER)');
    const a = await this.conn.createAppender('rc_hot');
    for (const r of hot) {
      a.appendVarchar(String(r.ad_id));
      a.appendInteger(shardOfAd(String(r.ad_id)));
      a.endRow();
    }
    a.closeSync();
    await this.conn.run('UPDATE rc_raw SET shard = h.shard FROM rc_hot h WHERE rc_raw.ad_id = h.ad_id AND rc_raw.shard IS NULL');
  }

  /** Streams the stored counts into `rc_stored` through `fill`, which calls the append function per field. */
  async loadStored(fill: (append: StoredAppend) => Promise<void>): Promise<void> {
    await this.conn.run('CREATE OR REPLACE TEMP TABLE rc_stored (shard INTEGER, minute BIGINT, ad_id VARCHAR, n BIGINT)');
    const a = await this.conn.createAppender('rc_stored');
    try {
      await fill((shard, minute, adId, clicks) => {
        a.appendInteger(shard);
        a.appendBigInt(BigInt(minute));
        a.appendVarchar(adId);
        a.appendBigInt(BigInt(clicks));
        a.endRow();
      });
    } finally {
      a.closeSync();
    }
  }

  /** Compares the two sides for the minutes each shard closed (`closedThrough`: shard → last closed minute). */
  async compare(closedThrough: ReadonlyMap<number, number>): Promise<Comparison> {
    const closed = [...closedThrough].filter(([, c]) => Number.isFinite(c));
    await this.conn.run(
      closed.length === 0
        ? 'CREATE OR REPLACE TEMP TABLE rc_closed (shard INTEGER, closed BIGINT)'
        : `CREATE OR REPLACE TEMP TABLE rc_closed AS SELECT * FROM (VALUES ${closed.map(([s, c]) => `(${s}, ${Math.floor(c)})`).join(', ')}) t(shard, closed)`,
    );
    const joined = `
WITH s AS (SELECT shard, minute, ad_id, sum(n) AS n FROM rc_stored GROUP BY shard, minute, ad_id),
r AS (SELECT r.shard, r.minute, r.ad_id, r.clicks FROM rc_raw r JOIN rc_closed c ON c.shard = r.shard WHERE r.minute <= c.closed)
SELECT coalesce(r.shard, s.shard) AS shard, coalesce(r.minute, s.minute) AS minute, coalesce(r.ad_id, s.ad_id) AS ad_id,
       coalesce(r.clicks, 0) AS archive, coalesce(s.n, 0) AS stored
FROM r FULL OUTER JOIN s ON r.shard = s.shard AND r.minute = s.minute AND r.ad_id = s.ad_id
WHERE coalesce(r.clicks, 0) > 0 OR coalesce(s.n, 0) > 0`;
    await this.conn.run(`CREATE OR REPLACE TEMP TABLE rc_joined AS ${joined}`);
    const [stats] = (
      await this.conn.runAndReadAll(
        `SELECT count(*) AS checked, count(DISTINCT ad_id) AS ads, coalesce(sum(archive), 0) AS clicks, count(*) FILTER (WHERE archive <> stored) AS mismatches FROM rc_joined`,
      )
    ).getRowObjects();
    const [pending] = (
      await this.conn.runAndReadAll('SELECT count(*) AS n FROM rc_raw r LEFT JOIN rc_closed c ON c.shard = r.shard WHERE c.closed IS NULL OR r.minute > c.closed')
    ).getRowObjects();
    const rows = (
      await this.conn.runAndReadAll(
        `SELECT shard, minute, ad_id, archive, stored FROM rc_joined WHERE archive <> stored
         ORDER BY abs(stored - archive) DESC, minute, ad_id LIMIT ${MAX_MISMATCH_ROWS}`,
      )
    ).getRowObjects();
    const all: Mismatch[] = rows.map((r) => {
      const archive = Number(r.archive);
      const stored = Number(r.stored);
      return { ad_id: String(r.ad_id), minute: new Date(Number(r.minute) * 60_000).toISOString(), shard: Number(r.shard), archive, stored, diff: stored - archive };
    });
    return {
      ads: Number(stats?.ads ?? 0),
      checked_minutes: Number(stats?.checked ?? 0),
      pending_minutes: Number(pending?.n ?? 0),
      clicks: Number(stats?.clicks ?? 0),
      mismatches: Number(stats?.mismatches ?? 0),
      all,
    };
  }

  /** Drops the working tables (the connection may be reused). */
  async drop(): Promise<void> {
    for (const t of ['rc_raw', 'rc_hot', 'rc_stored', 'rc_closed', 'rc_joined']) await this.conn.run(`DROP TABLE IF EXISTS ${t}`);
  }
}
