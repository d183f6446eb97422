import { getEventListeners } from 'node:events';
import { describe, expect, it } from 'vitest';
import { AdaggError, ErrorCode } from '../../src/errors.ts';
import { ManualClock } from '../../src/runtime/clock.ts';
import { Lifecycle, type LifecycleState } from '../../src/runtime/lifecycle.ts';
import { silentLogger } from '../../src/runtime/logger.ts';
import { Supervisor, errMeta, type SupervisorOptions } from '../../src/runtime/supervisor.ts';

/** Lets every pending promise continuation run. */
const flush = async (turns = 3): Promise<void> => {
  for (let i = 0; i < turns; i++) await new Promise((r) => setImmediate(r));
};

/**
 * A scripted child: each incarnation either fails at once (an Error from `failures`) or runs until
 * its signal aborts, resolving then.
 */
function scripted(failures: Array<Error | null>) {
  const runs: Array<{ at: number; signal: AbortSignal }> = [];
  let stopped = 0;
  const child = (clock: ManualClock) => async (signal: AbortSignal) => {
    runs.push({ at: clock.now(), signal });
    const f = failures[runs.length - 1];
    if (f) throw f;
    await new Promise<void>((r) => signal.addEventListener('abort', () => r(), { once: true }));
    stopped++;
  };
  return { runs, child, stopped: () => stopped };
}

function make(failures: Array<Error | null>, opts: SupervisorOptions = {}) {
  const clock = new ManualClock(1_000_000);
  const s = scripted(failures);
  const restarts: Array<{ attempt: number; message: string }> = [];
  const states: LifecycleState[] = [];
  const sup = new Supervisor('shard-7', s.child(clock), clock, silentLogger, {
    ...opts,
    onRestart: (err, attempt) => restarts.push({ attempt, message: (err as Error).message }),
  });
  sup.lifecycle.onChange((to) => states.push(to));
  return { clock, sup, restarts, states, ...s };
}

