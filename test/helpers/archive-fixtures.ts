/**
 * Raw-archive fixture files for reconciliation tests, written as the archiver writes them: the Hive
 * layout and columns of src/runtime/archive/layout.ts, Parquet through DuckDB COPY. Independent of
 * the archiver's code, so the reconcile tests check the layout contract, not one implementation.
 */
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { duckConnection, sqlString } from '../../src/runtime/archive/duckdb.ts';
import { DEAD_LETTER_COLUMNS, deadLetterFilePath, hourOf, RAW_COLUMNS, rawFilePath } from '../../src/runtime/archive/layout.ts';

export interface RawRow {
  click_id: string;
  ad_id: string;
  ts: number;
  user_id?: string | null;
  ip?: string | null;
  country?: string | null;
  attrs?: string | null;
  subject: string;
  seq: number;
  pos: number;
}

export interface DeadLetterRow {
  seq: number;
  reason: string;
  error?: string | null;
  source?: string | null;
  at: number;
  src_unit?: string | null;
  src_seq?: number | null;
  click_id?: string | null;
  ad_id?: string | null;
  ts?: number | null;
}

function literal(v: unknown): string {
  if (v === undefined || v === null) return 'NULL';
  if (typeof v === 'number') return String(v);
  return sqlString(String(v));
}

let tables = 0;

/** Writes `rows` into files of `columns` at the path each hour group gets; returns the paths. */
async function writeGrouped<R extends object>(
  columns: ReadonlyArray<readonly [string, string]>,
  rows: readonly R[],
  timeOf: (r: R) => number,
  seqOf: (r: R) => number,
  fileOf: (hourMs: number, from: number, to: number) => string,
): Promise<string[]> {
  const byHour = new Map<number, R[]>();
  for (const r of rows) {
    const h = hourOf(timeOf(r));
    byHour.set(h, [...(byHour.get(h) ?? []), r]);
  }
  const conn = await duckConnection();
  const out: string[] = [];
  try {
    for (const [hour, group] of byHour) {
      const seqs = group.map(seqOf);
      const file = fileOf(hour, Math.min(...seqs), Math.max(...seqs));
      await mkdir(path.dirname(file), { recursive: true });
      const t = `fixture_${process.pid}_${++tables}`;
      await conn.run(`CREATE TEMP TABLE ${t} (${columns.map(([n, ty]) => `"${n}" ${ty}`).join(', ')})`);
      const values = group.map((r) => `(${columns.map(([n]) => literal((r as Record<string, unknown>)[n])).join(', ')})`).join(',\n');
      await conn.run(`INSERT INTO ${t} VALUES ${values}`);
      await conn.run(`COPY ${t} TO ${sqlString(file)} (FORMAT parquet, COMPRESSION zstd)`);
      await conn.run(`DROP TABLE ${t}`);
      out.push(file);
    }
  } finally {
    conn.closeSync();
  }
  return out;
}

/** Raw click files of one archiver unit (`s0`, `hot`), one per UTC hour of `ts`, named by the seq range. */
export function writeRawFiles(root: string, unit: `s${number}` | 'hot', rows: readonly RawRow[]): Promise<string[]> {
  return writeGrouped(RAW_COLUMNS, rows, (r) => r.ts, (r) => r.seq, (h, a, b) => rawFilePath(root, unit, h, a, b));
}

/** Dead-letter files, one per UTC hour of `at`. */
export function writeDeadLetterFiles(root: string, rows: readonly DeadLetterRow[]): Promise<string[]> {
  return writeGrouped(DEAD_LETTER_COLUMNS, rows, (r) => r.at, (r) => r.seq, (h, a, b) => deadLetterFilePath(root, h, a, b));
}
