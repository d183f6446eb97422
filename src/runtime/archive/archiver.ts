/**
 * The raw archiver (docs/history.md#raw-archive): one per shard subject, plus one for the hot child
 * subjects and one for the dead-letter stream, run beside the shard actor they follow and
 * supervised like it. Each click message of its subjects ends up in exactly one Parquet file row
 * per click, also across SIGKILLs:
 *
 * 1. rows are buffered in DuckDB (archive-buffer.ts) from the committed sequence + 1;
 * 2. at a flush (every `archiveFlushMs`, at `archiveFileClicks` rows, and at a stop) the rows are
 *    written as one file per UTC hour into the unit's staging folder and fsynced;
 * 3. ONE fenced Redis step records the new sequence and the staged → final pairs (archive-progress.ts);
 * 4. then each file is renamed to its final path and the folders fsynced.
 *
 * A crash before 3 leaves staged files nobody recorded: the next incarnation deletes them and
 * reads the range again. A crash after 3 leaves the recorded pairs: the next incarnation completes
 * the renames. Rows reach a final name only after the step that moved the sequence past them.
 *
 * A stop is bounded (`stopMs`): reading stops, one last flush runs, and if Redis or NATS does not
 * let it finish in time the incarnation gives up, like a crash before 3 (or after it, if the
 * commit still lands): the next owner recovers. Then its DuckDB buffer is closed (a statement in
 * flight interrupted and awaited first), and nothing of the incarnation touches DuckDB afterwards,
 * so a worker thread can end right after (docs/history.md#shutdown).
 */
import { rm } from 'node:fs/promises';
import type { NatsConnection } from '@nats-io/transport-node';
import type { Redis } from 'ioredis';
import { AdaggError, ErrorCode } from '../../errors.ts';
import { decodeBatch } from '../../model/batch-codec.ts';
import { isControlMessage } from '../../model/hot-messages.ts';
import { isRiskMessage } from '../../model/risk-messages.ts';
import type { Clock, TimerHandle } from '../clock.ts';
import type { RuntimeEvents } from '../events.ts';
import type { Logger } from '../logger.ts';
import type { RedisKeys } from '../redis-keys.ts';
import { ArchiveBuffer, stagingDir } from './archive-buffer.ts';
import { ArchiveFeed, type ArchiveMessage } from './archive-feed.ts';
import { ArchiveProgress, clearStaging, completeRenames, rangeStart, removeFinals } from './archive-progress.ts';
import type { ArchiveUnit } from './layout.ts';

/** What one archiver reads and where it writes. */
export interface ArchiverSpec {
  /** Layout unit: `s<shard>`, `hot` or `dlq` (file names). */
  unit: ArchiveUnit;
  stream: string;
  /** Subject filter of its ordered consumer. */
  filter: string;
}

export interface ArchiverDeps {
  nc: NatsConnection;
  redis: Redis;
  keys: RedisKeys;
  clock: Clock;
  log: Logger;
  events: RuntimeEvents;
  /** Absolute archive folder. */
  root: string;
  flushMs: number;
  fileClicks: number;
  /** A stop's final flush gives up after this long (ADAGG_ARCHIVE_STOP_MS). @default 5000 */
  stopMs?: number;
}

const DEFAULT_STOP_MS = 5000;

/** Progress unit id of an archiver: `a-s3`, `a-hot`, `a-dlq` (its Redis tag and epoch key). */
export function archiverUnitId(unit: ArchiveUnit): string {
  return `a-${unit}`;
}

/** The host of one archiver: each `run` is one incarnation (new epoch, recovery, read, flushes). */
export class Archiver {
  readonly unitId: string;
  constructor(
    private readonly spec: ArchiverSpec,
    private readonly deps: ArchiverDeps,
  ) {
    this.unitId = archiverUnitId(spec.unit);
  }

  /**
   * Runs until `signal` aborts (then flushes what it holds, within `stopMs`) or something fails
   * (then throws). A stop during recovery returns at once: nothing is buffered yet.
   */
  async run(signal: AbortSignal): Promise<void> {
    const recovered = await untilAborted(ArchiverIncarnation.recover(this.spec, this.deps, this.unitId, signal), signal);
    if (!recovered || signal.aborted) return;
    const inc = await ArchiverIncarnation.open(recovered);
    await inc.run(signal);
  }
}

/** What recovery hands to an incarnation. */
interface Recovered {
  spec: ArchiverSpec;
  deps: ArchiverDeps;
  unitId: string;
  progress: ArchiveProgress;
  epoch: number;
  seq: number;
  feed: ArchiveFeed;
}

/** `p`'s value, or undefined as soon as `signal` aborts (p then runs on, its failure ignored). */
function untilAborted<T>(p: Promise<T>, signal: AbortSignal): Promise<T | undefined> {
  p.catch(() => undefined);
  if (signal.aborted) return Promise.resolve(undefined);
  return new Promise<T | undefined>((resolve, reject) => {
    const onAbort = (): void => resolve(undefined);
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (err: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(err);
      },
    );
  });
}

