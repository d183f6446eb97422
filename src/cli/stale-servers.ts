import { readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { procStartOf } from './instance-lock.ts';

/**
 * `npm start` owns its nats-server and redis-server children. If adagg itself was SIGKILLed and
 * their watchdog could not stop them, they outlive it; the next start finds them through this pid
 * file and stops them before reusing the data directory, so two servers never share one store.
 *
 * Call it only while holding the data directory's instance lock (src/cli/instance-lock.ts): the
 * servers of a live instance are never leftovers.
 */
const PID_FILE = 'servers.pid.json';

interface Recorded {
  pid: number;
  /** The process's start time (/proc), so a reused pid is never taken for our server. */
  procStart: string | null;
}

export async function reapStaleServers(dataDir: string): Promise<number[]> {
  const file = path.join(dataDir, PID_FILE);
  let recorded: Recorded[] = [];
  try {
    const raw = JSON.parse(await readFile(file, 'utf8')) as Array<number | Recorded>;
    // Older runs recorded bare pids.
    recorded = raw.map((r) => (typeof r === 'number' ? { pid: r, procStart: null } : r));
  } catch {
    return [];
  }
  const killed: number[] = [];
  for (const { pid, procStart } of recorded) {
    if (procStart !== null && procStartOf(pid) !== procStart) continue; // gone, or the pid was reused
    const cmd = await readFile(`/proc/${String(pid)}/cmdline`, 'utf8').catch(() => '');
    // Only our own kinds of process (redis rewrites its title, so the data dir is not always visible).
    if (!/nats-server|redis-server/.test(cmd)) continue;
    try {
      process.kill(pid, 'SIGKILL');
      killed.push(pid);
    } catch {
      // already gone
    }
  }
  // Give the kernel a moment to release ports and file locks.
  if (killed.length) await new Promise((r) => setTimeout(r, 300));
  await forgetServers(dataDir);
  return killed;
}

/** Records the pids of the servers this run started (with their start times). */
export async function recordServers(dataDir: string, pids: number[]): Promise<void> {
  const recorded: Recorded[] = pids.map((pid) => ({ pid, procStart: procStartOf(pid) }));
  await writeFile(path.join(dataDir, PID_FILE), JSON.stringify(recorded));
}

/** The servers were stopped: nothing to reap next time. */
export async function forgetServers(dataDir: string): Promise<void> {
  await rm(path.join(dataDir, PID_FILE), { force: true });
}
