/** Runs `npm start` in a package dir as a terminal would: its own process group, for group signals. */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { waitFor } from '../helpers/wait.ts';

export interface NpmStart {
  npm: ChildProcess;
  url: string;
  /** npm's exit code. */
  exited: Promise<number | null>;
  /** The node process (the owner in the data dir's lock file); -1 when not awaited ready. */
  nodePid: number;
  /** Its child nats-server and redis-server (servers.pid.json). */
  serverPids: number[];
  output(): string;
}

/**
 * Spawns `npm start` in `pkgDir` (detached: its own process group, like a terminal's foreground
 * job). When `expectReady`, waits for /readyz 200 and reads the node and server pids.
 */
export async function npmStart(pkgDir: string, env: Record<string, string>, expectReady = true): Promise<NpmStart> {
  const port = env.ADAGG_HTTP_PORT!;
  const dataDir = env.ADAGG_DATA_DIR!;
  const npm = spawn('npm', ['start'], {
    cwd: pkgDir,
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: {
      ...process.env,
      NODE_OPTIONS: '', // no loader inherited from the test runner
      ADAGG_LOG_LEVEL: 'info',
      ADAGG_AUTH: 'off',
      ADAGG_HTTP_HOST: '127.0.0.1',
      ADAGG_WORKERS: '1',
      ADAGG_SHARDS: '2',
      ADAGG_IDLE_TIMEOUT_MS: '1000',
      ...env,
    },
  });
  let out = '';
  const add = (d: Buffer): void => {
    out = (out + d.toString()).slice(-200_000);
  };
  npm.stdout!.on('data', add);
  npm.stderr!.on('data', add);
  const exited = new Promise<number | null>((resolve) => npm.once('exit', (code) => resolve(code)));
  const url = `http://127.0.0.1:${port}`;
  const s: NpmStart = { npm, url, exited, nodePid: -1, serverPids: [], output: () => out };
  if (!expectReady) return s;
  try {
    await waitFor(
      `${url}/readyz`,
      async () => {
        if (npm.exitCode !== null || npm.signalCode !== null) throw new Error(`npm start exited (${String(npm.exitCode ?? npm.signalCode)})`);
        return fetch(`${url}/readyz`, { signal: AbortSignal.timeout(5_000) }).then((r) => r.ok, () => false);
      },
      { timeoutMs: 90_000, everyMs: 150 },
    );
  } catch (err) {
    await stopGroup(s, 'SIGKILL');
    throw new Error(`npm start did not become ready (${(err as Error).message}):\n${out}`);
  }
  s.nodePid = (JSON.parse(await readFile(path.join(dataDir, 'adagg.lock'), 'utf8')) as { pid: number }).pid;
  s.serverPids = (JSON.parse(await readFile(path.join(dataDir, 'servers.pid.json'), 'utf8')) as Array<{ pid: number }>).map((r) => r.pid);
  return s;
}

/** Signals npm's whole group, and (for SIGKILL cleanup) node and its servers directly. */
export async function stopGroup(s: NpmStart, signal: NodeJS.Signals): Promise<void> {
  const pids = signal === 'SIGKILL' ? [s.nodePid, ...s.serverPids] : [];
  try {
    process.kill(-s.npm.pid!, signal);
  } catch {
    // already gone
  }
  for (const pid of pids) {
    try {
      if (pid > 0) process.kill(pid, signal);
    } catch {
      // already gone
    }
  }
  if (s.npm.exitCode === null && s.npm.signalCode === null) await s.exited;
}
