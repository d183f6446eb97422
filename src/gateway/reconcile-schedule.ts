/**
 * The daily reconciliation (ADAGG_RECONCILE_AT=HH:MM, UTC): once a day after that time, the gateway
 * reconciles the previous UTC day (src/runtime/archive/reconcile.ts) and stores the report. With many
 * gateways, a Redis lock (SET NX PX) lets one of them run it; a day whose stored report was made
 * after that day's scheduled time is done. A failed run (the archive behind, Redis down) is tried
 * again once the lock expires ({@link RETRY_MS}), by whichever gateway takes it.
 *
 * Time comes from the injected clock, so tests drive the schedule without waiting for a day.
 */
import path from 'node:path';
import type { Redis } from 'ioredis';
import type { CompiledOptions } from '../options.ts';
import { reconcileDay, storedReport, type ReconcileReport } from '../runtime/archive/reconcile.ts';
import type { Clock, TimerHandle } from '../runtime/clock.ts';
import type { RuntimeEvents } from '../runtime/events.ts';
import type { Logger } from '../runtime/logger.ts';
import { RedisKeys } from '../runtime/redis-keys.ts';
import type { ReconciliationSource } from './routes/reconciliations.ts';

/** How often the schedule looks at the clock. */
const TICK_MS = 30_000;
/** How long a run holds the day's lock; a failed run is retried after it. */
export const RETRY_MS = 10 * 60_000;
const DAY_MS = 86_400_000;

export interface ReconcileScheduleDeps {
  /** `HH:MM` UTC (the option ADAGG_RECONCILE_AT, checked by compileOptions). */
  at: string;
  clock: Clock;
  log: Logger;
  events: RuntimeEvents;
  /** Reconciles and stores the report of `day`. */
  run: (day: string) => Promise<ReconcileReport>;
  /** SET NX PX: true when this process took the day's lock. */
  lock: (day: string, ms: number) => Promise<boolean>;
  /** When the stored report of `day` ran (epoch ms), or undefined when none is stored. */
  ranAt: (day: string) => Promise<number | undefined>;
}

/** Minutes after midnight of `HH:MM`. */
function minutesOf(at: string): number {
  const [h, m] = at.split(':').map(Number);
  return (h ?? 0) * 60 + (m ?? 0);
}

export class ReconcileSchedule {
  private timer: TimerHandle | undefined;
  private running: Promise<void> | undefined;
  private closed = false;
  /** The last day this process saw done. */
  private done: string | undefined;
  private readonly offsetMs: number;

  constructor(private readonly deps: ReconcileScheduleDeps) {
    this.offsetMs = minutesOf(deps.at) * 60_000;
  }

  start(): void {
    if (this.timer !== undefined || this.closed) return;
    this.arm(0);
  }

  private arm(ms: number): void {
    if (this.closed) return;
    this.timer = this.deps.clock.setTimeout(() => {
      this.running = this.tick().finally(() => this.arm(TICK_MS));
    }, ms);
  }

  /** One look at the clock: runs the previous day's reconcile if it is due, not done and not taken. */
  async tick(): Promise<void> {
    const now = this.deps.clock.now();
    const todayStart = Math.floor(now / DAY_MS) * DAY_MS;
    const dueAt = todayStart + this.offsetMs;
    if (now < dueAt) return;
    const day = new Date(todayStart - DAY_MS).toISOString().slice(0, 10);
    if (this.done === day) return;
    try {
      const ranAt = await this.deps.ranAt(day);
      if (ranAt !== undefined && ranAt >= dueAt) {
        this.done = day;
        return;
      }
      if (!(await this.deps.lock(day, RETRY_MS))) return;
      this.deps.log.info({ day }, 'daily reconciliation started');
      const report = await this.deps.run(day);
      this.done = day;
      this.deps.events.emit('reconcile', { day, result: report.mismatches > 0 ? 'mismatch' : 'ok', mismatches: report.mismatches });
      const log = report.mismatches > 0 ? this.deps.log.warn.bind(this.deps.log) : this.deps.log.info.bind(this.deps.log);
      log({ day, mismatches: report.mismatches, checkedMinutes: report.checked_minutes, clicks: report.clicks, ms: report.duration_ms }, 'daily reconciliation finished');
    } catch (err) {
      this.deps.events.emit('reconcile', { day, result: 'failed' });
      this.deps.log.error({ err, day, code: (err as { code?: string }).code }, 'daily reconciliation failed');
    }
  }

  /** Stops the timer and waits for a run in progress. Idempotent. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.timer !== undefined) this.deps.clock.clearTimeout(this.timer);
    await this.running;
  }
}

/**
 * The gateway's reconciliation parts on its Redis connection: the stored reports for
 * `GET /v1/reconciliations/{day}`, and the daily schedule when ADAGG_RECONCILE_AT is set (started).
 */
export function gatewayReconciliations(
  redis: Redis,
  o: Pick<CompiledOptions, 'prefix' | 'shards' | 'archiveDir' | 'reconcileAt' | 'correctionHorizonMs'>,
  deps: { clock: Clock; log: Logger; events: RuntimeEvents; deadLetterLast?: () => Promise<number> },
): { reports: ReconciliationSource; schedule: ReconcileSchedule | undefined } {
  const keys = new RedisKeys(o.prefix);
  const reports: ReconciliationSource = (day) => storedReport(redis, keys, day);
  if (o.reconcileAt === 'off') return { reports, schedule: undefined };
  const schedule = new ReconcileSchedule({
    ...deps,
    at: o.reconcileAt,
    run: (day) =>
      reconcileDay({
        redis,
        keys,
        prefix: o.prefix,
        shards: o.shards,
        archiveDir: path.resolve(o.archiveDir),
        day,
        clock: deps.clock,
        horizonMs: o.correctionHorizonMs,
        ...(deps.deadLetterLast ? { deadLetterLast: deps.deadLetterLast } : {}),
      }),
    lock: async (day, ms) => (await redis.set(keys.reconcileLock(day), String(deps.clock.now()), 'PX', ms, 'NX')) === 'OK',
    ranAt: async (day) => {
      const r = await storedReport(redis, keys, day);
      return r === undefined ? undefined : Date.parse(r.ran_at);
    },
  });
  schedule.start();
  return { reports, schedule };
}
