/**
 * One followed path, like `tail -F`: reads complete lines from the acknowledged offset of the file
 * now open; when caught up, notices truncation (size below the offset, or the key line changed)
 * and rotation by rename (another inode at the path, or none): the old file is read to its end
 * first, then the new one is opened at 0. After a restart a file rotated away meanwhile is found
 * again by its inode in the same folder and finished before the new one.
 */
import { open, readdir, realpath, stat, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { fileLine, isKeyLine, keyLineHash, lineRecord, type FileLine } from '../ingest-lines.ts';
import type { TailPosition } from './tail-state.ts';

/** Bytes read per step: bounds memory; a longer line is refused in pieces. */
const READ_BYTES = 1 << 20;

/** Lines read in one step, ready to send: `endOffset` becomes the offset once they are acknowledged. */
export interface TailBatch {
  /** NDJSON lines for the gateway, each with its line's byte offset (for error reports). */
  records: Array<{ body: string; offset: number }>;
  /** Lines refused here (not UTF-8, malformed log lines, too long). */
  rejects: Array<{ offset: number; code: string; error: string }>;
  /** Lines read, blank ones included. */
  lines: number;
  endOffset: number;
}

/** What a tail noticed, for logs and metrics. */
export type TailNotice =
  | { kind: 'opened'; path: string; file: string; offset: number }
  | { kind: 'renamed'; path: string; left: number }
  | { kind: 'rotated'; path: string }
  | { kind: 'truncated'; path: string }
  | { kind: 'lost'; path: string; error: string };

export interface FileTailOptions {
  batchLines: number;
  notice: (n: TailNotice) => void;
}

export class FileTail {
  private fh: FileHandle | undefined;
  private pos: TailPosition | undefined;
  /** The file currently open is no longer at the path: finish it, then switch. */
  private draining = false;
  /** One read buffer per path: lines are decoded to strings before the next read. */
  private readonly buf = Buffer.allocUnsafe(READ_BYTES);

  constructor(
    /** The followed path (absolute). */
    readonly path: string,
    restored: TailPosition | undefined,
    private readonly o: FileTailOptions,
  ) {
    this.pos = restored;
  }

  /** Where this path stands (undefined before its file first appeared). */
  position(): TailPosition | undefined {
    return this.pos === undefined ? undefined : { ...this.pos };
  }

  /** The size of the file being read, for bytes behind (0 when none is open). */
  async size(): Promise<number> {
    return this.fh ? (await this.fh.stat()).size : 0;
  }

  /**
   * The next lines to send, or undefined when caught up. Handles truncation and rotation on the
   * way. Call {@link commit} with the batch once the gateway acknowledged it.
   */
  async next(): Promise<TailBatch | undefined> {
    // Bounded: each round either returns or changes the file or offset it reads.
    for (let round = 0; round < 4; round++) {
      if (!this.fh && !(await this.openAtStart())) return undefined;
      const keyed = this.pos!.key !== undefined;
      const batch = await this.read(this.draining);
      // Checked after reading: a file truncated and rewritten past the offset would otherwise give
      // its middle lines under the old key, and then all of them again from 0 under the new one.
      if (batch && keyed && !(await this.keyStillThere(this.pos!))) {
        this.truncated();
        continue;
      }
      if (batch) return batch;
      if (!(await this.checkFile())) return undefined;
    }
    return undefined;
  }

  /** The batch's lines are stored: advance the offset (the caller then saves the state). */
  commit(batch: TailBatch): void {
    if (this.pos) this.pos.offset = batch.endOffset;
  }

  async close(): Promise<void> {
    const fh = this.fh;
    this.fh = undefined;
    await fh?.close();
  }

  /** Opens the file to read first: the restored one (at its path or, rotated away, by inode), else the path at 0. */
  private async openAtStart(): Promise<boolean> {
    const at = await statOrUndefined(this.path);
    const pos = this.pos;
    if (pos && !(at && at.ino === pos.ino && at.dev === pos.dev)) {
      const old = await findByInode(path.dirname(this.path), pos.dev, pos.ino);
      // Only to resume it: read again from 0 under its new name, its lines would get new ids.
      if (old && (await this.openFile(old, pos, true))) {
        this.draining = true;
        return true;
      }
      this.o.notice({ kind: 'lost', path: this.path, error: `the file read before (inode ${pos.ino}) is gone; lines after offset ${pos.offset} of it were not sent` });
      this.pos = undefined;
    }
    if (!at) return false;
    return this.openFile(this.path, this.pos);
  }

  /** Opens `file` to resume at `pos` when it is still that file, else (unless `resumeOnly`) at 0 as a new source. */
  private async openFile(file: string, pos: TailPosition | undefined, resumeOnly = false): Promise<boolean> {
    let fh: FileHandle;
    try {
      fh = await open(file, 'r');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw err;
    }
    const st = await fh.stat();
    this.fh = fh;
    this.draining = false;
    const same = pos !== undefined && st.ino === pos.ino && st.dev === pos.dev && st.size >= pos.offset;
    if (same && (await this.keyStillThere(pos))) {
      this.pos = pos;
    } else if (resumeOnly) {
      await this.close();
      return false;
    } else {
      const identity = await realpath(file).catch(() => file);
      this.pos = { dev: st.dev, ino: st.ino, identity, offset: 0 };
    }
    this.o.notice({ kind: 'opened', path: this.path, file, offset: this.pos.offset });
    return true;
  }

  /**
   * Caught up with the complete lines: truncated → restart at 0 (true); rotated → finish the old
   * file's last unterminated line, then switch to the path (true); else false (wait).
   */
  private async checkFile(): Promise<boolean> {
    const fh = this.fh!;
    const pos = this.pos!;
    const st = await fh.stat();
    if (st.size < pos.offset || !(await this.keyStillThere(pos))) {
      this.truncated();
      return true;
    }
    if (this.draining) {
      if (st.size > pos.offset) return false; // the unterminated last line was returned; awaiting commit
      await this.close();
      this.draining = false;
      this.o.notice({ kind: 'rotated', path: this.path });
      this.pos = undefined;
      return (await statOrUndefined(this.path)) !== undefined;
    }
    const at = await statOrUndefined(this.path);
    if (at && at.ino === st.ino && at.dev === st.dev) return false;
    // Renamed away (or deleted): what is left of it, an unterminated last line included, comes first.
    this.o.notice({ kind: 'renamed', path: this.path, left: st.size - pos.offset });
    this.draining = true;
    return true;
  }

  /** The file was truncated (or rewritten): read it again from 0, as a new source once its key line is seen. */
  private truncated(): void {
    this.o.notice({ kind: 'truncated', path: this.path });
    this.pos = { ...this.pos!, offset: 0, key: undefined };
  }

  /** Whether the key line is still where it was (a truncated and rewritten file has another). */
  private async keyStillThere(pos: TailPosition): Promise<boolean> {
    if (!pos.key || !this.fh) return true;
    const buf = Buffer.alloc(pos.key.bytes);
    const { bytesRead } = await this.fh.read(buf, 0, buf.length, pos.key.offset);
    return bytesRead === buf.length && keyLineHash(fileLine(buf, 0, 0).text) === pos.key.hash;
  }

  /** Up to batchLines complete lines from the offset (with `final`, an unterminated last line too). */
  private async read(final: boolean): Promise<TailBatch | undefined> {
    const pos = this.pos!;
    const { bytesRead } = await this.fh!.read(this.buf, 0, READ_BYTES, pos.offset);
    if (bytesRead === 0) return undefined;
    const data = this.buf.subarray(0, bytesRead);
    const batch: TailBatch = { records: [], rejects: [], lines: 0, endOffset: pos.offset };
    let start = 0;
    const take = (l: FileLine): void => {
      batch.lines++;
      if (pos.key === undefined && isKeyLine(l)) pos.key = { offset: l.offset, bytes: l.bytes, hash: keyLineHash(l.text) };
      const rec = lineRecord(l, pos.key ? `${pos.identity}#${pos.key.hash}` : pos.identity);
      if (rec.kind === 'send') batch.records.push({ body: rec.body, offset: l.offset });
      else if (rec.kind === 'reject') batch.rejects.push({ offset: l.offset, code: rec.code, error: rec.error });
    };
    for (let nl = data.indexOf(10); nl >= 0 && batch.lines < this.o.batchLines; nl = data.indexOf(10, start)) {
      take(fileLine(data.subarray(start, nl), pos.offset + start, 0));
      start = nl + 1;
    }
    if (batch.lines === 0 && bytesRead === READ_BYTES) {
      // No newline in a whole read: refuse this piece so that memory stays bounded.
      batch.lines = 1;
      batch.rejects.push({ offset: pos.offset, code: 'invalid_field', error: `line longer than ${READ_BYTES} bytes` });
      start = bytesRead;
    } else if (batch.lines === 0 && final) {
      take(fileLine(data, pos.offset, 0));
      start = bytesRead;
    }
    if (batch.lines === 0) return undefined;
    batch.endOffset = pos.offset + start;
    return batch;
  }
}

async function statOrUndefined(p: string): Promise<{ dev: number; ino: number } | undefined> {
  try {
    return await stat(p);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/** A file in `dir` with this device and inode (a rotated `app.log.1`), if any. */
async function findByInode(dir: string, dev: number, ino: number): Promise<string | undefined> {
  for (const name of await readdir(dir).catch(() => [])) {
    const p = path.join(dir, name);
    const st = await statOrUndefined(p).catch(() => undefined);
    if (st && st.ino === ino && st.dev === dev) return p;
  }
  return undefined;
}
