import { AdaggError, ErrorCode } from '../errors.ts';
import type { Clock } from './clock.ts';
import { Lifecycle } from './lifecycle.ts';
import type { Logger } from './logger.ts';

export interface SupervisorOptions {
  /** First restart delay; doubles per consecutive failure. @default 200 */
  minBackoffMs?: number;
  /** @default 10000 */
  maxBackoffMs?: number;
  /** A run that lasted this long resets the backoff. @default 30000 */
  resetAfterMs?: number;
  /** Errors after which the child must not be restarted (e.g. it lost ownership). */
  isFatal?: (err: unknown) => boolean;
  onRestart?: (err: unknown, attempt: number) => void;
  /** Called once when the child stopped for good after a fatal error. */
  onFatal?: (err: unknown) => void;
}

/**
 * Runs a child (an actor incarnation) and restarts it with exponential backoff when it fails.
 * `run` must restore from the last snapshot every time; it resolves when asked to stop via the
 * signal and rejects when the child fails. Nothing the child throws reaches the caller of `start`.
 */
export class Supervisor {
  readonly lifecycle: Lifecycle;
  private readonly abort = new AbortController();
  private loop: Promise<void> | undefined;
  private closing: Promise<void> | undefined;
  private wake: (() => void) | undefined;
  constructor(
    readonly name: string,
    private readonly run: (signal: AbortSignal) => Promise<void>,
    private readonly clock: Clock,
    private readonly log: Logger,
    private readonly opts: SupervisorOptions = {},
  ) {
    this.lifecycle = new Lifecycle(name, log);
  }

  start(): void {
    if (this.loop) throw new AdaggError(ErrorCode.AlreadyStarted, `${this.name}: start() called twice`);
    this.loop = this.supervise();
  }

  private async supervise(): Promise<void> {
    const min = this.opts.minBackoffMs ?? 200;
    const max = this.opts.maxBackoffMs ?? 10_000;
    let failures = 0;
    while (!this.abort.signal.aborted) {
      const startedAt = this.clock.now();
      if (this.lifecycle.state === 'failed') this.lifecycle.to('starting');
      try {
        this.lifecycle.to('running');
        await this.run(this.abort.signal);
        if (this.abort.signal.aborted) break;
        // A child must run until stopped: returning early is a failure, restarted with backoff.
        throw new AdaggError(ErrorCode.Internal, `${this.name} returned without being stopped`);
      } catch (err) {
        if (this.abort.signal.aborted) break;
        this.lifecycle.to('failed', { err: errMeta(err) });
        if (this.opts.isFatal?.(err)) {
          this.log.warn({ actor: this.name, err: errMeta(err) }, 'actor stopped for good');
          this.opts.onFatal?.(err);
          return;
        }
        if (this.clock.now() - startedAt >= (this.opts.resetAfterMs ?? 30_000)) failures = 0;
        failures++;
        this.opts.onRestart?.(err, failures);
        const delay = Math.min(max, min * 2 ** (failures - 1));
        this.log.warn({ actor: this.name, attempt: failures, delayMs: delay, err: errMeta(err) }, 'actor failed, restarting');
        await this.sleep(delay);
      }
    }
  }

  /** Waits `ms` or until close(); the abort listener is removed either way (no leak per restart). */
  private sleep(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const done = (): void => {
        this.clock.clearTimeout(h);
        this.abort.signal.removeEventListener('abort', done);
        this.wake = undefined;
        resolve();
      };
      const h = this.clock.setTimeout(done, ms);
      this.wake = done;
      this.abort.signal.addEventListener('abort', done, { once: true });
    });
  }

  /** Stops the child (it drains and commits) and waits for it; idempotent. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      if (this.lifecycle.state === 'running') this.lifecycle.to('draining');
      this.abort.abort();
      this.wake?.();
      await this.loop;
      if (this.lifecycle.state !== 'stopped') this.lifecycle.to('stopped');
    })();
    return this.closing;
  }
}

export function errMeta(err: unknown): Record<string, unknown> {
  if (err instanceof Error) return { name: err.name, code: (err as { code?: unknown }).code, message: err.message, stack: err.stack };
  return { message: String(err) };
}
