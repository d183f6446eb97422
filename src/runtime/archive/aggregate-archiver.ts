/**
 * The aggregate archiver (docs/history.md, "Aggregate archive and tiered queries"): every hour that
 * every shard has sealed is read from Redis once and written to Parquet (minute file, hour rollup,
 * and the day rollup once the day's last hour is in), then the progress moves. Hours that ended
 * longer than ADAGG_HOT_RETENTION ago and are archived are deleted from Redis; queries read them
 * from the archive (src/gateway/tiered-reads.ts).
 *
 * When is an hour safe to read? A shard's status says `sealedThrough` (no live path can change
 * those minutes) and `lastSeq` (what it had applied). Its changes reach Redis at its next commit,
 * so a seal is trusted only once the shard's committed sequence (meta `seq`) reached that `lastSeq`
 * and a commit interval or two passed (changes without a stream message, such as a hot child's
 * report, are committed by then too). The archive hours end at the least trusted seal over shards.
 *
 * One runner writes: a Redis lock with a token (aggregate-progress.ts) taken and extended before
 * each hour, and every progress write checks it. Files are written staged + fsync + rename
 * (aggregate-files.ts), so a crash between a file and the progress write only redoes the hour.
 */
import { randomUUID } from 'node:crypto';
import { AdaggError, ErrorCode } from '../../errors.ts';
import type { Redis } from 'ioredis';
import type { Clock, TimerHandle } from '../clock.ts';
import type { Logger } from '../logger.ts';
import type { RedisKeys } from '../redis-keys.ts';
import { duckConnection } from './duckdb.ts';
import { aggTable, appendRow, clearAggStaging, dropTable, rollupDay, rollupHour, writeAtomically } from './aggregate-files.ts';
import { aggHourFile, DAY_MINUTES, HOUR_MINUTES } from './aggregate-layout.ts';
import { AggLock, readAggProgress } from './aggregate-progress.ts';
import { evictHour, hourHasCounts, readHourCounts } from './aggregate-redis.ts';

/** What a shard's owner says about sealing (ShardStatus: lastSeq, sealedThrough). */
export interface ShardSeal {
  lastSeq: number;
  sealedThrough: number;
}

export interface AggregateArchiverDeps {
  redis: Redis;
  keys: RedisKeys;
  shards: number;
  /** ADAGG_ARCHIVE_DIR, resolved. */
  root: string;
  clock: Clock;
  log: Logger;
  /** A shard's live status, or undefined when no owner answers. */
  status: (shard: number) => Promise<ShardSeal | undefined>;
  /** ADAGG_HOT_RETENTION. */
  hotRetentionMs: number;
  /** ADAGG_AGG_ARCHIVE_INTERVAL_MS. */
  intervalMs: number;
  /** ADAGG_COUNT_TTL_MS: nothing older is in Redis, so the first run looks no further back. */
  countTtlMs: number;
  /** A seal is trusted this long after it was seen (and once committed): a few commit intervals. */
  commitSlackMs: number;
  /** An archived hour stays in Redis at least this long after its archiving (queries that read the old progress). @default 60000 */
  evictDelayMs?: number;
  /** Hours archived per tick before the next tick is armed at once. @default 24 */
  hoursPerTick?: number;
}

/** What one tick did. */
export interface AggTickResult {
  held: boolean;
  archived: number;
  evicted: number;
  /** Hours still to archive after this tick. */
  behind: number;
}

interface SealSeen extends ShardSeal {
  at: number;
}

export class AggregateArchiver {
  private readonly lock: AggLock;
  private readonly seals = new Map<number, { trusted: number; seen: SealSeen[] }>();
  /** Progress `through` as read at tick starts, to evict only hours archived evictDelayMs ago. */
  private readonly throughSeen: Array<{ through: number; at: number }> = [];
  /** First run: hours (epoch minutes) before this were found empty. */
  private scannedFrom: number | undefined;
  private stagingCleared = false;
  private timer: TimerHandle | undefined;
  private running: Promise<void> | undefined;
  private closed = false;
  private lastLog = 0;

  constructor(private readonly deps: AggregateArchiverDeps) {
    this.lock = new AggLock(deps.redis, deps.keys, randomUUID());
  }

  start(): void {
    if (this.timer !== undefined || this.closed) return;
    this.arm(0);
  }

