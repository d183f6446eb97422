/**
 * `adagg backfill --from-dead-letters`: the clicks of archived dead letters with reason `too_old`
 * (refused by the gateway or by a shard actor as older than the correction horizon), optionally
 * only those whose event time is in [fromMs, toMs). Read with DuckDB from the dead-letter files.
 */
import path from 'node:path';
import { readdir } from 'node:fs/promises';
import type { Click } from '../../model/click.ts';
import { duckConnection, sqlString } from './duckdb.ts';
import { deadLetterDir } from './layout.ts';

/** Every finished dead-letter file. */
async function allLetterFiles(root: string): Promise<string[]> {
  const base = deadLetterDir(root);
  const out: string[] = [];
  const ls = (d: string): Promise<string[]> =>
    readdir(d).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return [] as string[];
      throw err;
    });
  for (const day of (await ls(base)).filter((x) => x.startsWith('date=')).sort()) {
    for (const hour of (await ls(path.join(base, day))).filter((x) => x.startsWith('hour=')).sort()) {
      for (const f of (await ls(path.join(base, day, hour))).filter((x) => x.endsWith('.parquet')).sort()) out.push(path.join(base, day, hour, f));
    }
  }
  return out;
}

/** The too-old clicks of the dead-letter archive (first letter per (ad, click id)), in letter order. */
export async function tooOldLetterClicks(root: string, fromMs?: number, toMs?: number): Promise<Click[]> {
  const files = await allLetterFiles(root);
  if (files.length === 0) return [];
  const range = [fromMs === undefined ? '' : `AND ts >= ${fromMs}`, toMs === undefined ? '' : `AND ts < ${toMs}`].join(' ');
  const conn = await duckConnection();
  try {
    const reader = await conn.runAndReadAll(`
SELECT click_id, ad_id, ts, user_id, ip, country, attrs FROM read_parquet([${files.map(sqlString).join(', ')}], hive_partitioning = false)
WHERE reason = 'too_old' AND click_id IS NOT NULL AND ad_id IS NOT NULL AND ts IS NOT NULL ${range}
QUALIFY row_number() OVER (PARTITION BY ad_id, click_id ORDER BY seq) = 1
ORDER BY seq`);
    return reader.getRows().map((r) => {
      const c: Click = { click_id: String(r[0]), ad_id: String(r[1]), ts: Number(r[2]) };
      if (r[3] !== null) c.user_id = String(r[3]);
      if (r[4] !== null) c.ip = String(r[4]);
      if (r[5] !== null) c.country = String(r[5]);
      if (r[6] !== null) c.attrs = JSON.parse(String(r[6])) as Record<string, string>;
      return c;
    });
  } finally {
    conn.closeSync();
  }
}
