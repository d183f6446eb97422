/** Process checks for tests that kill and watch real processes. */
import { readdirSync, readFileSync } from 'node:fs';

/** True while a process with this pid exists and runs (signal 0 only checks existence; a zombie does not run). */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    return !/^\S+ \(.*\) Z/.test(readFileSync(`/proc/${String(pid)}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

/** True once every thread of the process is stopped (state `T`): SIGSTOP has taken effect. */
export function stopped(pid: number): boolean {
  let tids: string[];
  try {
    tids = readdirSync(`/proc/${String(pid)}/task`);
  } catch {
    return false;
  }
  return tids.every((tid) => {
    try {
      return /^\S+ \(.*\) [Tt]/.test(readFileSync(`/proc/${String(pid)}/task/${tid}/stat`, 'utf8'));
    } catch {
      return true; // the thread is gone
    }
  });
}

/**
 * SIGSTOPs a process and waits until it has really stopped. The kernel stops a process only once
 * the thread chosen to take the signal runs again; a thread blocked on disk (fsync on a loaded
 * machine) can leave the others serving for tens of milliseconds after `kill` returned.
 */
export async function freeze(target: { pid: number; kill(signal: NodeJS.Signals): void }, timeoutMs = 10_000): Promise<void> {
  target.kill('SIGSTOP');
  const deadline = Date.now() + timeoutMs;
  while (!stopped(target.pid)) {
    if (Date.now() > deadline) throw new Error(`process ${String(target.pid)} not stopped ${String(timeoutMs)} ms after SIGSTOP`);
    await new Promise((r) => setTimeout(r, 5));
  }
}
