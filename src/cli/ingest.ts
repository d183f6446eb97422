import { realpath, stat } from 'node:fs/promises';
import { isKeyLine, keyLineHash, lineRecord, readLines } from './ingest-lines.ts';
import { postClicks } from './ingest-post.ts';
import { Progress } from './progress.ts';

export interface IngestCliOptions {
  url: string;
  batchLines: number;
  sourceId?: string | undefined;
  maxAttempts: number;
  /** Bearer token for the gateway (scope `ingest`); none when the gateway runs with ADAGG_AUTH=off. */
  token?: string | undefined;
}

export interface IngestSummary {
  lines: number;
  /** Clicks stored and counted for the first time. */
  accepted: number;
  /** Clicks the gateway reported as already ingested (their batch was a JetStream duplicate publish). */
  duplicates: number;
  rejected: number;
  byCode: Record<string, number>;
  samples: Array<{ file: string; line: number; code: string; error: string }>;
}

/** Exit code of `adagg ingest` when lines were rejected (without --allow-rejects). */
export const EXIT_REJECTED = 3;

interface Pending {
  body: string[];
  lines: number[];
}

/**
 * `adagg ingest FILE...`: sends NDJSON and `[AdClickEvent] ...` log files (or stdin as `-`) to
 * POST /v1/clicks in batches. Log lines get a click_id derived from the file identity and the
 * line's byte offset, so running the command again on the same file never double counts.
 */
export async function ingestFiles(files: readonly string[], o: IngestCliOptions, out: NodeJS.WritableStream & { isTTY?: boolean } = process.stderr): Promise<IngestSummary> {
  const sum: IngestSummary = { lines: 0, accepted: 0, duplicates: 0, rejected: 0, byCode: {}, samples: [] };
  const reject = (file: string, line: number, code: string, error: string): void => {
    sum.rejected++;
    sum.byCode[code] = (sum.byCode[code] ?? 0) + 1;
    if (sum.samples.length < 20) sum.samples.push({ file, line, code, error });
  };
  const counts = (): Record<string, number> => ({ accepted: sum.accepted, duplicates: sum.duplicates, rejected: sum.rejected });
  for (const file of files.length ? files : ['-']) {
    const total = file === '-' ? 0 : (await stat(file)).size;
    const progress = new Progress(file, total, out);
    const identity = o.sourceId ?? (file === '-' ? 'stdin' : await realpath(file));
    let pending: Pending = { body: [], lines: [] };
    const flush = async (): Promise<void> => {
      if (pending.body.length === 0) return;
      const p = pending;
      pending = { body: [], lines: [] };
      const res = await postClicks(o, p.body.join('\n'));
      sum.accepted += res.accepted - res.duplicates;
      sum.duplicates += res.duplicates;
      for (const r of res.rejected) reject(file, p.lines[r.line - 1] ?? r.line, r.code, r.error);
      progress.update(counts());
    };
    let source: string | undefined;
    for await (const l of readLines(file)) {
      sum.lines++;
      progress.advance(l.offset + l.bytes + 1);
      // Identity = the file plus its first line, so a rotated file with the same name is a new source.
      if (source === undefined && isKeyLine(l)) source = `${identity}#${keyLineHash(l.text)}`;
      const rec = lineRecord(l, source ?? identity);
      if (rec.kind === 'skip') continue;
      if (rec.kind === 'reject') {
        reject(file, l.line, rec.code, rec.error);
        continue;
      }
      pending.body.push(rec.body);
      pending.lines.push(l.line);
      if (pending.body.length >= o.batchLines) await flush();
    }
    await flush();
    progress.done(counts());
  }
  return sum;
}

