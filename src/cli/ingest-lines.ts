/**
 * Lines of an ingest file as the gateway gets them, shared by `adagg ingest` and `adagg ingest
 * --follow` so that both give a log line the same click_id: hash(file identity # first line) +
 * the line's byte offset. Re-reading a file, one-shot or followed, never double counts.
 */
import { createReadStream } from 'node:fs';
import { createHash } from 'node:crypto';
import { isUtf8 } from 'node:buffer';
import { deriveClickId, isLogLine, parseLogLine } from '../model/log-format.ts';

/** One line of a file, without its newline. */
export interface FileLine {
  text: string;
  /** Byte offset of the line in the file. */
  offset: number;
  /** 1-based line number in what was read (since the start of the file, or of this read when following from an offset). */
  line: number;
  /** The line's length in bytes (without the newline). */
  bytes: number;
  /** False when the line's bytes are not valid UTF-8 (`text` then holds U+FFFD replacements). */
  wellFormed: boolean;
}

/** A line from its bytes (a trailing `\r` dropped). */
export function fileLine(bytes: Buffer, offset: number, line: number): FileLine {
  return { text: bytes.toString('utf8').replace(/\r$/, ''), offset, line, bytes: bytes.length, wellFormed: isUtf8(bytes) };
}

/**
 * Whether a line keys the file: the first non-blank, well-formed line. Its hash joins the file
 * identity in derived click ids, so a rotated or rewritten file with the same name is a new source.
 */
export function isKeyLine(l: FileLine): boolean {
  return l.wellFormed && l.text.trim() !== '';
}

/** The hash of a key line ({@link isKeyLine}). */
export function keyLineHash(text: string): string {
  return createHash('sha256').update(text).digest('hex').slice(0, 16);
}

/** What to do with one line: skip it (blank), refuse it here, or send this NDJSON body line. */
export type LineRecord = { kind: 'skip' } | { kind: 'reject'; code: string; error: string } | { kind: 'send'; body: string };

/**
 * The record for one line. `source` is `identity#keyLineHash` of the line's file; log lines get
 * click_id = deriveClickId(source, offset), NDJSON lines keep their own click_id.
 */
export function lineRecord(l: FileLine, source: string): LineRecord {
  // Decoding would turn invalid bytes into U+FFFD, so two ids differing only there would merge:
  // refused here, as the gateway refuses such a line.
  if (!l.wellFormed) return { kind: 'reject', code: 'bad_encoding', error: 'line is not valid UTF-8' };
  const trimmed = l.text.trim();
  if (trimmed === '') return { kind: 'skip' };
  if (!isLogLine(trimmed)) return { kind: 'send', body: trimmed };
  const parsed = parseLogLine(trimmed, deriveClickId(source, l.offset));
  if (!parsed.ok) return { kind: 'reject', code: parsed.rejection.code, error: parsed.rejection.error };
  return { kind: 'send', body: JSON.stringify(parsed.value) };
}

/** The lines of a file (`-`: stdin) with their byte offsets and numbers; a last line without a newline too. */
export async function* readLines(file: string): AsyncGenerator<FileLine> {
  const stream = file === '-' ? process.stdin : createReadStream(file);
  let buf: Buffer = Buffer.alloc(0);
  let base = 0;
  let line = 0;
  for await (const chunk of stream as AsyncIterable<Buffer>) {
    buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
    let start = 0;
    for (let nl = buf.indexOf(10, start); nl >= 0; nl = buf.indexOf(10, start)) {
      line++;
      yield fileLine(buf.subarray(start, nl), base + start, line);
      start = nl + 1;
    }
    base += start;
    buf = buf.subarray(start);
  }
  if (buf.length > 0) yield fileLine(buf, base, line + 1);
}