// A lost wake-up shows as a hang: fail fast instead of after the config's 120 s.
describe('Supervisor', { timeout: 5_000 }, () => {
  it('restarts a failing child with backoff 200 ms, then 400 ms, and keeps the one that runs', async () => {
    const t = make([new Error('boom 1'), new Error('boom 2'), null]);
    t.sup.start();
    await flush();
    expect(t.runs.length).toBe(1);
    expect(t.restarts).toEqual([{ attempt: 1, message: 'boom 1' }]);
    expect(t.sup.lifecycle.state).toBe('failed');

    t.clock.advance(199);
    await flush();
    expect(t.runs.length).toBe(1);
    t.clock.advance(1);
    await flush();
    expect(t.runs.length).toBe(2);
    expect(t.runs[1]!.at - t.runs[0]!.at).toBe(200);
    expect(t.restarts).toEqual([
      { attempt: 1, message: 'boom 1' },
      { attempt: 2, message: 'boom 2' },
    ]);

    t.clock.advance(399);
    await flush();
    expect(t.runs.length).toBe(2);
    t.clock.advance(1);
    await flush();
    expect(t.runs.length).toBe(3);
    expect(t.runs[2]!.at - t.runs[1]!.at).toBe(400);
    expect(t.sup.lifecycle.state).toBe('running');

    // A healthy child is left alone.
    t.clock.advance(60_000);
    await flush();
    expect(t.runs.length).toBe(3);
    expect(t.restarts.length).toBe(2);
    expect(t.states).toEqual(['running', 'failed', 'starting', 'running', 'failed', 'starting', 'running']);

    await t.sup.close();
    expect(t.stopped()).toBe(1);
    expect(t.sup.lifecycle.state).toBe('stopped');
  });

  it('doubles the delay per consecutive failure up to maxBackoffMs', async () => {
    const fails = Array.from({ length: 6 }, (_, i) => new Error(`f${i}`));
    const t = make([...fails, null], { minBackoffMs: 100, maxBackoffMs: 1000 });
    t.sup.start();
    await flush();
    // Small steps, so each restart is observed at the time its timer fired.
    for (let i = 0; i < 80; i++) {
      t.clock.advance(50);
      await flush();
    }
    expect(t.runs.length).toBe(7);
    const gaps = t.runs.slice(1).map((r, i) => r.at - t.runs[i]!.at);
    expect(gaps).toEqual([100, 200, 400, 800, 1000, 1000]);
    expect(t.restarts.map((r) => r.attempt)).toEqual([1, 2, 3, 4, 5, 6]);
    await t.sup.close();
  });

  it('a run that lasted resetAfterMs resets the backoff', async () => {
    const clock = new ManualClock(0);
    const runs: number[] = [];
    const restarts: number[] = [];
    const sup = new Supervisor(
      'x',
      async (signal) => {
        runs.push(clock.now());
        if (runs.length === 3) {
          // The third incarnation runs for 30 s, then fails.
          await new Promise<void>((r, j) => {
            clock.setTimeout(() => j(new Error('late failure')), 30_000);
            signal.addEventListener('abort', () => r(), { once: true });
          });
          return;
        }
        if (runs.length < 5) throw new Error(`fail ${runs.length}`);
        await new Promise<void>((r) => signal.addEventListener('abort', () => r(), { once: true }));
      },
      clock,
      silentLogger,
      { onRestart: (_e, a) => restarts.push(a), resetAfterMs: 30_000 },
    );
    sup.start();
    await flush();
    clock.advance(200);
    await flush();
    clock.advance(400);
    await flush();
    expect(runs).toEqual([0, 200, 600]);
    clock.advance(30_000); // third run fails after 30 s
    await flush();
    expect(restarts).toEqual([1, 2, 1]);
    clock.advance(200); // so it is retried after the first delay again, not 800 ms
    await flush();
    expect(runs).toEqual([0, 200, 600, 30_800]);
    clock.advance(400);
    await flush();
    expect(runs).toEqual([0, 200, 600, 30_800, 31_200]);
    expect(restarts).toEqual([1, 2, 1, 2]);
    await sup.close();
    expect(sup.lifecycle.state).toBe('stopped');
  });

  it('does not restart after a fatal error', async () => {
    const fenced = new AdaggError(ErrorCode.Fenced, 'lost ownership');
    const clock = new ManualClock(0);
    let runs = 0;
    const restarts: number[] = [];
    const sup = new Supervisor(
      'x',
      async () => {
        runs++;
        throw fenced;
      },
      clock,
      silentLogger,
      { isFatal: (e) => e instanceof AdaggError && e.code === ErrorCode.Fenced, onRestart: (_e, a) => restarts.push(a) },
    );
    sup.start();
    await flush();
    clock.advance(60_000);
    await flush();
    expect(runs).toBe(1);
    expect(restarts).toEqual([]);
    expect(sup.lifecycle.state).toBe('failed');
    await sup.close();
    expect(sup.lifecycle.state).toBe('stopped');
  });

  it('close() aborts the signal, waits for the child to finish, ends stopped, and is idempotent', async () => {
    const clock = new ManualClock(0);
    let finish: (() => void) | undefined;
    let signal: AbortSignal | undefined;
    let childDone = false;
    const sup = new Supervisor(
      'x',
      async (s) => {
        signal = s;
        await new Promise<void>((r) => s.addEventListener('abort', () => (finish = r), { once: true }));
        childDone = true; // the child drains and commits after the abort
      },
      clock,
      silentLogger,
    );
    sup.start();
    await flush();
    expect(sup.lifecycle.state).toBe('running');
    expect(signal!.aborted).toBe(false);

    let closed = false;
    const p1 = sup.close().then(() => (closed = true));
    expect(signal!.aborted).toBe(true);
    expect(sup.lifecycle.state).toBe('draining');
    await flush();
    expect(closed).toBe(false); // still waiting for the child
    finish!();
    await p1;
    expect(childDone).toBe(true);
    expect(sup.lifecycle.state).toBe('stopped');

    const again = sup.close();
    await again;
    expect(sup.close()).toBe(again);
    expect(sup.lifecycle.state).toBe('stopped');
  });

  it('close() during a backoff wait stops without another run', async () => {
    const t = make([new Error('boom'), null]);
    t.sup.start();
    await flush();
    expect(t.sup.lifecycle.state).toBe('failed');
    await t.sup.close();
    expect(t.sup.lifecycle.state).toBe('stopped');
    t.clock.advance(10_000);
    await flush();
    expect(t.runs.length).toBe(1);
  });

  it('a child that fails because of the abort is not restarted', async () => {
    const clock = new ManualClock(0);
    let runs = 0;
    const restarts: number[] = [];
    const sup = new Supervisor(
      'x',
      (s) => {
        runs++;
        return new Promise<void>((_r, j) => s.addEventListener('abort', () => j(new Error('aborted')), { once: true }));
      },
      clock,
      silentLogger,
      { onRestart: (_e, a) => restarts.push(a) },
    );
    sup.start();
    await flush();
    await sup.close();
    clock.advance(10_000);
    await flush();
    expect(runs).toBe(1);
    expect(restarts).toEqual([]);
    expect(sup.lifecycle.state).toBe('stopped');
  });

  it('start() twice throws', async () => {
    const t = make([null]);
    t.sup.start();
    expect(() => t.sup.start()).toThrow(/start\(\) called twice/);
    await flush();
    expect(t.runs.length).toBe(1);
    await t.sup.close();
  });

  // Regression: every restart used to leave one more abort listener on the signal.
  it('restarts do not accumulate abort listeners on the signal', async () => {
    // 5 restarts (not 11+) so the run does not print Node's leak warning; currently 6 listeners.
    const t = make([...Array.from({ length: 5 }, (_, i) => new Error(`f${i}`)), null], { maxBackoffMs: 200 });
    t.sup.start();
    await flush();
    for (let i = 0; i < 5; i++) {
      t.clock.advance(200);
      await flush();
    }
    expect(t.runs.length).toBe(6);
    // Only the running child's own listener should be registered.
    expect(getEventListeners(t.runs[5]!.signal, 'abort').length).toBe(1);
    await t.sup.close();
  });

  it('errMeta describes errors and non-errors', () => {
    const meta = errMeta(new AdaggError(ErrorCode.Fenced, 'gone'));
    expect(meta).toMatchObject({ name: 'AdaggError', code: 'ADAGG_E_FENCED', message: 'gone' });
    // The stack is logged too, so a failure in production points at its line.
    expect(String(meta.stack)).toContain('supervisor.test.ts');
    expect(errMeta('text')).toEqual({ message: 'text' });
  });
});

