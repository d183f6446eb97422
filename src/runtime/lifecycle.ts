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
