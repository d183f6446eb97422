/**
 * `adagg ingest --follow PATH...`: follows growing log / NDJSON files like `tail -F` (rotation by
 * rename and by truncation, src/cli/tail/file-tail.ts) and sends their lines to POST /v1/clicks.
 * Offsets are durable (src/cli/tail/tail-state.ts) and written only after the gateway acknowledged
 * the lines before them; a restart resumes there. Lines sent again after a crash carry the same
 * click ids (file identity + offset for log lines, their own click_id for NDJSON), so counts stay
 * exact. Changes are noticed through fs.watch on the folders, and by polling every
 * `pollIntervalMs` in case a watch event is missed.
 */
import { watch, type FSWatcher } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { postClicks, PostFailed } from './ingest-post.ts';
import { FileTail, type TailBatch, type TailNotice } from './tail/file-tail.ts';
import { TailMetrics } from './tail/tail-metrics.ts';
import { loadTailState, saveTailState, type TailStateFile } from './tail/tail-state.ts';

export interface FollowOptions {
  url: string;
  token?: string | undefined;
  batchLines: number;
  /** The offsets file. */
  stateFile: string;
  /** Longest wait between two looks at the files when no watch event came. */
  pollIntervalMs: number;
  /** Serve GET /metrics here; undefined: no endpoint. */
  metricsPort?: number | undefined;
  metricsHost: string;
  /** A status line per file this often (0: never). */
  statusEveryMs: number;
  /** Stops following (Ctrl-C, SIGTERM): the batch in flight is finished or dropped unacknowledged. */
  signal: AbortSignal;
  /** Progress and notices. */
  out: NodeJS.WritableStream;
  /** Called once the metrics endpoint listens (its port). */
  onListening?: (port: number) => void;
}

/** Per file, since this follower started. */
export interface FollowFileSummary {
  read: number;
  accepted: number;
  duplicates: number;
  rejected: number;
  byCode: Record<string, number>;
}

/** Follows `paths` until `o.signal` aborts; returns what was sent, per path. */
export async function followFiles(paths: readonly string[], o: FollowOptions): Promise<Record<string, FollowFileSummary>> {
  const files = [...new Set(paths.map((p) => path.resolve(p)))];
  await mkdir(path.dirname(path.resolve(o.stateFile)), { recursive: true });
  const run = new FollowRun(files, o, await loadTailState(o.stateFile));
  return run.run();
}

/** One run of the follower: its tails, state, metrics and counts. */
class FollowRun {
  private readonly metrics = new TailMetrics();
  private readonly summary: Record<string, FollowFileSummary>;
  private readonly tails: FileTail[];
  private saved: string;
  private lastStatus = Date.now();
  private wake: (() => void) | undefined;

  constructor(
    private readonly files: string[],
    private readonly o: FollowOptions,
    private readonly state: TailStateFile,
  ) {
    this.summary = Object.fromEntries(files.map((f) => [f, { read: 0, accepted: 0, duplicates: 0, rejected: 0, byCode: {} }]));
    this.tails = files.map((f) => new FileTail(f, state.files[f], { batchLines: o.batchLines, notice: (n) => this.notice(n) }));
    this.saved = JSON.stringify(state);
  }

  async run(): Promise<Record<string, FollowFileSummary>> {
    const { o } = this;
    const poke = (): void => this.wake?.();
    const watchers: FSWatcher[] = [];
    for (const dir of new Set(this.files.map((f) => path.dirname(f)))) {
      try {
        // Directory events cover appends, renames and new files at the path (inotify on Linux).
        watchers.push(watch(dir, poke).on('error', () => undefined));
      } catch {
        // No watch (e.g. a network file system): polling alone.
      }
    }
    o.signal.addEventListener('abort', poke, { once: true });
    try {
      const server = o.metricsPort === undefined ? undefined : await this.metrics.serve(o.metricsHost, o.metricsPort);
      if (server) o.onListening?.(server.port);
      try {
        while (!o.signal.aborted) {
          const progressed = await this.pass();
          await this.save();
          await this.gauges();
          await this.status();
          if (!progressed && !o.signal.aborted) await this.idle();
        }
      } finally {
        await server?.close();
      }
    } finally {
      for (const w of watchers) w.close();
      await Promise.all(this.tails.map((t) => t.close()));
    }
    return this.summary;
  }

