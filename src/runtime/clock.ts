/** Injected time source. Actors and timers use it so unit tests can drive windows without sleeps. */
export interface Clock {
  now(): number;
  setTimeout(fn: () => void, ms: number): TimerHandle;
  clearTimeout(h: TimerHandle): void;
}
export interface TimerHandle {
  readonly id: number;
}

let nextTimerId = 1;

/** Wall-clock implementation backed by Date.now and real timers (unref'd so they never hold the process). */
export const systemClock: Clock = (() => {
  const handles = new Map<number, NodeJS.Timeout>();
  return {
    now: () => Date.now(),
    setTimeout(fn, ms) {
      const id = nextTimerId++;
      const t = setTimeout(() => {
        handles.delete(id);
        fn();
      }, ms);
      t.unref();
      handles.set(id, t);
      return { id };
    },
    clearTimeout(h) {
      const t = handles.get(h.id);
      if (t) clearTimeout(t);
      handles.delete(h.id);
    },
  };
})();

/** A simulated clock for tests: time moves only through `advance`, which fires due timers in order. */
export class ManualClock implements Clock {
  private t: number;
  private timers = new Map<number, { at: number; fn: () => void }>();
  constructor(startMs = 0) {
    this.t = startMs;
  }
  now(): number {
    return this.t;
  }
  setTimeout(fn: () => void, ms: number): TimerHandle {
    const id = nextTimerId++;
    this.timers.set(id, { at: this.t + Math.max(0, ms), fn });
    return { id };
  }
  clearTimeout(h: TimerHandle): void {
    this.timers.delete(h.id);
  }
  /** Moves time forward by `ms`, firing every timer that falls due, earliest first. */
  advance(ms: number): void {
    const end = this.t + ms;
    for (;;) {
      let dueId = -1;
      let dueAt = Infinity;
      for (const [id, tm] of this.timers) if (tm.at <= end && tm.at < dueAt) [dueId, dueAt] = [id, tm.at];
      if (dueId < 0) break;
      const tm = this.timers.get(dueId)!;
      this.timers.delete(dueId);
      this.t = Math.max(this.t, tm.at);
      tm.fn();
    }
    this.t = end;
  }
  set(ms: number): void {
    this.advance(ms - this.t);
  }
}
