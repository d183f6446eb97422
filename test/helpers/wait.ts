/**
 * Waiting in tests: poll an observable condition until it holds, with a generous timeout and an
 * error that names what was awaited and what was last seen. A test never sleeps a fixed time to see
 * that "nothing happens"; it waits for an event that proves it, or asserts a bound. {@link pace} is
 * only for deliberate pacing (a publish rate, a retry backoff, a sampling period).
 *
 * @example
 * await waitFor('shard 0 running', () => node.running().has(0), { timeoutMs: 20_000, everyMs: 50 });
 * const body = await waitForValue('ad-1 final', () => getJson(url), (r) => r.body.final === true);
 */

export interface WaitOptions {
  /** Give up (throw {@link WaitTimeout}) once this long has passed. @default 30000 */
  timeoutMs?: number;
  /** Pause between two checks. @default 200 */
  everyMs?: number;
  /** The state to show in the timeout error (called once, when giving up). */
  detail?: () => unknown;
}

/** Thrown when a condition did not hold in time; the message says what was awaited. */
export class WaitTimeout extends Error {
  override readonly name = 'WaitTimeout';
  constructor(
    readonly what: string,
    readonly waitedMs: number,
    detail: string | undefined,
  ) {
    super(`timed out after ${waitedMs} ms waiting for ${what}${detail === undefined ? '' : `; last seen: ${detail}`}`);
  }
}

/**
 * Resolves after `ms`. For pacing only (a rate, a backoff, a sampling period), never as a wait for
 * something to happen: use {@link waitFor} for that.
 */
export function pace(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Checks `cond` every `everyMs` until it returns true. An exception from `cond` propagates at once
 * (a condition that can fail transiently catches its own errors).
 */
export async function waitFor(what: string, cond: () => boolean | Promise<boolean>, opts: WaitOptions = {}): Promise<void> {
  const { timeoutMs = 30_000, everyMs = 200 } = opts;
  const start = Date.now();
  for (;;) {
    if (await cond()) return;
    const waited = Date.now() - start;
    if (waited > timeoutMs) throw new WaitTimeout(what, waited, opts.detail ? show(opts.detail()) : undefined);
    await pace(everyMs);
  }
}

/** Reads until `ok(value)` holds and returns that value; the timeout error shows the last value read. */
export async function waitForValue<T>(what: string, read: () => T | Promise<T>, ok: (value: T) => boolean, opts: WaitOptions = {}): Promise<T> {
  let last: { value: T } | undefined;
  await waitFor(
    what,
    async () => {
      last = { value: await read() };
      return ok(last.value);
    },
    { ...opts, detail: opts.detail ?? (() => (last ? last.value : 'nothing read')) },
  );
  return last!.value;
}

/**
 * The time (`Date.now()`) at which `cond` was first seen true, or -1 if it was not within
 * `timeoutMs`: for measured figures whose caller asserts its own bound on the result.
 */
export async function timeWhen(cond: () => boolean | Promise<boolean>, opts: WaitOptions = {}): Promise<number> {
  try {
    await waitFor('a timed condition', cond, opts);
    return Date.now();
  } catch (err) {
    if (err instanceof WaitTimeout) return -1;
    throw err;
  }
}

function show(v: unknown): string {
  let s: string;
  try {
    s = typeof v === 'string' ? v : JSON.stringify(v) ?? String(v);
  } catch {
    s = String(v);
  }
  return s.length > 4000 ? `${s.slice(0, 4000)}…` : s;
}