class ArchiverIncarnation {
  /** Last sequence whose message is in the buffer (or committed). */
  private lastSeq: number;
  private lastPending = -1;
  private lastFlushAt: number;
  private chain: Promise<void> = Promise.resolve();
  private failure: ((err: unknown) => void) | undefined;
  private timer: TimerHandle | undefined;
  private stopping = false;
  /** Set once the incarnation ends (or gives up its stop): queued and late steps touch nothing. */
  private closed = false;
  private readonly staging: string;
  private readonly log: Logger;

  private constructor(
    private readonly spec: ArchiverSpec,
    private readonly deps: ArchiverDeps,
    private readonly unitId: string,
    private readonly progress: ArchiveProgress,
    private readonly epoch: number,
    private committedSeq: number,
    private readonly buffer: ArchiveBuffer,
    private readonly feed: ArchiveFeed,
  ) {
    this.lastSeq = committedSeq;
    this.lastFlushAt = deps.clock.now();
    this.staging = stagingDir(deps.root, unitId);
    this.log = deps.log.child({ archiver: unitId, epoch });
  }

  /**
   * Takes a new epoch, then recovers: finish recorded renames, drop unrecorded staged files. Only
   * Redis, NATS and files: no DuckDB. Stops early (undefined) once `signal` aborted, so a recovery
   * its stop gave up on changes nothing more.
   */
  static async recover(spec: ArchiverSpec, deps: ArchiverDeps, unitId: string, signal: AbortSignal): Promise<Recovered | undefined> {
    const progress = new ArchiveProgress(deps.redis, deps.keys, unitId);
    const epoch = await progress.acquire();
    const stored = await progress.read();
    if (signal.aborted) return undefined;
    let seq = stored.seq;
    const missing = await completeRenames(stored.pending);
    if (missing.length > 0) {
      // Archive the last commit's range again; its surviving files would then hold rows twice.
      const from = rangeStart(stored.pending) ?? seq + 1;
      deps.log.error(
        { code: ErrorCode.ArchiveFileMissing, archiver: unitId, missing: missing.map((p) => p[1]), rearchiveFrom: from },
        'archive file missing: archiving its range again',
      );
      if (signal.aborted) return undefined;
      await removeFinals(stored.pending);
      seq = from - 1;
      await progress.commit(epoch, { seq, pending: [], rows: 0, files: 0, rewind: true });
    }
    if (signal.aborted) return undefined;
    const cleared = await clearStaging(stagingDir(deps.root, unitId));
    if (cleared > 0) deps.log.info({ archiver: unitId, files: cleared }, 'archiver removed unrecorded staged files');
    const feed = new ArchiveFeed(deps.nc, spec.stream, spec.filter);
    const { first } = await feed.bounds();
    if (first > seq + 1) {
      deps.log.error(
        { code: ErrorCode.ArchiveGap, archiver: unitId, archivedThrough: seq, streamFirst: first },
        'archive gap: stream retention removed messages before they were archived',
      );
      deps.events.emit('archive', { unit: unitId, seq, pending: -1, gap: true });
    }
    return { spec, deps, unitId, progress, epoch, seq, feed };
  }

  /** The incarnation, with its own DuckDB buffer (local: never abandoned half-open). */
  static async open(r: Recovered): Promise<ArchiverIncarnation> {
    const buffer = await ArchiveBuffer.open(r.spec.unit, r.unitId);
    return new ArchiverIncarnation(r.spec, r.deps, r.unitId, r.progress, r.epoch, r.seq, buffer, r.feed);
  }

  async run(signal: AbortSignal): Promise<void> {
    const failed = new Promise<never>((_, reject) => (this.failure = reject));
    let stopBy: number | undefined;
    failed.catch(() => undefined);
    const stopped = new Promise<void>((resolve) => {
      if (signal.aborted) resolve();
      else signal.addEventListener('abort', () => resolve(), { once: true });
    });
    try {
      this.deps.events.emit('archive', { unit: this.unitId, seq: this.committedSeq, pending: -1 });
      await this.feed.start(
        this.committedSeq + 1,
        (m) => this.serial(() => this.onMessage(m)),
        (err) => this.failure?.(err),
      );
      this.schedule();
      await Promise.race([stopped, failed]);
      // Stopping: no more messages, then one last flush, so a clean stop leaves no staged file;
      // within the bound, or the next owner recovers (as after a crash).
      this.stopping = true;
      if (this.timer) this.deps.clock.clearTimeout(this.timer);
      const stopMs = this.deps.stopMs ?? DEFAULT_STOP_MS;
      stopBy = this.deps.clock.now() + stopMs;
      const done = await this.within(
        (async () => {
          await this.feed.stop();
          await Promise.race([this.serial(() => this.flush()), failed]);
        })(),
        stopMs,
      );
      if (!done) {
        this.log.warn({ stopMs, committedSeq: this.committedSeq, rows: this.buffer.rows }, 'archiver stop gave up its final flush: the next owner archives the range');
      }
    } finally {
      this.closed = true;
      if (this.timer) this.deps.clock.clearTimeout(this.timer);
      // Within the same bound: the read loop may wait behind a step stuck on Redis (that step then
      // finds the incarnation closed and stops).
      stopBy ??= this.deps.clock.now() + (this.deps.stopMs ?? DEFAULT_STOP_MS);
      await this.within(this.feed.stop(), Math.max(0, stopBy - this.deps.clock.now()));
      await this.buffer.close();
      this.deps.events.emit('archive', { unit: this.unitId, seq: -1, pending: -1, stopped: true });
    }
  }

