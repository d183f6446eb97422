/**
 * The audit log of changes to sealed minutes (issue 10): durable and append-only, one JSON line per
 * `recompute --apply` or `backfill` run that changed something, in
 * `<ADAGG_ARCHIVE_DIR>/audit/YYYY-MM.jsonl` (month of the run, UTC). Each append is fsynced (and
 * the folder, when the month's file is new) before the run reports success. Read by `adagg audit`
 * and `GET /v1/audit`, bounded.
 */
import { randomUUID } from 'node:crypto';
import { mkdir, open, readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { fsyncPath } from './archive-buffer.ts';

/** One changed field as the audit log keeps it. */
export interface AuditChange {
  ad_id: string;
  /** ISO start of the minute. */
  minute: string;
  /** null: the ad's total. */
  dim: string | null;
  value: string | null;
  old: number;
  new: number;
}

/** One apply run. */
export interface AuditRecord {
  id: string;
  /** ISO time of the run. */
  at: string;
  /** Who ran it (--by, else $USER). */
  by: string;
  /** Why (required). */
  reason: string;
  /** The command line, e.g. `adagg recompute --from … --apply`. */
  command: string;
  cause: 'recompute' | 'backfill';
  from: string;
  to: string;
  /** The ads named (null: all). */
  ads: string[] | null;
  changes: AuditChange[];
}

/** The audit folder under the archive folder. */
export function auditDir(archiveDir: string): string {
  return path.join(archiveDir, 'audit');
}

/** A new record's id. */
export function auditId(): string {
  return randomUUID();
}

/** Appends one record to its month's file and fsyncs it. */
export async function appendAudit(archiveDir: string, r: AuditRecord): Promise<string> {
  const dir = auditDir(archiveDir);
  await mkdir(dir, { recursive: true });
  const file = path.join(dir, `${r.at.slice(0, 7)}.jsonl`);
  const fh = await open(file, 'a');
  let created = false;
  try {
    created = (await fh.stat()).size === 0;
    await fh.write(`${JSON.stringify(r)}\n`);
    await fh.sync();
  } finally {
    await fh.close();
  }
  if (created) await fsyncPath(dir);
  return file;
}

export interface AuditQuery {
  /** Records at or after (epoch ms); undefined: from the start. */
  fromMs?: number | undefined;
  /** Records before (epoch ms); undefined: to now. */
  toMs?: number | undefined;
  /** Most records returned (the newest are kept). @default 100 */
  limit?: number | undefined;
  /** Most changes returned per record (the rest are counted in `changes_total`). @default 1000 */
  maxChanges?: number | undefined;
}

export interface AuditRead {
  records: Array<AuditRecord & { changes_total: number; changes_truncated: boolean }>;
  /** More records matched than `limit`. */
  truncated: boolean;
}

/** Reads the records of [fromMs, toMs) (only the month files that can hold them), oldest first. */
export async function readAudit(archiveDir: string, q: AuditQuery = {}): Promise<AuditRead> {
  const limit = q.limit ?? 100;
  const maxChanges = q.maxChanges ?? 1000;
  const dir = auditDir(archiveDir);
  const names = await readdir(dir).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return [] as string[];
    throw err;
  });
  const fromMonth = q.fromMs === undefined ? '' : new Date(q.fromMs).toISOString().slice(0, 7);
  const toMonth = q.toMs === undefined ? '9999-99' : new Date(q.toMs).toISOString().slice(0, 7);
  const matched: AuditRecord[] = [];
  for (const n of names.filter((x) => /^\d{4}-\d{2}\.jsonl$/.test(x)).sort()) {
    const month = n.slice(0, 7);
    if (month < fromMonth || month > toMonth) continue;
    const text = await readFile(path.join(dir, n), 'utf8');
    for (const line of text.split('\n')) {
      if (line.trim() === '') continue;
      let r: AuditRecord;
      try {
        r = JSON.parse(line) as AuditRecord;
      } catch {
        continue; // a torn last line of a crash mid-append: never acknowledged, not a record
      }
      const at = Date.parse(r.at);
      if (q.fromMs !== undefined && at < q.fromMs) continue;
      if (q.toMs !== undefined && at >= q.toMs) continue;
      matched.push(r);
    }
  }
  const kept = matched.slice(-limit);
  return {
    records: kept.map((r) => ({ ...r, changes: r.changes.slice(0, maxChanges), changes_total: r.changes.length, changes_truncated: r.changes.length > maxChanges })),
    truncated: matched.length > kept.length,
  };
}
