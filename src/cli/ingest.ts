import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { realpath, stat } from 'node:fs/promises';
import { deriveClickId, isLogLine, parseLogLine } from '../model/log-format.ts';
import { Progress } from './progress.ts';

export interface IngestCliOptions {
  url: string;
  batchLines: number;
  sourceId?: string | undefined;
  maxAttempts: number;
}

export interface IngestSummary {
  lines: number;
  accepted: number;
  rejected: number;
  byCode: Record<string, number>;
  samples: Array<{ file: string; line: number; code: string; error: string }>;
}

interface Pending {
  body: string[];
  lines: number[];
}

/**
 * `adagg ingest FILE...`: sends NDJSON and `[AdClickEvent] ...` log files (or stdin as `-`) to
 * POST /v1/clicks in batches. Log lines get a click_id derived from the file identity and the
 * line's byte offset, so running the command again on the same file never double counts.
 */
export async function ingestFiles(files: readonly string[], o: IngestCliOptions, out = process.stderr): Promise<IngestSummary> {
  const sum: IngestSummary = { lines: 0, accepted: 0, rejected: 0, byCode: {}, samples: [] };
  const reject = (file: string, line: number, code: string, error: string): void => {
    sum.rejected++;
    sum.byCode[code] = (sum.byCode[code] ?? 0) + 1;
    if (sum.samples.length < 20) sum.samples.push({ file, line, code, error });
  };
  for (const file of files.length ? files : ['-']) {
    const total = file === '-' ? 0 : (await stat(file)).size;
    const progress = new Progress(file, total, out);
    const identity = o.sourceId ?? (file === '-' ? 'stdin' : await realpath(file));
    let pending: Pending = { body: [], lines: [] };
    const flush = async (): Promise<void> => {
      if (pending.body.length === 0) return;
      const p = pending;
      pending = { body: [], lines: [] };
      const res = await post(o, p.body.join('\n'));
      sum.accepted += res.accepted;
      for (const r of res.rejected) reject(file, p.lines[r.line - 1] ?? r.line, r.code, r.error);
      progress.update({ accepted: sum.accepted, rejected: sum.rejected });
    };
    let firstLineHash: string | undefined;
    for await (const { text, offset, line } of readLines(file)) {
      sum.lines++;
      progress.advance(offset + Buffer.byteLength(text) + 1);
      const trimmed = text.trim();
      if (trimmed === '') continue;
      if (isLogLine(trimmed)) {
        // Identity = the file plus its first line, so a rotated file with the same name is a new source.
        firstLineHash ??= createHash('sha256').update(text).digest('hex').slice(0, 16);
        const parsed = parseLogLine(trimmed, deriveClickId(`${identity}#${firstLineHash}`, offset));
        if (!parsed.ok) {
          reject(file, line, parsed.rejection.code, parsed.rejection.error);
          continue;
        }
        pending.body.push(JSON.stringify(parsed.value));
      } else {
        firstLineHash ??= createHash('sha256').update(text).digest('hex').slice(0, 16);
        pending.body.push(trimmed);
      }
      pending.lines.push(line);
      if (pending.body.length >= o.batchLines) await flush();
    }
    await flush();
    progress.done({ accepted: sum.accepted, rejected: sum.rejected });
  }
  return sum;
}

async function* readLines(file: string): AsyncGenerator<{ text: string; offset: number; line: number }> {
  const stream = file === '-' ? process.stdin : createReadStream(file);
  let buf: Buffer = Buffer.alloc(0);
  let base = 0;
  let line = 0;
  for await (const chunk of stream as AsyncIterable<Buffer>) {
    buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
    let start = 0;
    for (let nl = buf.indexOf(10, start); nl >= 0; nl = buf.indexOf(10, start)) {
      line++;
      yield { text: buf.toString('utf8', start, nl).replace(/\r$/, ''), offset: base + start, line };
      start = nl + 1;
    }
    base += start;
    buf = buf.subarray(start);
  }
  if (buf.length > 0) yield { text: buf.toString('utf8').replace(/\r$/, ''), offset: base, line: line + 1 };
}

async function post(o: IngestCliOptions, body: string): Promise<{ accepted: number; rejected: Array<{ line: number; code: string; error: string }> }> {
  let lastErr = '';
  for (let attempt = 1; attempt <= o.maxAttempts; attempt++) {
    try {
      const res = await fetch(`${o.url}/v1/clicks`, { method: 'POST', headers: { 'content-type': 'application/x-ndjson' }, body });
      const json = (await res.json()) as { accepted?: number; rejected?: Array<{ line: number; code: string; error: string }>; code?: string; error?: string };
      if (res.ok || (res.status === 400 && Array.isArray(json.rejected))) return { accepted: json.accepted ?? 0, rejected: json.rejected ?? [] };
      lastErr = `${res.status} ${json.code ?? ''} ${json.error ?? ''}`;
      if (res.status < 500) break;
    } catch (err) {
      lastErr = (err as Error).message;
    }
    // Safe to resend: the same clicks give the same batch ids and click_ids.
    await new Promise((r) => setTimeout(r, Math.min(5000, 200 * 2 ** attempt)));
  }
  throw new Error(`POST ${o.url}/v1/clicks failed: ${lastErr}`);
}
