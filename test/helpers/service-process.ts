/** Runs `adagg start` as a real child process (for SIGKILL/SIGSTOP tests) against given servers. */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { waitFor } from './wait.ts';

const ROOT = path.resolve(import.meta.dirname, '../..');

export interface ServiceProcess {
  url: string;
  child: ChildProcess;
  exited: Promise<number | null>;
  output(): string;
}

/**
 * Starts `adagg start` and waits for /readyz. Without `port` it listens on any free port
 * (ADAGG_HTTP_PORT=0) and the URL comes from its ready block: a port picked by the test could be
 * taken by another process before the child binds it. A restart passes the port it had before.
 */
export async function spawnService(env: Record<string, string>, port?: number): Promise<ServiceProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'start'], {
    cwd: ROOT,
    env: { ...process.env, ADAGG_LOG_LEVEL: 'warn', ADAGG_AUTH: 'off', ...env, ADAGG_HTTP_PORT: String(port ?? 0), ADAGG_HTTP_HOST: '127.0.0.1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let url = port === undefined ? undefined : `http://127.0.0.1:${port}`;
  child.stdout!.on('data', (d: Buffer) => {
    out = (out + d.toString()).slice(-20_000);
    url ??= /^ {2}gateway {5}(http:\/\/127\.0\.0\.1:\d+)/m.exec(out)?.[1];
  });
  child.stderr!.on('data', (d: Buffer) => (out = (out + d.toString()).slice(-20_000)));
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  try {
    await waitFor(
      'the service\'s /readyz',
      async () => {
        if (child.exitCode !== null || child.signalCode !== null) throw new Error(`service exited (${child.exitCode ?? child.signalCode})`);
        return url !== undefined && fetch(`${url}/readyz`).then((r) => r.ok, () => false);
      },
      { timeoutMs: 30_000, everyMs: 150 },
    );
  } catch (err) {
    child.kill('SIGKILL');
    throw new Error(`service did not become ready (${(err as Error).message}):\n${out}`);
  }
  return { url: url!, child, exited, output: () => out };
}

/**
 * The environment the crash tests give `adagg start`: the test's servers, a fresh prefix, 4 shards
 * and short idle/lateness/tick settings so minutes close quickly; `extra` adds or overrides.
 */
export function serviceEnv(servers: { natsUrl: string; redisUrl: string }, prefix: string, extra: Record<string, string> = {}): Record<string, string> {
  return {
    NATS_URL: servers.natsUrl,
    REDIS_URL: servers.redisUrl,
    ADAGG_PREFIX: prefix,
    ADAGG_SHARDS: '4',
    ADAGG_IDLE_TIMEOUT_MS: '1000',
    ADAGG_ALLOWED_LATENESS_MS: '5000',
    ADAGG_TICK_INTERVAL_MS: '100',
    ...extra,
  };
}
