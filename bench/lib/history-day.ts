/**
 * Scenario `history`, part 2: a generated day of clicks written straight into the raw archive's
 * layout with DuckDB SQL (generate_series → COPY … TO one zstd Parquet file per shard unit and
 * UTC hour, columns exactly RAW_COLUMNS, subject `<p>.clicks.<shard>` with the shard of
 * `shardOf`), ~1% duplicate copies (a click re-sent a little later: same click id, later stream
 * sequence), then the final counts the shard actors would have stored, put in the bench's Redis:
 * per shard and minute the hash `keys.counts(shard, minute, null, null)` ad → distinct clicks, the
 * meta hash (seq, closedThrough) and the archivers' progress (seq). The counts come from DuckDB
 * (GROUP BY over the distinct click ids), not from the code under test.
 */
import { mkdir, stat } from 'node:fs/promises';
import path from 'node:path';
import type { Redis } from 'ioredis';
import { shardOf } from '../../src/model/partition.ts';
import { duckConnection, sqlString } from '../../src/runtime/archive/duckdb.ts';
import { RAW_COLUMNS, rawFilePath } from '../../src/runtime/archive/layout.ts';
import { RedisKeys } from '../../src/runtime/redis-keys.ts';
import type { Ctx } from './context.ts';
import { int, mib, ms } from './stats.ts';

const HOUR_MS = 3_600_000;
const DAY_MS = 86_400_000;
const BATCH = 500;
const COUNTRIES = ['US', 'DE', 'FR', 'GB', 'JP', 'BR', 'IN', 'CA'];

export interface DaySpec {
  /** Original clicks (before duplicates). */
  clicks: number;
  ads: number;
  /** Duplicate copies per original click (0.01 = 1%). */
  dupFraction: number;
  day: string;
  prefix: string;
  shards: number;
  root: string;
}

export interface GeneratedDay {
  day: string;
  /** Rows in the archive (duplicates included). */
  rows: number;
  distinct: number;
  duplicates: number;
  ads: number;
  adsTouched: number;
  /** Ad-minutes with at least one click (= fields stored in Redis). */
  adMinutes: number;
  /** Count hashes (shard × minute) stored. */
  hashes: number;
  files: number;
  parquetBytes: number;
  generateMs: number;
  writeMs: number;
  countMs: number;
  loadMs: number;
  redisBefore: number;
  redisAfter: number;
  /** The day's counts as one zstd Parquet file (minute, ad_id, clicks), as an aggregate archive would keep them. */
  aggregateBytes: number;
  /** OBJECT ENCODING of one count hash (listpack or hashtable). */
  hashEncoding: string;
  /** Clicks of the busiest ad-minute and the top ad's share. */
  maxAdMinute: number;
  topAdShare: number;
  /** Per shard: last sequence (= meta seq = archive progress seq). */
  lastSeq: number[];
  /** Three ad-minutes with their true counts, for the mismatch injection. */
  samples: Array<{ shard: number; minute: number; ad: string; clicks: number }>;
}

/** `used_memory` of INFO memory. */
export async function usedMemory(rd: Redis): Promise<number> {
  return Number(/used_memory:(\d+)/.exec(await rd.info('memory'))?.[1] ?? NaN);
}