  /** One batch per path; true if any was acknowledged. */
  private async pass(): Promise<boolean> {
    let progressed = false;
    for (const t of this.tails) {
      const b = await t.next();
      if (!b || this.o.signal.aborted) continue;
      try {
        await this.send(t, b);
      } catch (err) {
        if (err instanceof PostFailed && this.o.signal.aborted) break; // stopped mid-batch: not acknowledged, sent again next time
        throw err;
      }
      t.commit(b);
      progressed = true;
      await this.save();
    }
    return progressed;
  }

  /** Until a watch event, the poll interval, or the stop. */
  private async idle(): Promise<void> {
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, this.o.pollIntervalMs);
      this.wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });
    this.wake = undefined;
  }

  private say(line: string): void {
    this.o.out.write(`${line}\n`);
  }

  private notice(n: TailNotice): void {
    if (n.kind === 'opened') this.say(`${n.path}: reading ${n.file === n.path ? '' : `${n.file} (rotated) `}from offset ${n.offset}`);
    else if (n.kind === 'lost') this.say(`${n.path}: ${n.error}`);
    else if (n.kind === 'renamed') this.say(`${n.path}: renamed away, old file read to its end${n.left > 0 ? ` but an unterminated last line (${n.left} bytes), sent as a line` : ''}`);
    else {
      this.say(`${n.path}: ${n.kind === 'rotated' ? 'rotated (rename): the old file is finished, reading the new one' : 'truncated: reading from offset 0'}`);
      this.metrics.rotations.inc({ file: n.path, kind: n.kind === 'rotated' ? 'rename' : 'truncate' });
    }
  }

  /** Posts a batch (retried until acknowledged or stopped) and counts its outcome. */
  private async send(t: FileTail, b: TailBatch): Promise<void> {
    const { metrics, o } = this;
    const s = this.summary[t.path]!;
    const reject = (offset: number | undefined, code: string, error: string): void => {
      s.rejected++;
      s.byCode[code] = (s.byCode[code] ?? 0) + 1;
      metrics.rejected.inc({ file: t.path, code });
      if (s.rejected <= 20) this.say(`${t.path}@${offset ?? '?'}: ${code} ${error}`);
    };
    if (b.records.length > 0) {
      const onRetry = (err: string): void => {
        metrics.postFailures.inc();
        this.say(`${t.path}: ${err}; retrying`);
      };
      const res = await postClicks({ url: o.url, token: o.token, maxAttempts: Infinity, signal: o.signal, onRetry }, b.records.map((r) => r.body).join('\n'));
      s.accepted += res.accepted - res.duplicates;
      s.duplicates += res.duplicates;
      metrics.accepted.inc({ file: t.path }, res.accepted - res.duplicates);
      metrics.duplicate.inc({ file: t.path }, res.duplicates);
      for (const r of res.rejected) reject(b.records[r.line - 1]?.offset, r.code, r.error);
    }
    for (const r of b.rejects) reject(r.offset, r.code, r.error);
    s.read += b.lines;
    metrics.read.inc({ file: t.path }, b.lines);
  }

  /** Writes the state file if a position changed. */
  private async save(): Promise<void> {
    for (const t of this.tails) {
      const p = t.position();
      if (p) this.state.files[t.path] = p;
      else delete this.state.files[t.path];
    }
    const text = JSON.stringify(this.state);
    if (text === this.saved) return;
    await saveTailState(this.o.stateFile, this.state);
    this.saved = text;
  }

  private async gauges(): Promise<void> {
    for (const t of this.tails) {
      const offset = t.position()?.offset ?? 0;
      this.metrics.offset.set({ file: t.path }, offset);
      this.metrics.behind.set({ file: t.path }, Math.max(0, (await t.size()) - offset));
    }
  }

  private async status(): Promise<void> {
    if (this.o.statusEveryMs <= 0 || Date.now() - this.lastStatus < this.o.statusEveryMs) return;
    this.lastStatus = Date.now();
    for (const t of this.tails) {
      const s = this.summary[t.path]!;
      const offset = t.position()?.offset ?? 0;
      this.say(`${t.path}: offset ${offset} behind ${Math.max(0, (await t.size()) - offset)} B read=${s.read} accepted=${s.accepted} duplicates=${s.duplicates} rejected=${s.rejected}`);
    }
  }
}
