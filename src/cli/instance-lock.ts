/**
 * One `adagg start` (or `adagg dev --cluster`) per data directory.
 *
 * The lock is a file (`adagg.lock`) naming its owner: pid, the kernel's start time of that pid and
 * a random instance id. A lock whose owner is alive is respected: the second start exits with
 * ADAGG_E_INSTANCE_LOCKED and touches nothing. A lock whose owner is gone (a killed run) is stale:
 * it is taken over, and only then may the caller reap that run's leftover servers. The start time
 * makes the liveness check safe against pid reuse: a new process with the old pid has another
 * start time.
 */
import { randomUUID } from 'node:crypto';
import { readFileSync, unlinkSync } from 'node:fs';
import { link, readFile, stat, unlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { AdaggError, ErrorCode } from '../errors.ts';

/** What the lock file holds. */
export interface LockOwner {
  pid: number;
  /** Field 22 of /proc/<pid>/stat (clock ticks after boot); null where /proc is missing. */
  procStart: string | null;
  instance: string;
  /** ISO time the lock was taken, for people reading the file. */
  since: string;
  /** What holds it, e.g. `adagg start` and its HTTP port, for the refusal message. */
  what: string;
}

/** A held lock; {@link release} removes the file if it is still ours. */
export interface InstanceLock {
  readonly file: string;
  readonly owner: LockOwner;
  /** True when a stale lock of a killed run was taken over (its leftovers may be reaped). */
  readonly tookOver: boolean;
  release(): Promise<void>;
}

const LOCK_FILE = 'adagg.lock';
// Serialises takeovers of a stale lock between two starters; one left by a killed starter is old.
const TAKEOVER_STALE_MS = 10_000;

/** The start time of a process from /proc, or null (no /proc, or no such process). */
export function procStartOf(pid: number): string | null {
  try {
    const stat = readFileSync(`/proc/${String(pid)}/stat`, 'utf8');
    // The command name (field 2) may hold spaces and parentheses; fields after it follow the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return fields[19] ?? null; // field 22 overall
  } catch {
    return null;
  }
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** True while `pid` runs and, where a start time was recorded (/proc), it is the same process (a reused pid has another). */
export function processRunning(pid: number, procStart: string | null): boolean {
  if (!pidAlive(pid)) return false;
  return procStart === null || procStartOf(pid) === procStart;
}

/** True while the lock's owner runs: same pid and, where /proc exists, the same process start time. */
export function ownerAlive(owner: LockOwner): boolean {
  if (owner.pid === process.pid && owner.procStart === procStartOf(process.pid)) return true;
  return processRunning(owner.pid, owner.procStart);
}

async function readOwner(file: string): Promise<LockOwner | undefined> {
  try {
    const o = JSON.parse(await readFile(file, 'utf8')) as Partial<LockOwner>;
    if (typeof o.pid !== 'number' || typeof o.instance !== 'string') return undefined;
    return { pid: o.pid, procStart: o.procStart ?? null, instance: o.instance, since: o.since ?? '', what: o.what ?? 'adagg' };
  } catch {
    return undefined;
  }
}

/** Creates `file` with `text` atomically: written to a private name first, then hard-linked (fails if it exists). */
async function createExclusive(file: string, text: string): Promise<boolean> {
  const tmp = `${file}.${randomUUID()}.tmp`;
  await writeFile(tmp, text);
  try {
    await link(tmp, file);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw err;
  } finally {
    await unlink(tmp).catch(() => undefined);
  }
}

function lockedError(dir: string, owner: LockOwner): AdaggError {
  return new AdaggError(
    ErrorCode.InstanceLocked,
    `${owner.what} (pid ${String(owner.pid)}, since ${owner.since}) is already running with the data directory ${dir}; ` +
      'stop it first, or give this one another ADAGG_DATA_DIR',
    { details: { dir, owner } },
  );
}

/**
 * Takes the lock of `dir` (which must exist) for this process, or throws ADAGG_E_INSTANCE_LOCKED
 * when a live process holds it. A stale lock is taken over (`tookOver`). The lock is also removed
 * on a normal process exit.
 */
export async function acquireInstanceLock(dir: string, what: string): Promise<InstanceLock> {
  const file = path.join(dir, LOCK_FILE);
  const owner: LockOwner = { pid: process.pid, procStart: procStartOf(process.pid), instance: randomUUID(), since: new Date().toISOString(), what };
  const text = `${JSON.stringify(owner)}\n`;
  let tookOver = false;
  for (let attempt = 0; attempt < 50; attempt++) {
    if (await createExclusive(file, text)) return held(file, owner, tookOver);
    const current = await readOwner(file);
    if (current && ownerAlive(current)) throw lockedError(dir, current);
    // Stale (or unreadable): replace it, one starter at a time, re-checking under the takeover lock.
    const takeover = `${file}.takeover`;
    if (!(await createExclusive(takeover, `${String(process.pid)}\n`))) {
      const age = await stat(takeover).then((s) => Date.now() - s.mtimeMs, () => 0);
      if (age > TAKEOVER_STALE_MS) await unlink(takeover).catch(() => undefined);
      await new Promise((r) => setTimeout(r, 100));
      continue;
    }
    try {
      const again = await readOwner(file);
      if (again && ownerAlive(again)) throw lockedError(dir, again);
      if (again?.instance === current?.instance) {
        await unlink(file).catch(() => undefined);
        tookOver = true;
      }
    } finally {
      await unlink(takeover).catch(() => undefined);
    }
  }
  throw new AdaggError(ErrorCode.InstanceLocked, `could not take the lock ${file}`);
}

function held(file: string, owner: LockOwner, tookOver: boolean): InstanceLock {
  let released = false;
  const mine = (): boolean => {
    try {
      return (JSON.parse(readFileSync(file, 'utf8')) as LockOwner).instance === owner.instance;
    } catch {
      return false;
    }
  };
  const onExit = (): void => {
    try {
      if (!released && mine()) unlinkSync(file);
    } catch {
      // exiting anyway; a stale lock is taken over by the next start
    }
  };
  process.once('exit', onExit);
  return {
    file,
    owner,
    tookOver,
    release: async () => {
      if (released) return;
      released = true;
      process.removeListener('exit', onExit);
      if (mine()) await unlink(file).catch(() => undefined);
    },
  };
}