  /** Whether `p` settled within `ms` (its failure propagates; after the bound it is ignored). */
  private within(p: Promise<unknown>, ms: number): Promise<boolean> {
    p.catch(() => undefined);
    let timer: TimerHandle | undefined;
    const late = new Promise<boolean>((resolve) => (timer = this.deps.clock.setTimeout(() => resolve(false), ms)));
    return Promise.race([p.then(() => true), late]).finally(() => {
      if (timer) this.deps.clock.clearTimeout(timer);
    });
  }

  /**
   * Runs `f` after everything queued before it; a failure fails the incarnation. Once the
   * incarnation is closed, queued steps are skipped.
   */
  private serial(f: () => Promise<void>): Promise<void> {
    const next = this.chain.then(() => (this.closed ? undefined : f()));
    // Once a step failed the chain stays rejected: nothing after it runs, every later call rejects.
    this.chain = next.catch((err: unknown) => {
      this.failure?.(err);
      throw err;
    });
    this.chain.catch(() => undefined);
    return next;
  }

  private schedule(): void {
    if (this.stopping) return;
    const every = Math.min(this.deps.flushMs, 1000);
    this.timer = this.deps.clock.setTimeout(() => {
      void this.serial(() => this.tick()).then(
        () => this.schedule(),
        () => undefined,
      );
    }, every);
  }

  private async tick(): Promise<void> {
    this.deps.events.emit('archive', { unit: this.unitId, seq: this.committedSeq, pending: this.lastPending });
    if (this.deps.clock.now() - this.lastFlushAt >= this.deps.flushMs) await this.flush();
  }

  private async onMessage(m: ArchiveMessage): Promise<void> {
    if (m.seq <= this.lastSeq) return;
    if (this.spec.unit === 'dlq') this.buffer.appendDeadLetter(m.seq, this.deps.clock.now(), m.data);
    else if (this.isClicks(m)) {
      try {
        this.buffer.appendClicks(m.subject, m.seq, decodeBatch(m.data));
      } catch (err) {
        if ((err as AdaggError).code !== ErrorCode.BatchCorrupt) throw err;
        this.log.error({ seq: m.seq, subject: m.subject, err: (err as Error).message }, 'archiver skipped an unreadable stream message');
      }
    }
    this.lastSeq = m.seq;
    this.lastPending = m.pending;
    if (this.buffer.rows >= this.deps.fileClicks) await this.flush();
  }

  /** Click batches only: not hot-split control or risk messages, and not a parent's forwarded copies (archived on its subject). */
  private isClicks(m: ArchiveMessage): boolean {
    if (isControlMessage(m.data) || isRiskMessage(m.data)) return false;
    return !(this.spec.unit === 'hot' && m.msgId?.startsWith('fwd-'));
  }

  /** Stage, commit, rename, clear (see the module comment). A flush with no rows still moves the sequence. */
  private async flush(): Promise<void> {
    const t0 = performance.now();
    this.lastFlushAt = this.deps.clock.now();
    const seq = Math.max(this.lastSeq, await this.feed.covered());
    if (seq <= this.committedSeq || this.closed) return;
    const from = this.committedSeq + 1;
    const staged = await this.buffer.stage(this.deps.root, this.staging, from, seq, this.epoch);
    const pending = staged.map((f) => [f.tmp, f.final] as [string, string]);
    const rows = staged.reduce((n, f) => n + f.rows, 0);
    try {
      await this.progress.commit(this.epoch, { seq, pending, rows, files: staged.length });
    } catch (err) {
      // Fenced: a newer incarnation owns the unit and re-reads this range; these files are nobody's
      // (only ours go: the staging folder may hold the new owner's files by now).
      if ((err as AdaggError).code === ErrorCode.Fenced) await Promise.all(staged.map((f) => rm(f.tmp, { force: true }))).catch(() => undefined);
      throw err;
    }
    // A stop gave up on this flush while it waited: renames and clearing are the next owner's
    // (the buffer is closed by now).
    if (this.closed) return;
    const missing = await completeRenames(pending);
    if (missing.length > 0) throw new AdaggError(ErrorCode.ArchiveFileMissing, `archiver ${this.unitId}: staged files vanished before their rename`, { details: { missing } });
    if (this.closed) return;
    await this.buffer.clear();
    this.committedSeq = seq;
    this.lastSeq = seq;
    this.deps.events.emit('archive', {
      unit: this.unitId,
      seq,
      pending: this.lastPending,
      rows,
      files: staged.length,
      seconds: (performance.now() - t0) / 1000,
    });
    if (staged.length > 0) this.log.debug({ from, to: seq, rows, files: staged.length }, 'archiver committed files');
  }
}