  private arm(ms: number): void {
    if (this.closed) return;
    this.timer = this.deps.clock.setTimeout(() => {
      this.running = this.tick()
        .then((r) => r.behind)
        .catch((err: unknown) => {
          this.deps.log.error({ err, code: (err as { code?: string }).code }, 'aggregate archiver tick failed');
          return 0;
        })
        .then((behind) => this.arm(behind > 0 ? 0 : this.deps.intervalMs));
    }, ms);
  }

  /** The lock outlives a stalled runner by this much at most; a running one extends it after each shard it reads. */
  private lockMs(): number {
    return Math.max(120_000, 3 * this.deps.intervalMs);
  }

  /** One step: take the lock, archive sealed hours (at most hoursPerTick), evict old archived hours. */
  async tick(): Promise<AggTickResult> {
    const d = this.deps;
    const res: AggTickResult = { held: false, archived: 0, evicted: 0, behind: 0 };
    if (!(await this.lock.hold(this.lockMs()))) return res;
    res.held = true;
    if (!this.stagingCleared) {
      const n = await clearAggStaging(d.root);
      if (n > 0) d.log.info({ files: n }, 'aggregate archiver removed staged files');
      this.stagingCleared = true;
    }
    const now = d.clock.now();
    let prog = await readAggProgress(d.redis, d.keys);
    if (prog) this.noteThrough(prog.through, now);
    const sealed = await this.sealedMinute(now);
    if (sealed !== undefined) {
      // The last hour whose minutes are all sealed (start, epoch minutes).
      const last = Math.floor((sealed + 1) / HOUR_MINUTES) * HOUR_MINUTES - HOUR_MINUTES;
      const start = prog ? prog.start / 60_000 : await this.firstHour(last);
      let next = prog ? prog.through / 60_000 + HOUR_MINUTES : start;
      if (start !== undefined && next !== undefined) {
        const max = d.hoursPerTick ?? 24;
        while (next <= last && res.archived < max && !this.closed) {
          if (!(await this.lock.hold(this.lockMs()))) return res;
          // A recompute that wrote counts of this hour after we read them, but looked for its file
          // before we renamed it, would leave the file stale: it raises the counter in between,
          // and the hour is archived again (recompute-commit.ts).
          const gen = await d.redis.get(d.keys.aggGen());
          const rows = await this.archiveHour(next);
          if ((await d.redis.get(d.keys.aggGen())) !== gen) continue;
          if (!(await this.lock.setProgress({ start: start * 60_000, through: next * 60_000 }))) return res;
          res.archived++;
          this.noteThrough(next * 60_000, d.clock.now());
          this.progress(next, rows, last);
          next += HOUR_MINUTES;
        }
        res.behind = Math.max(0, (last - next) / HOUR_MINUTES + 1);
      }
    }
    prog = await readAggProgress(d.redis, d.keys);
    if (prog) res.evicted = await this.evict(prog.through / 60_000, prog.evicted, now);
    return res;
  }

  /** The least trusted seal over shards (epoch minute), or undefined while a shard has none. */
  private async sealedMinute(now: number): Promise<number | undefined> {
    const d = this.deps;
    const statuses = await Promise.all([...Array(d.shards).keys()].map((s) => d.status(s).catch(() => undefined)));
    const p = d.redis.pipeline();
    for (let s = 0; s < d.shards; s++) p.hget(d.keys.meta(s), 'seq');
    const metas = (await p.exec()) ?? [];
    let min = Infinity;
    for (let s = 0; s < d.shards; s++) {
      const [err, seqStr] = metas[s] ?? [null, null];
      if (err) throw err;
      const committed = Number((seqStr as string | null) ?? 0);
      let e = this.seals.get(s);
      if (!e) this.seals.set(s, (e = { trusted: -1, seen: [] }));
      const st = statuses[s];
      if (st && st.sealedThrough >= 0) e.seen.push({ ...st, at: now });
      e.seen = e.seen.filter((x) => {
        if (committed >= x.lastSeq && now - x.at >= d.commitSlackMs) {
          e.trusted = Math.max(e.trusted, x.sealedThrough);
          return false;
        }
        return true;
      });
      if (e.seen.length > 16) e.seen.splice(0, e.seen.length - 16);
      min = Math.min(min, e.trusted);
    }
    return min >= 0 && Number.isFinite(min) ? min : undefined;
  }

