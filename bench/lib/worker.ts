/** Bench worker children (bench/workers/*.ts) that report state as JSON lines on stdout. */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { sleep } from './stats.ts';

const ROOT = path.resolve(import.meta.dirname, '../..');

export interface Worker<S> {
  child: ChildProcess;
  pid: number;
  /** Latest state line (undefined until the first report). */
  state(): S | undefined;
  exited: Promise<number | null>;
  stderr(): string;
  stop(): Promise<void>;
  kill(): Promise<void>;
}

export async function startWorker<S>(file: string, env: Record<string, string>, readyTimeoutMs = 30_000): Promise<Worker<S>> {
  const child = spawn(process.execPath, ['--import', 'tsx', path.join('bench/workers', file)], {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let ready = false;
  let latest: S | undefined;
  let partial = '';
  let err = '';
  child.stdout!.on('data', (d: Buffer) => {
    const lines = (partial + d.toString()).split('\n');
    partial = lines.pop() ?? '';
    for (const l of lines) {
      if (!l.startsWith('{')) continue;
      const j = JSON.parse(l) as S & { ready?: boolean };
      if (j.ready) ready = true;
      else latest = j;
    }
  });
  child.stderr!.on('data', (d: Buffer) => (err = (err + d.toString()).slice(-10_000)));
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  const end = Date.now() + readyTimeoutMs;
  while (!ready) {
    if (child.exitCode !== null || Date.now() > end) {
      child.kill('SIGKILL');
      throw new Error(`worker ${file} did not start:\n${err}`);
    }
    await sleep(20);
  }
  const alive = () => child.exitCode === null && child.signalCode === null;
  return {
    child,
    pid: child.pid ?? -1,
    state: () => latest,
    exited,
    stderr: () => err,
    stop: async () => {
      if (alive()) child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(t);
    },
    kill: async () => {
      if (alive()) child.kill('SIGKILL');
      await exited;
    },
  };
}
