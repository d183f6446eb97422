import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServers, uniquePrefix, type TestServers } from '../helpers/servers.ts';
import { waitFor } from '../helpers/wait.ts';

const ROOT = path.resolve(import.meta.dirname, '../..');
const CHILD = path.join(ROOT, 'test/helpers/archive-shutdown-child.ts');
const STOP_MS = 1500;

interface ChildRun {
  lines: Array<Record<string, unknown>>;
  stderr: string[];
  send(line: string): void;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

function runChild(env: Record<string, string>): ChildRun {
  const child = spawn(process.execPath, ['--import', 'tsx', CHILD], { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['pipe', 'pipe', 'pipe'] });
  const lines: Array<Record<string, unknown>> = [];
  const stderr: string[] = [];
  let buf = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => {
    buf += d;
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      const l = buf.slice(0, i);
      buf = buf.slice(i + 1);
      try {
        lines.push(JSON.parse(l) as Record<string, unknown>);
      } catch {
        stderr.push(l);
      }
    }
  });
  child.stderr.setEncoding('utf8').on('data', (d: string) => stderr.push(d));
  return {
    lines,
    stderr,
    send: (l) => child.stdin.write(l + '\n'),
    exited: new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal }))),
  };
}

const line = (r: ChildRun, type: string): Record<string, unknown> | undefined => r.lines.find((l) => l.type === type);

/**
 * The native DuckDB abort at a worker thread's end (docs/history.md#shutdown): a DuckDB statement
 * still running while a thread's environment is torn down throws a `Napi::Error` in native code and
 * the process dies with SIGABRT. Archivers run in worker threads (`adagg start`): their close must
 * settle every DuckDB statement and close every DuckDB object, within a bound even when Redis does
 * not answer, so the thread then ends by itself (WorkerHosts would terminate it otherwise).
 */
describe('archiver shutdown: DuckDB closed in order, the worker thread ends, the process exits 0', () => {
  let servers: TestServers;
  let dir: string;
  beforeAll(async () => {
    servers = await startTestServers();
    dir = await mkdtemp(path.join(os.tmpdir(), 'adagg-archive-shutdown-'));
  });
  afterAll(async () => {
    servers?.redis.kill('SIGCONT');
    await servers?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('a buffer closed while its flush COPY runs: the statement is interrupted and awaited, nothing stays open', async () => {
    for (let i = 0; i < 2; i++) {
      const r = runChild({ SHUTDOWN_MODE: 'buffer', SHUTDOWN_ARCHIVE_DIR: path.join(dir, `buffer-${i}`), SHUTDOWN_DEADLINE_MS: '10000' });
      const end = await r.exited;
      const diag = JSON.stringify({ end, lines: r.lines, stderr: r.stderr.join('').slice(-2000) });
      expect(end, diag).toEqual({ code: 0, signal: null });
      expect(line(r, 'closed'), diag).toMatchObject({ openConnections: 0 });
      expect(line(r, 'exit'), diag).toEqual({ type: 'exit', code: 0, terminated: false });
    }
  });

  it('archivers under load stopped while Redis is frozen (SIGSTOP): close within the bound, then a clean exit', async () => {
    for (let i = 0; i < 2; i++) {
      const r = runChild({
        SHUTDOWN_MODE: 'archivers',
        SHUTDOWN_NATS_URL: servers.natsUrl,
        SHUTDOWN_REDIS_URL: servers.redisUrl,
        SHUTDOWN_PREFIX: uniquePrefix(),
        SHUTDOWN_ARCHIVE_DIR: path.join(dir, `archivers-${i}`),
        SHUTDOWN_STOP_MS: String(STOP_MS),
        // Redis calls would wait a minute: only the archivers' own bound ends their stop.
        SHUTDOWN_REDIS_TIMEOUT_MS: '60000',
        SHUTDOWN_DEADLINE_MS: '15000',
      });
      try {
        await waitFor('archivers committed files', () => line(r, 'ready') !== undefined || line(r, 'exit') !== undefined, { timeoutMs: 60_000 });
        expect(line(r, 'ready'), JSON.stringify(r.lines) + r.stderr.join('')).toBeDefined();
        servers.redis.kill('SIGSTOP');
        r.send('close');
        const end = await r.exited;
        const diag = JSON.stringify({ end, lines: r.lines, stderr: r.stderr.join('').slice(-2000) });
        expect(end, diag).toEqual({ code: 0, signal: null });
        const closed = line(r, 'closed');
        expect(closed, diag).toMatchObject({ openConnections: 0 });
        // The stop's flush bound plus the read loop's bound, with room for a loaded machine.
        expect(closed!.ms as number, diag).toBeLessThan(2 * STOP_MS + 8000);
        expect(line(r, 'exit'), diag).toEqual({ type: 'exit', code: 0, terminated: false });
      } finally {
        servers.redis.kill('SIGCONT');
        await r.exited;
      }
    }
  });

  it('archivers stopped after Redis died (SIGKILL): close within the bound, then a clean exit', async () => {
    const r = runChild({
      SHUTDOWN_MODE: 'archivers',
      SHUTDOWN_NATS_URL: servers.natsUrl,
      SHUTDOWN_REDIS_URL: servers.redisUrl,
      SHUTDOWN_PREFIX: uniquePrefix(),
      SHUTDOWN_ARCHIVE_DIR: path.join(dir, 'archivers-killed'),
      SHUTDOWN_STOP_MS: String(STOP_MS),
      SHUTDOWN_REDIS_TIMEOUT_MS: '60000',
      SHUTDOWN_DEADLINE_MS: '15000',
    });
    await waitFor('archivers committed files', () => line(r, 'ready') !== undefined || line(r, 'exit') !== undefined, { timeoutMs: 60_000 });
    expect(line(r, 'ready'), JSON.stringify(r.lines) + r.stderr.join('')).toBeDefined();
    servers.redis.kill('SIGKILL');
    await servers.redis.exited;
    r.send('close');
    const end = await r.exited;
    const diag = JSON.stringify({ end, lines: r.lines, stderr: r.stderr.join('').slice(-2000) });
    expect(end, diag).toEqual({ code: 0, signal: null });
    expect(line(r, 'closed'), diag).toMatchObject({ openConnections: 0 });
    expect(line(r, 'closed')!.ms as number, diag).toBeLessThan(2 * STOP_MS + 8000);
    expect(line(r, 'exit'), diag).toEqual({ type: 'exit', code: 0, terminated: false });
  });
});
