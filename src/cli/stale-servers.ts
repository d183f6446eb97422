import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';

/**
 * `npm start` owns its nats-server and redis-server children. If adagg itself was SIGKILLed they
 * outlive it; the next start finds them through this pid file and stops them before reusing the
 * data directory, so two servers never share one store.
 */
export async function reapStaleServers(dataDir: string): Promise<number[]> {
  const file = path.join(dataDir, 'servers.pid.json');
  let pids: number[] = [];
  try {
    pids = JSON.parse(await readFile(file, 'utf8')) as number[];
  } catch {
    return [];
  }
  const killed: number[] = [];
  for (const pid of pids) {
    const cmd = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
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
  return killed;
}

export async function recordServers(dataDir: string, pids: number[]): Promise<void> {
  await writeFile(path.join(dataDir, 'servers.pid.json'), JSON.stringify(pids));
}
