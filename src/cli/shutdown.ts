/**
 * How an adagg process stops: on SIGINT/SIGTERM, and as a last resort on an uncaught exception or
 * an unhandled rejection.
 *
 * - Cleanup steps run in the reverse order of {@link Shutdown.add}: what started last stops first,
 *   so `adagg start` stops the gateway, then the runtime node (its final commit), then the child
 *   servers that commit needs.
 * - The whole stop has a deadline (ADAGG_SHUTDOWN_TIMEOUT_MS); past it the process exits with 1.
 * - A second SIGINT/SIGTERM forces exit at once (exit 1). One Ctrl-C in a terminal can arrive
 *   twice (the terminal signals the whole group, and `npm` forwards the signal it got), so a
 *   signal within {@link DUPLICATE_SIGNAL_MS} of the first counts as the same one.
 * - Last resort: an uncaught exception or unhandled rejection is logged with ADAGG_E_INTERNAL and
 *   the process stops cleanly (same steps, same deadline) and exits with 1, for a supervisor to
 *   restart it. It does not keep running: after an error nobody caught, the process's state is
 *   unknown (Node's own advice), and a restart resumes exactly from the last commit. Errors of
 *   hostile input are caught where they happen (the gateway), never here.
 * - On a forced exit (second signal, deadline) the {@link Shutdown.onForce} hooks run first; they
 *   are synchronous (e.g. SIGTERM to child servers so they still stop cleanly by themselves).
 */
import { ErrorCode } from '../errors.ts';
import type { Logger } from '../runtime/logger.ts';

/** Signals this close apart are one Ctrl-C seen twice (terminal + npm forwarding), not a second one. */
export const DUPLICATE_SIGNAL_MS = 1_000;

export interface ShutdownOptions {
  /** Deadline of the whole stop (ADAGG_SHUTDOWN_TIMEOUT_MS). */
  timeoutMs: number;
  /** How the process ends; tests inject it. @default process.exit */
  exit?: (code: number) => void;
  /** @default Date.now */
  now?: () => number;
}

type Step = readonly [name: string, run: () => unknown];

/** The stop of one process; see the module doc. */
export class Shutdown {
  private readonly steps: Step[] = [];
  private readonly forceHooks: Array<() => void> = [];
  private closing: Promise<void> | undefined;
  private firstSignalAt: number | undefined;
  private exiting = false;
  private failed = false;
  private readonly exit: (code: number) => void;
  private readonly now: () => number;
  private readonly listeners: Array<[string, (arg: unknown) => void]> = [];

  constructor(
    private readonly log: Logger,
    private readonly opts: ShutdownOptions,
  ) {
    this.exit = opts.exit ?? ((code) => process.exit(code));
    this.now = opts.now ?? Date.now;
  }

  /** True once a stop has begun; a starting process checks it between phases. */
  get stopping(): boolean {
    return this.closing !== undefined;
  }

  /**
   * Registers a cleanup step (run in reverse order of registration). A step added after the stop
   * began (startup was still under way) runs at once.
   */
  add(name: string, run: () => unknown): void {
    if (this.closing) {
      void this.runStep([name, run]);
      return;
    }
    this.steps.push([name, run]);
  }

  /** A synchronous hook for a forced exit (second signal, deadline passed). */
  onForce(hook: () => void): void {
    this.forceHooks.push(hook);
  }

  /** Listens for SIGINT, SIGTERM, uncaught exceptions and unhandled rejections. */
  install(): this {
    this.listen('SIGINT', () => this.signal('SIGINT'));
    this.listen('SIGTERM', () => this.signal('SIGTERM'));
    this.listen('uncaughtException', (err: unknown) => this.fatal('uncaughtException', err));
    this.listen('unhandledRejection', (err: unknown) => this.fatal('unhandledRejection', err));
    return this;
  }

  /** Removes the listeners of {@link install} (tests). */
  uninstall(): void {
    for (const [event, fn] of this.listeners) process.removeListener(event, fn);
    this.listeners.length = 0;
  }

  /** Runs every step once, in reverse order, each even when another fails; memoised. No exit, no deadline. */
  close(): Promise<void> {
    return (this.closing ??= (async () => {
      for (const step of [...this.steps].reverse()) await this.runStep(step);
    })());
  }

  /** Stops with the deadline, then exits: `code` when the steps finished in time, 1 past the deadline. */
  stop(reason: string, code: number): void {
    if (this.closing) return;
    this.log.info({ reason, timeoutMs: this.opts.timeoutMs }, 'shutting down');
    const timer = setTimeout(() => {
      this.log.error({ code: ErrorCode.Internal, timeoutMs: this.opts.timeoutMs }, 'shutdown deadline passed; exiting');
      this.force(1);
    }, this.opts.timeoutMs);
    void this.close().then(() => {
      clearTimeout(timer);
      this.finish(code);
    });
  }

  private signal(signal: string): void {
    const now = this.now();
    if (this.firstSignalAt === undefined) {
      this.firstSignalAt = now;
      this.stop(signal, 0);
      return;
    }
    if (now - this.firstSignalAt < DUPLICATE_SIGNAL_MS) return;
    this.log.warn({ signal }, 'second signal: exiting now');
    this.force(1);
  }

  private fatal(kind: string, err: unknown): void {
    this.log.fatal({ err, code: ErrorCode.Internal, kind }, 'uncaught error; stopping so a supervisor can restart the process');
    this.failed = true;
    // A fatal error while already stopping (a step threw asynchronously) does not restart the stop.
    if (this.closing) return;
    this.stop(kind, 1);
  }

  private force(code: number): void {
    for (const hook of this.forceHooks) {
      try {
        hook();
      } catch {
        // exiting anyway
      }
    }
    this.finish(code);
  }

  private finish(code: number): void {
    if (this.exiting) return;
    this.exiting = true;
    this.exit(code === 0 && this.failed ? 1 : code);
  }

  private async runStep([name, run]: Step): Promise<void> {
    try {
      await run();
    } catch (err) {
      this.log.error({ err, step: name }, 'shutdown step failed');
    }
  }

  private listen(event: string, fn: (arg: unknown) => void): void {
    process.on(event, fn);
    this.listeners.push([event, fn]);
  }
}
