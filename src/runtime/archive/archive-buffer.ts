import { mkdir, open } from 'node:fs/promises';
import path from 'node:path';
import type { DuckDBAppender, DuckDBConnection } from '@duckdb/node-api';
import { AdaggError, ErrorCode } from '../../errors.ts';
import type { Click } from '../../model/click.ts';
import { duckConnection, sqlString } from './duckdb.ts';
import { DEAD_LETTER_COLUMNS, RAW_COLUMNS, deadLetterFilePath, rawFilePath, type ArchiveUnit } from './layout.ts';

const HOUR_MS = 3_600_000;

/** A file written to staging, and where it goes once its commit is recorded. */
export interface StagedFile {
  tmp: string;
  final: string;
  rows: number;
}

/** The staging folder of one archiver unit: files wait here, outside the Hive tree, until committed. */
export function stagingDir(root: string, unitId: string): string {
  return path.join(root, '_staging', unitId);
}

/** fsync a file or a folder, so a rename or a commit that names it survives a power cut. */
export async function fsyncPath(p: string): Promise<void> {
  const fh = await open(p, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/**
 * An archiver's rows since its last commit, in a table of this thread's DuckDB (appended through a
 * DuckDB appender, ~400k rows/s), written at a flush as one zstd Parquet file per UTC hour present
 * (raw clicks by event time `ts`, dead letters by arrival `at`) into the unit's staging folder.
 * Nothing here decides when rows are final: the archiver commits, then renames.
 *
 * The buffer owns its appender and its connection: `close()` interrupts a statement in flight,
 * waits for it to settle, then closes the appender, drops the table and closes the connection (the
 * last connection closes the instance, duckdb.ts). After `close()` no method touches DuckDB: each
 * throws ADAGG_E_ARCHIVE_CLOSED instead.
 */
export class ArchiveBuffer {
  private appender: DuckDBAppender | undefined;
  private count = 0;
  private closed = false;
  private closing: Promise<void> | undefined;
  /** Statements in flight on the connection (one at a time in practice: the archiver is serial). */
  private readonly inFlight = new Set<Promise<unknown>>();

  private constructor(
    private readonly conn: DuckDBConnection,
    private readonly table: string,
    private readonly unit: ArchiveUnit,
  ) {}

  /** A fresh, empty table for `unit` (the name is unique in this thread). */
  static async open(unit: ArchiveUnit, unitId: string): Promise<ArchiveBuffer> {
    const conn = await duckConnection();
    const table = `buf_${unitId.replace(/[^A-Za-z0-9]/g, '_')}_${Date.now().toString(36)}_${Math.random().toString(36).slice(2, 8)}`;
    const cols = (unit === 'dlq' ? DEAD_LETTER_COLUMNS : RAW_COLUMNS).map(([n, t]) => `"${n}" ${t}`).join(', ');
    const b = new ArchiveBuffer(conn, table, unit);
    try {
      await b.duck(() => conn.run(`CREATE TABLE ${table} (${cols})`));
      b.appender = await b.duck(() => conn.createAppender(table));
    } catch (err) {
      await b.close();
      throw err;
    }
    return b;
  }

  /** Rows buffered since the last clear. */
  get rows(): number {
    return this.count;
  }

  private closedError(): AdaggError {
    return new AdaggError(ErrorCode.ArchiveClosed, `archive buffer ${this.table} is closed`);
  }

  private app(): DuckDBAppender {
    if (this.closed || !this.appender) throw this.closedError();
    return this.appender;
  }

  /** Runs one DuckDB statement of this buffer, tracked so that close() can wait for it. */
  private async duck<T>(f: () => Promise<T>): Promise<T> {
    if (this.closed) throw this.closedError();
    const p = f();
    this.inFlight.add(p);
    try {
      return await p;
    } finally {
      this.inFlight.delete(p);
    }
  }

  /** The clicks of one stream message (`pos`: their index in it). */
  appendClicks(subject: string, seq: number, clicks: readonly Click[]): void {
    const a = this.app();
    const s = BigInt(seq);
    for (let pos = 0; pos < clicks.length; pos++) {
      const c = clicks[pos]!;
      a.appendVarchar(c.click_id);
      a.appendVarchar(c.ad_id);
      a.appendBigInt(BigInt(c.ts));
      varchar(a, c.user_id);
      varchar(a, c.ip);
      varchar(a, c.country);
      varchar(a, c.attrs ? JSON.stringify(c.attrs) : undefined);
      a.appendVarchar(subject);
      a.appendUBigInt(s);
      a.appendInteger(pos);
      a.endRow();
    }
    this.count += clicks.length;
  }

  /** One dead-letter record (the JSON of src/runtime/dead-letter.ts), flattened to DEAD_LETTER_COLUMNS. */
  appendDeadLetter(seq: number, at: number, data: Uint8Array): void {
    const r = deadLetterRow(data, at);
    const a = this.app();
    a.appendUBigInt(BigInt(seq));
    a.appendVarchar(r.reason);
    varchar(a, r.error);
    varchar(a, r.source);
    a.appendBigInt(BigInt(r.at));
    varchar(a, r.srcUnit);
    if (r.srcSeq === undefined) a.appendNull();
    else a.appendUBigInt(BigInt(r.srcSeq));
    const c = r.click;
    varchar(a, c?.click_id);
    varchar(a, c?.ad_id);
    if (typeof c?.ts === 'number' && Number.isSafeInteger(c.ts)) a.appendBigInt(BigInt(c.ts));
    else a.appendNull();
    varchar(a, c?.user_id);
    varchar(a, c?.ip);
    varchar(a, c?.country);
    varchar(a, c?.attrs ? JSON.stringify(c.attrs) : undefined);
    varchar(a, r.raw);
    if (r.rawBytes === undefined) a.appendNull();
    else a.appendBigInt(BigInt(r.rawBytes));
    varchar(a, r.rawSha256);
    a.endRow();
    this.count++;
  }

  /**
   * Writes the buffered rows of stream range [fromSeq, toSeq] as one Parquet file per UTC hour into
   * `staging` (named `<final name>.tmp-<epoch>`) and fsyncs them and the folder. Returns each staged
   * file with its final path; none when the buffer is empty.
   */
  async stage(root: string, staging: string, fromSeq: number, toSeq: number, epoch: number): Promise<StagedFile[]> {
    if (this.count === 0) return [];
    this.app().flushSync();
    // Quoted: AT is a keyword in DuckDB's SQL.
    const col = this.unit === 'dlq' ? '"at"' : '"ts"';
    const hours = (await this.duck(() => this.conn.runAndReadAll(`SELECT ${col} // ${HOUR_MS} AS h, count(*) AS n FROM ${this.table} GROUP BY h ORDER BY h`))).getRowObjects();
    await mkdir(staging, { recursive: true });
    const out: StagedFile[] = [];
    for (const row of hours) {
      const h = Number(row.h as bigint);
      const from = h * HOUR_MS;
      const final = this.unit === 'dlq' ? deadLetterFilePath(root, from, fromSeq, toSeq) : rawFilePath(root, this.unit, from, fromSeq, toSeq);
      const tmp = path.join(staging, `${path.basename(path.dirname(path.dirname(final)))}_${path.basename(path.dirname(final))}_${path.basename(final)}.tmp-${epoch}`);
      const order = this.unit === 'dlq' ? 'seq' : 'seq, pos';
      await this.duck(() =>
        this.conn.run(
          `COPY (SELECT * FROM ${this.table} WHERE ${col} >= ${from} AND ${col} < ${from + HOUR_MS} ORDER BY ${order}) TO ${sqlString(tmp)} (FORMAT parquet, COMPRESSION zstd)`,
        ),
      );
      await fsyncPath(tmp);
      out.push({ tmp, final, rows: Number(row.n as bigint) });
    }
    await fsyncPath(staging);
    return out;
  }

  /** Empties the buffer (after its files are committed, or to re-read the range). */
  async clear(): Promise<void> {
    this.app().closeSync();
    this.appender = undefined;
    await this.duck(() => this.conn.run(`DELETE FROM ${this.table}`));
    this.appender = await this.duck(() => this.conn.createAppender(this.table));
    this.count = 0;
  }

  /**
   * Releases every DuckDB object of the buffer, in order: interrupts a statement in flight and
   * waits for it, closes the appender, drops the table, closes the connection. Idempotent; never
   * throws (each step runs even when one before it failed).
   */
  close(): Promise<void> {
    this.closing ??= (async () => {
      this.closed = true;
      if (this.inFlight.size > 0) {
        try {
          this.conn.interrupt();
        } catch {
          // nothing to interrupt any more
        }
        await Promise.allSettled([...this.inFlight]);
      }
      const a = this.appender;
      this.appender = undefined;
      try {
        a?.closeSync();
      } catch {
        // the rows go with the table
      }
      await this.conn.run(`DROP TABLE IF EXISTS ${this.table}`).catch(() => undefined);
      this.conn.closeSync();
    })();
    return this.closing;
  }
}

function varchar(a: DuckDBAppender, v: string | undefined | null): void {
  if (typeof v === 'string') a.appendVarchar(v);
  else a.appendNull();
}

interface LetterRow {
  reason: string;
  error?: string;
  source?: string;
  at: number;
  srcUnit?: string;
  srcSeq?: number;
  click?: Partial<Click>;
  raw?: string;
  rawBytes?: number;
  rawSha256?: string;
}

const SHARD_SOURCE = /^shard (\d+) seq (\d+)$/;
const CHILD_SOURCE = /^hot child (\S+) seq (\d+)$/;

/**
 * A dead-letter record's columns. `src_unit`/`src_seq` come from an actor's source (`shard 3 seq
 * 17` → `s3`, 17; `hot child h…-1-0 seq 5` → `h…-1-0`, 5). A record that is not JSON is kept
 * whole in `raw` with reason `unreadable`, stamped with the stream's time `at`.
 */
export function deadLetterRow(data: Uint8Array, streamAt: number): LetterRow {
  const text = Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString('utf8');
  let j: Record<string, unknown>;
  try {
    const v: unknown = JSON.parse(text);
    if (!v || typeof v !== 'object' || Array.isArray(v)) throw new Error('not an object');
    j = v as Record<string, unknown>;
  } catch {
    return { reason: 'unreadable', at: streamAt, raw: text };
  }
  const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);
  const int = (v: unknown): number | undefined => (typeof v === 'number' && Number.isSafeInteger(v) ? v : undefined);
  const out: LetterRow = { reason: str(j.reason) ?? 'unknown', at: int(j.at) ?? streamAt };
  const set = <K extends keyof LetterRow>(k: K, v: LetterRow[K] | undefined): void => {
    if (v !== undefined) out[k] = v;
  };
  set('error', str(j.error));
  set('source', str(j.source));
  set('raw', str(j.raw));
  set('rawBytes', int(j.raw_bytes));
  set('rawSha256', str(j.raw_sha256));
  if (j.click && typeof j.click === 'object') out.click = j.click as Partial<Click>;
  const m = SHARD_SOURCE.exec(out.source ?? '') ?? CHILD_SOURCE.exec(out.source ?? '');
  if (m) {
    out.srcUnit = SHARD_SOURCE.test(out.source ?? '') ? `s${m[1]}` : m[1]!;
    out.srcSeq = Number(m[2]);
  }
  return out;
}