  /**
   * First run: the first hour holding counts, looked for from the count TTL back (older counts are
   * gone), rounded down to its day so every hour of an archived day has its files. Undefined: none yet.
   */
  private async firstHour(last: number): Promise<number | undefined> {
    const d = this.deps;
    const oldest = Math.floor((last - d.countTtlMs / 60_000) / HOUR_MINUTES) * HOUR_MINUTES;
    for (let h = Math.max(this.scannedFrom ?? oldest, oldest); h <= last; h += HOUR_MINUTES) {
      if (await hourHasCounts(d.redis, d.keys, d.shards, h)) return Math.floor(h / DAY_MINUTES) * DAY_MINUTES;
      this.scannedFrom = h + HOUR_MINUTES;
    }
    return undefined;
  }

  /** Writes the minute file and hour rollup of the hour at epoch minute `h` (and the day rollup after a day's last hour). */
  private async archiveHour(h: number): Promise<number> {
    const d = this.deps;
    const conn = await duckConnection();
    const t = await aggTable(conn, 'hour');
    try {
      const a = await conn.createAppender(t);
      const rows = await readHourCounts(d.redis, d.keys, d.shards, h, (r) => appendRow(a, r), async () => {
        if (!(await this.lock.hold(this.lockMs()))) throw new AdaggError(ErrorCode.Fenced, 'aggregate archiver lost its lock');
      });
      a.flushSync();
      a.closeSync();
      await writeAtomically(conn, d.root, `SELECT * FROM ${t}`, aggHourFile(d.root, 'minute', h * 60_000));
      await rollupHour(conn, d.root, h * 60_000);
      if ((h + HOUR_MINUTES) % DAY_MINUTES === 0) await rollupDay(conn, d.root, (h + HOUR_MINUTES - DAY_MINUTES) * 60_000);
      return rows;
    } finally {
      await dropTable(conn, t);
      conn.closeSync();
    }
  }

  private progress(h: number, rows: number, last: number): void {
    const now = this.deps.clock.now();
    const hour = new Date(h * 60_000).toISOString();
    const behind = (last - h) / HOUR_MINUTES;
    if (now - this.lastLog >= 1000 || behind === 0) {
      this.lastLog = now;
      this.deps.log.info({ hour, rows, behind }, 'aggregate archiver archived hour');
    } else this.deps.log.debug({ hour, rows, behind }, 'aggregate archiver archived hour');
  }

  private noteThrough(through: number, at: number): void {
    const last = this.throughSeen.at(-1);
    if (!last || last.through !== through) this.throughSeen.push({ through, at });
    if (this.throughSeen.length > 64) this.throughSeen.splice(0, this.throughSeen.length - 64);
  }

  /** Deletes from Redis the archived hours that ended hotRetentionMs ago and were archived evictDelayMs ago. */
  private async evict(through: number, evicted: number, now: number): Promise<number> {
    const d = this.deps;
    const delay = d.evictDelayMs ?? 60_000;
    let safe = -Infinity;
    for (const s of this.throughSeen) if (now - s.at >= delay) safe = Math.max(safe, s.through / 60_000);
    const retained = Math.floor((now - d.hotRetentionMs) / 60_000);
    let n = 0;
    let h = evicted < 0 ? -Infinity : evicted / 60_000 + HOUR_MINUTES;
    if (!Number.isFinite(h)) {
      const prog = await readAggProgress(d.redis, d.keys);
      if (!prog) return 0;
      h = prog.start / 60_000;
    }
    for (; h <= Math.min(through, safe) && h + HOUR_MINUTES <= retained && !this.closed; h += HOUR_MINUTES) {
      if (!(await this.lock.hold(this.lockMs()))) break;
      const keys = await evictHour(d.redis, d.keys, d.shards, h);
      if (!(await this.lock.setProgress({ evicted: h * 60_000 }))) break;
      n++;
      d.log.debug({ hour: new Date(h * 60_000).toISOString(), keys }, 'aggregate archiver evicted hour from Redis');
    }
    if (n > 0) d.log.info({ hours: n, through: new Date((h - HOUR_MINUTES) * 60_000).toISOString() }, 'aggregate archiver evicted hours from Redis');
    return n;
  }

  /** Stops the timer, waits for a tick in progress and releases the lock. Idempotent. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.timer !== undefined) this.deps.clock.clearTimeout(this.timer);
    await this.running;
    await this.lock.release().catch(() => undefined);
  }
}