/** Generates the day into `spec.root` and stores its counts in Redis (see the module comment). */
export async function generateDay(ctx: Ctx, spec: DaySpec): Promise<GeneratedDay> {
  const rd = ctx.servers.rd;
  const keys = new RedisKeys(spec.prefix);
  const dayStart = Date.parse(`${spec.day}T00:00:00.000Z`);
  const N = spec.clicks;
  const D = Math.round(N * spec.dupFraction);
  const conn = await duckConnection();
  try {
    // The ads and their shards, computed here with the product's shardOf.
    ctx.progress.set({ phase: `history day: generating ${int(N + D)} clicks over ${int(spec.ads)} ads in DuckDB`, sent: 0, done: undefined, note: undefined });
    const t0 = Date.now();
    await conn.run('DROP TABLE IF EXISTS hist_ads; DROP TABLE IF EXISTS hist_day');
    await conn.run('CREATE TABLE hist_ads (rank INTEGER, ad_id VARCHAR, shard INTEGER)');
    const app = await conn.createAppender('hist_ads');
    for (let r = 1; r <= spec.ads; r++) {
      const ad = `ad${r}`;
      app.appendInteger(r);
      app.appendVarchar(ad);
      app.appendInteger(shardOf(ad, spec.shards));
      app.endRow();
    }
    app.flushSync();
    app.closeSync();
    // Originals i in [0, N) in arrival order, event time spread over the day; copies of
    // originals arriving up to 20,000 clicks later (ord between theirs). Zipf-ish popularity:
    // rank = floor(exp(u · ln(ads + 1))), i.e. P(rank = k) ≈ ln(1 + 1/k) / ln(ads + 1).
    const u = (seed: number): string => `((hash(cid, ${seed}) % 1000000007)::DOUBLE / 1000000007.0)`;
    await conn.run(`
      CREATE TABLE hist_day AS
      WITH src AS (
        SELECT i::BIGINT AS cid, i::DOUBLE AS ord FROM range(${N}) t(i)
        UNION ALL
        SELECT (hash(j, 3) % ${N})::BIGINT AS cid, (hash(j, 3) % ${N})::DOUBLE + 0.5 + (hash(j, 5) % 20000)::DOUBLE AS ord FROM range(${D}) t(j)
      ),
      c AS (
        SELECT cid, ord,
          least(${spec.ads}, greatest(1, floor(exp(${u(7)} * ln(${spec.ads + 1})))))::INTEGER AS rank,
          substr(md5(cid::VARCHAR), 1, 16) AS click_id,
          ${dayStart}::BIGINT + (cid * ${DAY_MS}) // ${N} AS ts,
          'u' || (hash(cid, 13) % 1000000)::VARCHAR AS user_id,
          '10.' || (hash(cid, 17) % 16)::VARCHAR || '.' || (hash(cid, 19) % 16)::VARCHAR || '.' || (hash(cid, 23) % 16)::VARCHAR AS ip,
          [${COUNTRIES.map(sqlString).join(', ')}][1 + (hash(cid, 29) % ${COUNTRIES.length})::INTEGER] AS country
        FROM src
      ),
      s AS (
        SELECT c.*, a.ad_id, a.shard, row_number() OVER (PARTITION BY a.shard ORDER BY c.ord) - 1 AS r
        FROM c JOIN hist_ads a USING (rank)
      )
      SELECT click_id, ad_id, ts, user_id, ip, country, NULL::VARCHAR AS attrs,
        ${sqlString(`${spec.prefix}.clicks.`)} || shard::VARCHAR AS subject,
        ((r // ${BATCH}) * ${spec.shards} + shard + 1)::UBIGINT AS seq,
        (r % ${BATCH})::INTEGER AS pos,
        shard, ts // ${HOUR_MS} AS hour
      FROM s ORDER BY shard, seq, pos`);
    const generateMs = Date.now() - t0;

    // One file per shard unit and hour, named by its sequence range, as the archiver writes them.
    const t1 = Date.now();
    const parts = (await conn.runAndReadAll(`SELECT shard, hour, min(seq) AS lo, max(seq) AS hi FROM hist_day GROUP BY ALL ORDER BY ALL`)).getRowObjects();
    const cols = RAW_COLUMNS.map(([c]) => c).join(', ');
    let files = 0;
    const written: string[] = [];
    for (const p of parts) {
      const file = rawFilePath(spec.root, `s${Number(p.shard)}`, Number(p.hour) * HOUR_MS, Number(p.lo), Number(p.hi));
      await mkdir(path.dirname(file), { recursive: true });
      await conn.run(
        `COPY (SELECT ${cols} FROM hist_day WHERE shard = ${Number(p.shard)} AND hour = ${Number(p.hour)} ORDER BY seq, pos) TO ${sqlString(file)} (FORMAT parquet, COMPRESSION zstd)`,
      );
      written.push(file);
      ctx.progress.set({ phase: 'history day: writing Parquet files (one per shard and hour)', done: ++files, note: `${files}/${parts.length} files` });
    }
    let parquetBytes = 0;
    for (const f of written) parquetBytes += (await stat(f)).size;
    const writeMs = Date.now() - t1;

    const totals = (
      await conn.runAndReadAll(`SELECT count(*) AS rows, count(DISTINCT click_id) AS distinct_ids, count(DISTINCT ad_id) AS ads FROM hist_day`)
    ).getRowObjects()[0]!;
    const lastSeq = new Array<number>(spec.shards).fill(0);
    for (const r of (await conn.runAndReadAll(`SELECT shard, max(seq) AS hi FROM hist_day GROUP BY shard`)).getRowObjects()) lastSeq[Number(r.shard)] = Number(r.hi);

    // The truth: distinct clicks per (shard, minute, ad), streamed to Redis one minute hash at a time.
    ctx.progress.set({ phase: 'history day: counting distinct clicks per ad-minute (DuckDB) into Redis', sent: 0, done: 0, note: undefined });
    const t2 = Date.now();
    const redisBefore = await usedMemory(rd);
    const result = await conn.stream(`
      SELECT shard, ts // 60000 AS minute, ad_id, count(DISTINCT click_id) AS n
      FROM hist_day GROUP BY ALL ORDER BY shard, minute`);
    let adMinutes = 0;
    let hashes = 0;
    let maxAdMinute = 0;
    const samples: GeneratedDay['samples'] = [];
    let key = '';
    let fields: string[] = [];
    let pipe = rd.pipeline();
    let queued = 0;
    const flushHash = (): void => {
      if (fields.length === 0) return;
      pipe.hset(key, ...fields);
      hashes++;
      queued += fields.length / 2;
      fields = [];
    };
    const sendPipe = async (): Promise<void> => {
      const res = (await pipe.exec()) ?? [];
      for (const [err] of res) if (err) throw err;
      pipe = rd.pipeline();
      queued = 0;
    };
    let countMs = 0;
    for (;;) {
      const tc = Date.now();
      const chunk = await result.fetchChunk();
      countMs += Date.now() - tc;
      if (!chunk || chunk.rowCount === 0) break;
      const [shards, minutes, ads, ns] = chunk.getColumns() as [number[], bigint[], string[], bigint[]];
      for (let i = 0; i < chunk.rowCount; i++) {
        const shard = Number(shards[i]);
        const minute = Number(minutes[i]);
        const k = keys.counts(shard, minute, null, null);
        if (k !== key) {
          flushHash();
          key = k;
          if (queued >= 50_000) await sendPipe();
        }
        const n = Number(ns[i]);
        fields.push(ads[i]!, String(n));
        adMinutes++;
        if (n > maxAdMinute) maxAdMinute = n;
        // A few ad-minutes from different shards and hours, for the mismatch injection.
        if (samples.length < 3 && (samples.length !== 1 || n > 5) && shard === (samples.length * 2) % spec.shards && minute % 1440 === 300 + samples.length * 400) samples.push({ shard, minute, ad: ads[i]!, clicks: n });
      }
      ctx.progress.set({ sent: adMinutes, done: adMinutes, note: `${int(hashes)} hashes` });
    }
    flushHash();
    await sendPipe();
    const redisAfter = await usedMemory(rd);
    const hashEncoding = String(await rd.object('ENCODING', keys.counts(0, dayStart / 60_000 + 720, null, null)));
    // The shards' positions as if every minute of the day were closed and applied, and the archivers caught up.
    const closed = dayStart / 60_000 + DAY_MS / 60_000 - 1;
    const p = rd.pipeline();
    for (let s = 0; s < spec.shards; s++) {
      p.hset(keys.meta(s), 'seq', String(lastSeq[s]), 'closedThrough', String(closed), 'watermark', String(dayStart + DAY_MS));
      p.hset(keys.archive(`a-s${s}`), 'seq', String(lastSeq[s]));
    }
    await p.exec();
    const loadMs = Date.now() - t2;
    // The counts as a Parquet file: what the aggregate archive (not built yet) would store per ad-minute.
    const aggFile = path.join(spec.root, 'aggregate-sample', `counts-${spec.day}.parquet`);
    await mkdir(path.dirname(aggFile), { recursive: true });
    await conn.run(
      `COPY (SELECT ts // 60000 AS minute, ad_id, count(DISTINCT click_id) AS clicks FROM hist_day GROUP BY ALL ORDER BY minute, ad_id) TO ${sqlString(aggFile)} (FORMAT parquet, COMPRESSION zstd)`,
    );
    const aggregateBytes = (await stat(aggFile)).size;
    const top = (await conn.runAndReadAll(`SELECT count(*) AS n FROM hist_day WHERE ad_id = 'ad1'`)).getRowObjects()[0]!;
    const out: GeneratedDay = {
      day: spec.day,
      rows: Number(totals.rows),
      distinct: Number(totals.distinct_ids),
      duplicates: Number(totals.rows) - Number(totals.distinct_ids),
      ads: spec.ads,
      adsTouched: Number(totals.ads),
      adMinutes,
      hashes,
      files,
      parquetBytes,
      generateMs,
      writeMs,
      countMs,
      loadMs,
      redisBefore,
      redisAfter,
      aggregateBytes,
      hashEncoding,
      maxAdMinute,
      topAdShare: Number(top.n) / Number(totals.rows),
      lastSeq,
      samples,
    };
    ctx.progress.log(
      `history day ${spec.day}: ${int(out.rows)} rows (${int(out.distinct)} distinct, ${int(out.duplicates)} duplicate copies), ${int(out.adsTouched)} ads, ` +
        `${int(adMinutes)} ad-minutes in ${int(hashes)} hashes (${hashEncoding}); ${files} files ${mib(parquetBytes)} = ${(parquetBytes / out.rows).toFixed(1)} B/click; ` +
        `Redis ${mib(redisBefore)} → ${mib(redisAfter)} = ${((redisAfter - redisBefore) / adMinutes).toFixed(1)} B/ad-minute; ` +
        `generate ${ms(generateMs)}, write ${ms(writeMs)}, count+load ${ms(loadMs)}`,
    );
    return out;
  } finally {
    await conn.run('DROP TABLE IF EXISTS hist_ads; DROP TABLE IF EXISTS hist_day').catch(() => undefined);
    conn.closeSync();
  }
}

/** A stored count broken on purpose, with the truth beside it. */
export interface InjectedMismatch {
  ad_id: string;
  minute: string;
  shard: number;
  archive: number;
  stored: number;
  how: string;
}

/** Breaks the stored totals of the day's three sample ad-minutes: +1, −5 (when it has over 5), deleted. */
export async function injectMismatches(rd: Redis, prefix: string, day: GeneratedDay): Promise<InjectedMismatch[]> {
  const keys = new RedisKeys(prefix);
  const out: InjectedMismatch[] = [];
  for (const [i, s] of day.samples.entries()) {
    const key = keys.counts(s.shard, s.minute, null, null);
    let stored = 0;
    let how = 'field deleted (stored 0)';
    if (i === 0) [stored, how] = [await rd.hincrby(key, s.ad, 1), 'stored +1'];
    else if (i === 1 && s.clicks > 5) [stored, how] = [await rd.hincrby(key, s.ad, -5), 'stored −5'];
    else await rd.hdel(key, s.ad);
    out.push({ ad_id: s.ad, minute: new Date(s.minute * 60_000).toISOString(), shard: s.shard, archive: s.clicks, stored, how });
  }
  return out;
}
