/**
 * The ioredis client behind every adagg connection (built by redis-connect.ts): each call has a
 * deadline, and a call that fails for lack of Redis rejects with ADAGG_E_REDIS_UNAVAILABLE.
 *
 * A call that timed out after it was written may still run when Redis wakes up. Two rules keep
 * that from reordering writes:
 * - a call that timed out before it was written (queued offline while reconnecting) is never
 *   written afterwards;
 * - connections that share an {@link OverdueGate} (a node's state connections in one thread) hold
 *   back new calls while any written call is overdue, until Redis answers it. A shard actor whose
 *   commit timed out restarts, and its restore must not read Redis before that commit has either
 *   run or been refused.
 */
import { Redis, ReplyError, type RedisOptions } from 'ioredis';
import { AdaggError, ErrorCode } from '../errors.ts';

type Command = Parameters<Redis['sendCommand']>[0];

/** How a connection's calls end when Redis does not answer. */
export interface CallPolicy {
  /** A call unanswered this long fails with ADAGG_E_REDIS_UNAVAILABLE. */
  timeoutMs: number;
  /**
   * While a timed-out call is still unanswered, fail new calls at once instead of queueing them
   * behind it: a frozen Redis then costs one timeout, not one per call (read-only roles; the
   * overdue call stays in flight as the probe whose reply ends the stall).
   */
  failFast: boolean;
  /** Holds new calls while a call written by any connection sharing it is overdue. */
  gate?: OverdueGate;
  /**
   * Connect again when the connection ends without being closed by its owner (a long-lived role).
   * ioredis ends a Sentinel-mode connection for good when a failover announcement (`+switch-master`)
   * arrives while it is asking a Sentinel for the primary: every later call would fail with
   * "Connection is closed" although Redis is back.
   */
  revive?: boolean;
}

/** Calls written, timed out and still unanswered, across the connections that share the gate. */
export class OverdueGate {
  private readonly overdue = new Set<Command>();
  private held: Array<() => void> = [];

  get open(): boolean {
    return this.overdue.size === 0;
  }

  add(c: Command): void {
    this.overdue.add(c);
  }

  /** `c` was answered (or dropped with its connection): release the held calls once none is left. */
  settle(c: Command): void {
    if (!this.overdue.delete(c) || this.overdue.size > 0) return;
    const held = this.held;
    this.held = [];
    // Outside the reply handler that settled `c`.
    queueMicrotask(() => held.forEach((send) => send()));
  }

  hold(send: () => void): void {
    this.held.push(send);
  }
}

interface CallState {
  written: boolean;
  timedOut: boolean;
}

const calls = new WeakMap<Command, CallState>();

/**
 * Every command (pipelined and scripted ones included) passes through `sendCommand`, so the
 * deadline and the error codes are applied there. Redis' own replies (ReplyError: `FENCED`,
 * `WRONGPASS`, …) pass through unchanged.
 */
export class CodedRedis extends Redis {
  /** A call has timed out and no reply has arrived since (for `failFast`). */
  private overdue = false;
  /** This connection's calls in the gate. */
  private readonly inGate = new Set<Command>();
  /** The owner closed it (quit, disconnect): an end is wanted, never revived. */
  private endWanted = false;
  /** Revivals since the connection was last ready (for the backoff). */
  private revivals = 0;

  constructor(
    url: string,
    options: RedisOptions,
    private readonly where: string,
    private readonly policy: CallPolicy,
  ) {
    super(url, options);
    this.on('ready', () => {
      this.overdue = false;
      this.revivals = 0;
    });
    // Closed for good (ioredis never settles calls it was holding for a resend): nothing of this
    // connection can run any more, so it no longer holds the others back.
    this.on('end', () => {
      for (const c of this.inGate) this.policy.gate?.settle(c);
      this.inGate.clear();
      if (this.policy.revive && !this.endWanted) this.revive();
    });
  }

  override disconnect(reconnect = false): void {
    if (!reconnect) this.endWanted = true;
    super.disconnect(reconnect);
  }

  /** Connects again after an end nobody asked for, with a backoff of 100 ms doubling to 2 s. */
  private revive(): void {
    const delay = Math.min(2000, 100 * 2 ** this.revivals++);
    const t = setTimeout(() => {
      if (this.endWanted || this.status !== 'end') return;
      this.connect().catch(() => undefined); // a failed attempt ends again, and revives again
    }, delay);
    t.unref();
  }

  override sendCommand(...args: Parameters<Redis['sendCommand']>): unknown {
    const [command] = args;
    if (command.name === 'quit') this.endWanted = true;
    let st = calls.get(command);
    if (!st) {
      st = { written: false, timedOut: false };
      calls.set(command, st);
      this.wrap(command, st);
    } else if (st.timedOut && !st.written) {
      return command.promise; // failed before it was ever written (a reconnect flushing it): never write it
    }
    // Only a ready connection writes; otherwise ioredis queues the call and sends it here again.
    if (this.status === 'ready' && !st.written) {
      if (this.policy.failFast && this.overdue) {
        command.reject(new AdaggError(ErrorCode.RedisUnavailable, `Redis at ${this.where} is not answering (a call has waited over ${this.policy.timeoutMs} ms)`));
        return command.promise;
      }
      const gate = this.policy.gate;
      if (gate && !gate.open) {
        gate.hold(() => void this.sendCommand(...args));
        return command.promise;
      }
      st.written = true;
    }
    return super.sendCommand(...args);
  }

  private wrap(command: Command, st: CallState): void {
    const { resolve, reject } = command;
    const gate = this.policy.gate;
    const timer = setTimeout(() => {
      st.timedOut = true;
      if (st.written) {
        this.overdue = true;
        if (gate) {
          gate.add(command);
          this.inGate.add(command);
        }
      }
      reject(new AdaggError(ErrorCode.RedisUnavailable, `Redis at ${this.where}: ${command.name} unanswered after ${this.policy.timeoutMs} ms`));
    }, this.policy.timeoutMs);
    timer.unref();
    // After the timeout a late reply or error settles nothing (a promise settles once), but it
    // proves Redis has dealt with the call.
    const settle = (): void => {
      if (this.inGate.delete(command)) gate?.settle(command);
    };
    command.resolve = (value: unknown) => {
      clearTimeout(timer);
      this.overdue = false;
      settle();
      return resolve(value) as unknown;
    };
    command.reject = (err: Error) => {
      clearTimeout(timer);
      if (err instanceof ReplyError) this.overdue = false;
      settle();
      reject(err instanceof ReplyError || err instanceof AdaggError ? err : unavailable(err, command.name, this.where));
    };
  }
}

function unavailable(err: Error, command: string, where: string): AdaggError {
  return new AdaggError(ErrorCode.RedisUnavailable, `Redis at ${where}: ${command} failed: ${err.message}`, { cause: err });
}
