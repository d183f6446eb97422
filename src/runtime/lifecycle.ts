import { AdaggError, ErrorCode } from '../errors.ts';
import type { Logger } from './logger.ts';

export type LifecycleState = 'starting' | 'running' | 'draining' | 'stopped' | 'failed';

const LEGAL: Record<LifecycleState, readonly LifecycleState[]> = {
  starting: ['running', 'failed', 'draining', 'stopped'],
  running: ['draining', 'failed', 'stopped'],
  draining: ['stopped', 'failed'],
  failed: ['starting', 'stopped'],
  stopped: [],
};

/**
 * One place where an actor's or service's state changes: every transition is logged and an
 * illegal one throws, so a restart of a stopped actor or a double start is a bug caught at once.
 */
export class Lifecycle {
  private s: LifecycleState = 'starting';
  private readonly listeners = new Set<(to: LifecycleState, from: LifecycleState) => void>();
  constructor(
    private readonly what: string,
    private readonly log: Logger,
  ) {}
  get state(): LifecycleState {
    return this.s;
  }
  to(next: LifecycleState, meta: Record<string, unknown> = {}): void {
    const from = this.s;
    if (from === next) return;
    if (!LEGAL[from].includes(next)) {
      throw new AdaggError(ErrorCode.IllegalTransition, `${this.what}: illegal transition ${from} -> ${next}`, {
        details: { from, to: next },
      });
    }
    this.s = next;
    this.log.info({ actor: this.what, from, to: next, ...meta }, 'lifecycle transition');
    for (const l of this.listeners) l(next, from);
  }
  onChange(fn: (to: LifecycleState, from: LifecycleState) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }
}

/**
 * The lifecycle every long-lived service shares (RuntimeNode, GatewayService, TopNReducerHost).
 * - `state`: `starting` from construction until `start()` resolves, then `running`; `failed` when
 *   `start()` failed; `draining` while `close()` runs, then `stopped`.
 * - `start()` runs once: a second call rejects with `ADAGG_E_ALREADY_STARTED`, a call after
 *   `close()` with `ADAGG_E_ILLEGAL_TRANSITION`.
 * - `close()` is idempotent (every call returns the same promise) and runs every cleanup step even
 *   when one fails; `await using` closes the service.
 */
export interface Service<Started = void> {
  readonly state: LifecycleState;
  start(): Promise<Started>;
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

/** One step of a service's close: a name for the log, and the work (sync or async). */
export type CleanupStep = readonly [name: string, run: () => unknown];

/**
 * Runs every step in order, each awaited, even when an earlier one failed. A failed step is logged;
 * once all have run, the first failure is rethrown.
 */
export async function runCleanup(what: string, steps: readonly CleanupStep[], log: Logger): Promise<void> {
  let failed: { err: unknown } | undefined;
  for (const [step, run] of steps) {
    try {
      await run();
    } catch (err) {
      log.error({ err, service: what, step }, 'cleanup step failed');
      failed ??= { err };
    }
  }
  if (failed) throw failed.err;
}

/**
 * The {@link Service} semantics in one place: a service keeps one of these, and runs its start
 * body through {@link start} and its cleanup steps through {@link close}.
 */
export class ServiceLifecycle {
  private readonly life: Lifecycle;
  private started = false;
  private closing: Promise<void> | undefined;

  constructor(
    private readonly what: string,
    private readonly log: Logger,
  ) {
    this.life = new Lifecycle(what, log);
  }

  get state(): LifecycleState {
    return this.life.state;
  }

  /**
   * Runs `body` as the service's one start. The checks and `body`'s synchronous part run at once,
   * in the caller's turn. `running` once `body` resolved, `failed` if it threw (unless `close()`
   * ran meanwhile, which wins).
   */
  async start<T>(body: () => Promise<T>): Promise<T> {
    if (this.closing) throw new AdaggError(ErrorCode.IllegalTransition, `${this.what}: start() after close()`);
    if (this.started) throw new AdaggError(ErrorCode.AlreadyStarted, `${this.what}: start() called twice`);
    this.started = true;
    try {
      const result = await body();
      if (this.life.state === 'starting') this.life.to('running');
      return result;
    } catch (err) {
      if (this.life.state === 'starting') this.life.to('failed', { err });
      throw err;
    }
  }

  /**
   * The first call drains (`draining`), runs the steps `steps()` lists with {@link runCleanup} and
   * ends `stopped`, even when a step failed; every call returns that same promise.
   */
  close(steps: () => readonly CleanupStep[]): Promise<void> {
    this.closing ??= (async () => {
      if (this.life.state !== 'failed') this.life.to('draining');
      try {
        await runCleanup(this.what, steps(), this.log);
      } finally {
        this.life.to('stopped');
      }
    })();
    return this.closing;
  }
}
