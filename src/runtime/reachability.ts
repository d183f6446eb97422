/**
 * Real reachability of NATS and Redis for `/readyz`: a round trip to each (NATS PING/PONG through
 * `rtt()`, Redis `PING`) within a deadline, rather than the client's idea of its connection state,
 * which stays "connected" while a server is frozen (SIGSTOP) and for a while after it died.
 *
 * Results are reused for `cacheMs` so frequent probes stay cheap, and at most one round trip per
 * dependency is in flight: a probe that is still waiting on a frozen server is awaited again
 * (within the deadline) instead of queueing one more command behind it.
 *
 * @example
 * const reach = new Reachability({ nats: natsProbe(nc), redis: redisProbe(redis) }, { timeoutMs: 1000, cacheMs: 500 });
 * const { ok, checks, reasons } = await reach.check(); // ok false: reasons.redis = 'no reply within 1000 ms'
 */
import type { NatsConnection } from '@nats-io/transport-node';
import type { Redis } from 'ioredis';
import { systemClock, type Clock } from './clock.ts';

/** One round trip to a dependency; rejects (or never settles) when it is not reachable. */
export type Probe = () => Promise<unknown>;

/** The outcome of one {@link Reachability.check}. */
export interface ReachabilityReport {
  /** Every dependency answered in time. */
  ok: boolean;
  /** Per dependency: answered in time. */
  checks: Record<string, boolean>;
  /** Per failing dependency: why (timeout, not connected, the error's message). */
  reasons: Record<string, string>;
}

export interface ReachabilityOptions {
  /** Deadline of each round trip (ADAGG_READY_TIMEOUT_MS). */
  timeoutMs: number;
  /** How long a result is reused (ADAGG_READY_CACHE_MS); 0: never. */
  cacheMs: number;
}

/** A NATS round trip: fails at once when the client is closed or disconnected. */
export function natsProbe(nc: NatsConnection): Probe {
  return () => nc.rtt();
}

/** A Redis PING: fails at once unless the client's connection is ready (no queueing while down). */
export function redisProbe(redis: Redis): Probe {
  return async () => {
    if (redis.status !== 'ready') throw new Error(`not connected (${redis.status})`);
    await redis.ping();
  };
}

type Outcome = { ok: true } | { ok: false; reason: string };

/** Round trips to named dependencies with a deadline and a short cache; see the module doc. */
export class Reachability {
  private readonly inflight = new Map<string, Promise<Outcome>>();
  private cached: { at: number; report: ReachabilityReport } | undefined;
  private running: Promise<ReachabilityReport> | undefined;

  constructor(
    private readonly probes: Record<string, Probe>,
    private readonly opts: ReachabilityOptions,
    private readonly clock: Clock = systemClock,
  ) {}

  /** Every dependency's reachability now (or as of at most `cacheMs` ago). */
  check(): Promise<ReachabilityReport> {
    const c = this.cached;
    if (c && this.clock.now() - c.at < this.opts.cacheMs) return Promise.resolve(c.report);
    return (this.running ??= this.measure().finally(() => (this.running = undefined)));
  }

  private async measure(): Promise<ReachabilityReport> {
    const names = Object.keys(this.probes);
    const outcomes = await Promise.all(names.map((n) => this.withDeadline(this.roundTrip(n))));
    const report: ReachabilityReport = { ok: true, checks: {}, reasons: {} };
    names.forEach((name, i) => {
      const o = outcomes[i]!;
      report.checks[name] = o.ok;
      if (!o.ok) {
        report.ok = false;
        report.reasons[name] = o.reason;
      }
    });
    this.cached = { at: this.clock.now(), report };
    return report;
  }

  /** The dependency's round trip in flight, or a new one; settles once, whatever the server does. */
  private roundTrip(name: string): Promise<Outcome> {
    let p = this.inflight.get(name);
    if (!p) {
      const probe = this.probes[name]!;
      p = Promise.resolve()
        .then(probe)
        .then(
          (): Outcome => ({ ok: true }),
          (err: unknown): Outcome => ({ ok: false, reason: err instanceof Error ? err.message : String(err) }),
        )
        .finally(() => this.inflight.delete(name));
      this.inflight.set(name, p);
    }
    return p;
  }

  private withDeadline(p: Promise<Outcome>): Promise<Outcome> {
    return new Promise((resolve) => {
      const ms = this.opts.timeoutMs;
      const timer = this.clock.setTimeout(() => resolve({ ok: false, reason: `no reply within ${String(ms)} ms` }), ms);
      void p.then((o) => {
        this.clock.clearTimeout(timer);
        resolve(o);
      });
    });
  }
}