describe('Lifecycle', () => {
  it('allows the legal transitions and notifies listeners', () => {
    const lc = new Lifecycle('x', silentLogger);
    const seen: Array<[LifecycleState, LifecycleState]> = [];
    const off = lc.onChange((to, from) => seen.push([from, to]));
    expect(lc.state).toBe('starting');
    lc.to('running');
    lc.to('running'); // same state: no-op, no event
    lc.to('failed');
    lc.to('starting');
    lc.to('running');
    lc.to('draining');
    off();
    lc.to('stopped');
    expect(lc.state).toBe('stopped');
    expect(seen).toEqual([
      ['starting', 'running'],
      ['running', 'failed'],
      ['failed', 'starting'],
      ['starting', 'running'],
      ['running', 'draining'],
    ]);
  });

  it('an illegal transition throws ADAGG_E_ILLEGAL_TRANSITION and keeps the state', () => {
    const cases: Array<[LifecycleState[], LifecycleState]> = [
      [['stopped'], 'running'],
      [['stopped'], 'starting'],
      [['running', 'draining'], 'running'],
      [['running', 'failed'], 'running'],
      [['running', 'failed'], 'draining'],
    ];
    for (const [path, bad] of cases) {
      const lc = new Lifecycle('x', silentLogger);
      for (const s of path) lc.to(s);
      const before = lc.state;
      let err: unknown;
      try {
        lc.to(bad);
      } catch (e) {
        err = e;
      }
      expect(err, `${path.join('>')} -> ${bad}`).toBeInstanceOf(AdaggError);
      expect((err as AdaggError).code).toBe(ErrorCode.IllegalTransition);
      expect((err as AdaggError).details).toEqual({ from: before, to: bad });
      expect(lc.state).toBe(before);
    }
  });
});
