/**
 * Issue 11, defects 14 and 15: `npm start` stops cleanly on Ctrl-C and SIGTERM, and a second
 * `npm start` in the same folder leaves the live one alone.
 *
 * Runs the real `npm start`: the sources are emitted (no type check) into test-artifacts/, next to
 * a package.json whose `start` script is this repo's own, so npm, its `sh -c` and its signal
 * forwarding are exactly those of `npm start` (prestart's build is the only part left out).
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdir, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../../src/runtime/local-servers.ts';
import { uniquePrefix } from '../helpers/servers.ts';
import { waitFor, waitForValue } from '../helpers/wait.ts';
import { alive } from '../helpers/processes.ts';
import { npmStart, stopGroup, type NpmStart } from './npm-start.ts';

const ROOT = path.resolve(import.meta.dirname, '../..');
const run = promisify(execFile);
// ADAGG_SHUTDOWN_TIMEOUT_MS's default, plus generous headroom for a loaded 2-core machine.
const SHUTDOWN_DEADLINE_MS = 15_000;
const EXIT_BOUND_MS = SHUTDOWN_DEADLINE_MS + 15_000;
const AD = 'ad-lifecycle';

async function count(url: string, fromMs: number): Promise<number> {
  const q = `from=${String(fromMs)}&to=${String(Date.now() + 120_000)}`;
  const res = await fetch(`${url}/v1/ads/${AD}/aggregated_count?${q}`, { signal: AbortSignal.timeout(10_000) });
  if (res.status !== 200) return -1;
  return ((await res.json()) as { count: number }).count;
}

async function ingest(url: string, ids: string[]): Promise<void> {
  const now = Date.now();
  const body = ids.map((id) => JSON.stringify({ click_id: id, ad_id: AD, ts: now })).join('\n');
  const res = await fetch(`${url}/v1/clicks`, { method: 'POST', headers: { 'content-type': 'application/x-ndjson' }, body });
  expect(res.status).toBe(200);
  expect(((await res.json()) as { accepted: number }).accepted).toBe(ids.length);
}

/** Pids of the watchdogs guarding these server pids (src/runtime/child-watchdog.ts). */
async function watchdogsOf(serverPids: number[]): Promise<number[]> {
  const out: number[] = [];
  for (const e of await readdir('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    const cmd = await readFile(`/proc/${e}/cmdline`, 'utf8').catch(() => '');
    if (serverPids.some((p) => cmd.includes(`kill -KILL ${String(p)} `))) out.push(Number(e));
  }
  return out;
}

/** `node <script> <args>` in its own process group, its output kept. */
function spawnLogged(script: string, args: string[], env: NodeJS.ProcessEnv): { child: ChildProcess; exited: Promise<number | null>; output(): string } {
  const child = spawn(process.execPath, [script, ...args], { cwd: ROOT, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out = (out + d.toString()).slice(-200_000)));
  child.stderr!.on('data', (d: Buffer) => (out = (out + d.toString()).slice(-200_000)));
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  return { child, exited, output: () => out };
}

describe('npm start: clean stop and one instance per data directory (defects 14, 15)', () => {
  const pkgDir = path.join(ROOT, 'test-artifacts', `lifecycle-${uniquePrefix()}`);
  const running: NpmStart[] = [];
  const start = async (dataDir: string, port: number, expectReady = true): Promise<NpmStart> => {
    const s = await npmStart(pkgDir, { ADAGG_DATA_DIR: dataDir, ADAGG_HTTP_PORT: String(port) }, expectReady);
    running.push(s);
    return s;
  };

  beforeAll(async () => {
    await mkdir(pkgDir, { recursive: true });
    const tsc = path.join(ROOT, 'node_modules/typescript/bin/tsc');
    const out = path.join(pkgDir, 'dist');
    const emitOnly = ['--noCheck', '--declaration', 'false', '--sourceMap', 'false'];
    await run(process.execPath, [tsc, '-p', 'tsconfig.build.json', '--outDir', out, '--tsBuildInfoFile', path.join(pkgDir, '.tsbuildinfo'), ...emitOnly], { cwd: ROOT });
    await run(process.execPath, [path.join(ROOT, 'scripts/copy-build-assets.mjs'), out], { cwd: ROOT });
    const pkg = JSON.parse(await readFile(path.join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> };
    await writeFile(path.join(pkgDir, 'package.json'), JSON.stringify({ name: 'adagg-lifecycle-test', private: true, type: 'module', scripts: { start: pkg.scripts.start } }));
  }, 180_000);

  afterAll(async () => {
    for (const s of running) await stopGroup(s, 'SIGKILL');
    await rm(pkgDir, { recursive: true, force: true });
  }, 60_000);

  it('Ctrl-C (SIGINT to the process group) stops within the deadline, 5 times in a row, leaving no server and losing no click', async () => {
    const dataDir = path.join(pkgDir, 'data-ctrl-c');
    const port = await freePort();
    const from = Date.now() - 120_000;
    for (let round = 0; round < 5; round++) {
      const s = await start(dataDir, port);
      expect(s.output()).toContain(`NATS_URL    nats://127.0.0.1:`);
      // What earlier rounds ingested is all there after each restart.
      await waitForValue(`round ${String(round)}: earlier clicks counted`, () => count(s.url, from), (n) => n === 3 * round, { timeoutMs: 60_000, everyMs: 250 });
      await ingest(s.url, [0, 1, 2].map((k) => `r${String(round)}-${String(k)}`));

      const t0 = Date.now();
      process.kill(-s.npm.pid!, 'SIGINT');
      const code = await s.exited;
      await waitFor('node exited', () => !alive(s.nodePid), { timeoutMs: EXIT_BOUND_MS, everyMs: 50 });
      const took = Date.now() - t0;
      expect(took, s.output()).toBeLessThan(EXIT_BOUND_MS);
      expect(code, s.output()).toBe(0);
      for (const pid of s.serverPids) expect(alive(pid), `server ${String(pid)} left running`).toBe(false);
      expect(s.output()).not.toMatch(/ECONNREFUSED/);
    }
    const last = await start(dataDir, port);
    await waitForValue('all 15 clicks counted after the last restart', () => count(last.url, from), (n) => n === 15, { timeoutMs: 60_000, everyMs: 250 });
    process.kill(-last.npm.pid!, 'SIGINT');
    await last.exited;
  }, 600_000);

  it('SIGTERM to the npm process stops node and its servers too', async () => {
    const s = await start(path.join(pkgDir, 'data-sigterm'), await freePort());
    s.npm.kill('SIGTERM');
    await s.exited;
    await waitFor('node exited', () => !alive(s.nodePid), { timeoutMs: EXIT_BOUND_MS, everyMs: 50 });
    for (const pid of s.serverPids) await waitFor(`server ${String(pid)} stopped`, () => !alive(pid), { timeoutMs: 10_000, everyMs: 50 });
  }, 180_000);

  it('a second start in the same folder is refused and leaves the live instance alone; a killed run is taken over', async () => {
    const dataDir = path.join(pkgDir, 'data-lock');
    const a = await start(dataDir, await freePort());
    const b = await start(dataDir, await freePort(), false);
    const code = await b.exited;
    expect(code).not.toBe(0);
    expect(b.output()).toContain('ADAGG_E_INSTANCE_LOCKED');
    expect(b.output()).toContain(`pid ${String(a.nodePid)}`);
    // The first instance kept its servers and still serves.
    for (const pid of a.serverPids) expect(alive(pid)).toBe(true);
    expect((await fetch(`${a.url}/readyz`)).status).toBe(200);
    await ingest(a.url, ['lock-a-1']);

    // A killed run whose servers outlived it (their watchdogs killed too): the next start takes the
    // lock over and reaps those servers before it starts its own.
    for (const pid of await watchdogsOf(a.serverPids)) process.kill(pid, 'SIGKILL');
    process.kill(a.nodePid, 'SIGKILL');
    await a.exited;
    for (const pid of a.serverPids) expect(alive(pid)).toBe(true);
    const c = await start(dataDir, await freePort());
    expect(c.output()).toMatch(/took over the lock of a previous run/);
    expect(c.output()).toMatch(/stopped servers left by a previous run/);
    for (const pid of a.serverPids) expect(alive(pid)).toBe(false);

    // SIGKILL of node alone: the watchdogs stop its servers at once, and the next start succeeds.
    process.kill(c.nodePid, 'SIGKILL');
    await c.exited;
    for (const pid of c.serverPids) await waitFor(`server ${String(pid)} stopped by its watchdog`, () => !alive(pid), { timeoutMs: 10_000, everyMs: 50 });
    const d = await start(dataDir, await freePort());
    expect((await fetch(`${d.url}/readyz`)).status).toBe(200);
    process.kill(-d.npm.pid!, 'SIGINT');
    expect(await d.exited).toBe(0);
  }, 600_000);

  it('adagg dev --cluster: Ctrl-C stops nodes, gateway and servers promptly; a second one in the same folder is refused', async () => {
    const dataDir = path.join(pkgDir, 'data-dev');
    const env = {
      ...process.env,
      NODE_OPTIONS: '',
      ADAGG_DATA_DIR: dataDir,
      ADAGG_HTTP_PORT: String(await freePort()),
      ADAGG_AUTH: 'off',
      ADAGG_WORKERS: '0',
      ADAGG_SHARDS: '2',
      ADAGG_LOG_LEVEL: 'info',
    };
    const main = path.join(pkgDir, 'dist/cli/main.js');
    const dev = spawnLogged(main, ['dev', '--cluster', '--nodes', '2'], env);
    try {
      await waitFor('dev cluster up', () => {
        if (dev.child.exitCode !== null) throw new Error(`adagg dev exited:\n${dev.output()}`);
        return dev.output().includes('adagg dev cluster is up');
      }, { timeoutMs: 180_000, everyMs: 200 });
      const serverPids = (JSON.parse(await readFile(path.join(dataDir, 'cluster', 'servers.pid.json'), 'utf8')) as Array<{ pid: number }>).map((r) => r.pid);
      expect(serverPids).toHaveLength(4);

      const second = spawnLogged(main, ['dev', '--cluster', '--nodes', '1'], { ...env, ADAGG_HTTP_PORT: String(await freePort()) });
      expect(await second.exited).toBe(1);
      expect(second.output()).toContain('ADAGG_E_INSTANCE_LOCKED');
      for (const pid of serverPids) expect(alive(pid)).toBe(true);

      const t0 = Date.now();
      process.kill(-dev.child.pid!, 'SIGINT');
      expect(await dev.exited).toBe(0);
      // It used to wait out a 10 s kill timeout for its nodes.
      expect(Date.now() - t0, dev.output()).toBeLessThan(10_000);
      expect(dev.output()).not.toContain('did not stop within');
      for (const pid of serverPids) expect(alive(pid)).toBe(false);
    } finally {
      try {
        process.kill(-dev.child.pid!, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  }, 400_000);
});
