/**
 * Issue 13, part 1: a newcomer's first hour.
 *
 * - `adagg start` prints where everything is (gateway, dashboard, NATS_URL, REDIS_URL, data folder)
 *   and how to run the operator CLI against it.
 * - The CLI finds that instance from ./data (its instance.json) with no environment variable, no
 *   --url and no token; a file left by a dead process is ignored with a message saying so.
 * - Logs: pretty on a terminal, JSON lines on a pipe.
 *
 * The stack runs as a user runs it: `adagg start` in its own process from a fresh folder, with
 * authentication on (the dev token), and every CLI command a separate process from that folder.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../../src/runtime/local-servers.ts';
import { createLogger, type LogDestination } from '../../src/runtime/logger.ts';
import { runAdagg, type CliRun } from '../helpers/adagg-cli.ts';
import { waitFor } from '../helpers/wait.ts';

const ROOT = path.resolve(import.meta.dirname, '../..');
const MAIN = path.join(ROOT, 'src/cli/main.ts');
// Absolute, so the commands can run from a folder outside the repository.
const TSX = pathToFileURL(path.join(ROOT, 'node_modules/tsx/dist/loader.mjs')).href;
const AD = 'ad-newcomer';

/** A user's environment: none of adagg's variables, no test runner, no loader. */
function userEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (k.startsWith('ADAGG_') || k.startsWith('VITEST') || k.startsWith('NATS_') || k.startsWith('REDIS_') || k === 'NODE_OPTIONS') continue;
    env[k] = v;
  }
  return { ...env, ...extra };
}

/** `adagg <args>` from `cwd`, as a separate process. */
const adagg = (args: string[], cwd: string, env: NodeJS.ProcessEnv = userEnv()): Promise<CliRun> => runAdagg(args, { cwd, env, timeoutMs: 120_000 });

/** A destination that keeps what it is given, as a terminal (`isTTY`) or a pipe. */
function capture(isTTY: boolean): LogDestination & { text(): string } {
  const chunks: string[] = [];
  return { isTTY, write: (s: string) => chunks.push(s), text: () => chunks.join('') };
}

describe('npm ci on the Node versions package.json states prints no engine warning', () => {
  // npm's own engine check (npm-install-checks) is semver.satisfies on each locked package.
  const semver = createRequire(import.meta.url)('semver') as { satisfies(v: string, range: string): boolean; minVersion(range: string): { version: string } };

  it("every locked package that npm installs accepts this Node and the lowest version of each of package.json's ranges", async () => {
    const pkg = JSON.parse(await readFile(path.join(ROOT, 'package.json'), 'utf8')) as { engines: { node: string } };
    const lock = JSON.parse(await readFile(path.join(ROOT, 'package-lock.json'), 'utf8')) as {
      packages: Record<string, { version?: string; optional?: boolean; engines?: { node?: string } }>;
    };
    // The lowest version of each `||` branch: ^20.19.0 || ^22.13.0 || >=24 → 20.19.0, 22.13.0, 24.0.0.
    const versions = [process.version.slice(1), ...pkg.engines.node.split('||').map((r) => semver.minVersion(r.trim()).version)];
    expect(semver.satisfies(process.version.slice(1), pkg.engines.node), `this Node (${process.version}) is outside package.json's engines`).toBe(true);
    const refused: string[] = [];
    for (const [where, p] of Object.entries(lock.packages)) {
      // An optional package whose engine does not match is skipped without a warning.
      if (where === '' || p.optional === true || !p.engines?.node) continue;
      for (const v of versions) if (!semver.satisfies(v, p.engines.node)) refused.push(`${where}@${p.version ?? '?'} wants node ${p.engines.node}, not ${v}`);
    }
    expect(refused).toEqual([]);
  });
});

describe('logs: pretty on a terminal, JSON on a pipe', () => {
  const emit = (dest: LogDestination, format?: 'auto' | 'pretty' | 'json'): void => {
    const log = createLogger('adagg', { level: 'info', destination: dest, ...(format ? { format } : {}) });
    log.info({ url: 'http://127.0.0.1:8080', shards: 2 }, 'adagg is ready');
    log.warn('took over the lock of a previous run that was killed');
  };

  it('a terminal gets pino-pretty lines, not JSON', () => {
    const tty = capture(true);
    emit(tty);
    const lines = tty.text().trimEnd().split('\n');
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatch(/INFO.*\(adagg\): .*adagg is ready.*"url":"http:\/\/127\.0\.0\.1:8080"/);
    expect(lines[1]).toMatch(/WARN.*took over the lock/);
    for (const l of lines) expect(() => JSON.parse(l) as unknown).toThrow();
  });

  it('a pipe gets one JSON object a line', () => {
    const pipe = capture(false);
    emit(pipe);
    const lines = pipe.text().trimEnd().split('\n').map((l) => JSON.parse(l) as { msg: string; level: number; url?: string });
    expect(lines.map((l) => l.msg)).toEqual(['adagg is ready', 'took over the lock of a previous run that was killed']);
    expect(lines[0]!.url).toBe('http://127.0.0.1:8080');
  });

  it('ADAGG_LOG_FORMAT forces either (json on a terminal, pretty without colours on a pipe)', () => {
    const tty = capture(true);
    emit(tty, 'json');
    expect((JSON.parse(tty.text().split('\n')[0]!) as { msg: string }).msg).toBe('adagg is ready');
    const pipe = capture(false);
    emit(pipe, 'pretty');
    expect(pipe.text()).toMatch(/INFO.*adagg is ready/);
    expect(pipe.text()).not.toContain('\u001b[');
  });
});

describe('adagg start, then the CLI from the same folder with no variables', () => {
  let home: string;
  let dataDir: string;
  let port: number;
  let child: ChildProcess | undefined;
  let exited: Promise<number | null>;
  let out = '';
  let stdout = '';
  let block: string[] = [];

  /** The value after a block label (`  NATS_URL    nats://…`). */
  const field = (label: string): string => {
    const line = block.find((l) => l.startsWith(`  ${label} `));
    if (!line) throw new Error(`no '${label}' line in the ready block:\n${block.join('\n')}`);
    return line.slice(label.length + 2).trim().split(/\s+/)[0]!;
  };

  beforeAll(async () => {
    home = await mkdtemp(path.join(os.tmpdir(), 'adagg-newcomer-'));
    dataDir = path.join(home, 'data');
    port = await freePort();
    // From a fresh folder, as `npm start` runs from a checkout: ./data is the default data folder.
    child = spawn(process.execPath, ['--import', TSX, MAIN, 'start'], {
      cwd: home,
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: userEnv({ ADAGG_HTTP_PORT: String(port), ADAGG_WORKERS: '1', ADAGG_SHARDS: '2', ADAGG_IDLE_TIMEOUT_MS: '1000' }),
    });
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      stdout += d.toString();
    });
    child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    const c = child;
    exited = new Promise((r) => c.once('exit', (code) => r(code)));
    await waitFor('the ready block', () => {
      if (c.exitCode !== null) throw new Error(`adagg start exited (${String(c.exitCode)}):\n${out}`);
      return /\nCtrl-C stops it/.test(out);
    }, { timeoutMs: 150_000, everyMs: 200, detail: () => out.slice(-3000) });
    const lines = out.split('\n');
    block = lines.slice(lines.indexOf('adagg is ready'));
  }, 180_000);

  afterAll(async () => {
    if (child && child.exitCode === null && child.signalCode === null) {
      const pids = await readFile(path.join(dataDir, 'servers.pid.json'), 'utf8')
        .then((t) => (JSON.parse(t) as Array<{ pid: number }>).map((r) => r.pid))
        .catch(() => [] as number[]);
      for (const pid of [-child.pid!, ...pids]) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // gone
        }
      }
      await exited;
    }
    await rm(home, { recursive: true, force: true });
  }, 60_000);

  it('prints the gateway, dashboard, NATS_URL, REDIS_URL, data folder and the operator CLI', async () => {
    const url = `http://127.0.0.1:${String(port)}`;
    expect(field('gateway')).toBe(url);
    expect(field('dashboard')).toMatch(new RegExp(`^${url}/#token=[A-Za-z0-9_-]{43}$`));
    expect(field('NATS_URL')).toMatch(/^nats:\/\/127\.0\.0\.1:\d+$/);
    expect(field('REDIS_URL')).toMatch(/^redis:\/\/127\.0\.0\.1:\d+$/);
    expect(field('data')).toBe(dataDir);
    const cli = block.join('\n');
    expect(cli).toContain('  CLI         npx adagg placement');
    expect(cli).toContain('npx adagg ingest FILE...');
    expect(cli).toMatch(/Popular ads fill once a minute has closed/);
    // The instance file the CLI reads, naming this process and these servers.
    const inst = JSON.parse(await readFile(path.join(dataDir, 'instance.json'), 'utf8')) as Record<string, unknown>;
    expect(inst).toMatchObject({ pid: child!.pid, url, natsUrl: field('NATS_URL'), redisUrl: field('REDIS_URL'), dataDir });
    expect((await stat(path.join(dataDir, 'instance.json'))).mode & 0o077).toBe(0);
  });

  it('logs JSON lines on a pipe (the ready line among them)', () => {
    // stdout alone: the log (stderr carries only what Node itself may warn about).
    const logLines = stdout.slice(0, stdout.indexOf('\nadagg is ready\n')).split('\n').filter((l) => l !== '');
    expect(logLines.length, out.slice(0, 4000)).toBeGreaterThan(0);
    const notJson = logLines.filter((l) => {
      try {
        JSON.parse(l);
        return false;
      } catch {
        return true;
      }
    });
    expect(notJson, out.slice(0, 4000)).toEqual([]);
    const parsed = logLines.map((l) => JSON.parse(l) as { msg: string; url?: string });
    expect(parsed.find((l) => l.msg === 'adagg is ready')?.url).toBe(`http://127.0.0.1:${String(port)}`);
  });

  it('an operator command finds the instance with no NATS_URL / REDIS_URL', async () => {
    const r = await adagg(['nodes', '--json'], home);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain(`using the local instance of ${path.join(dataDir, 'instance.json')}`);
    const report = JSON.parse(r.stdout) as { shards: number; nodes: Array<{ id: string; state: string; shards: number }> };
    expect(report.shards).toBe(2);
    expect(report.nodes).toEqual([expect.objectContaining({ id: 'local', state: 'alive', shards: 2 })]);
    // From anywhere else, ADAGG_DATA_DIR names the folder.
    const p = await adagg(['placement', '--json'], os.tmpdir(), userEnv({ ADAGG_DATA_DIR: dataDir }));
    expect(p.code, p.stderr).toBe(0);
    const rows = (JSON.parse(p.stdout) as { shards: Array<{ shard: number; owner: string | null }> }).shards;
    expect(rows.map((s) => s.owner)).toEqual(['local', 'local']);
  });

  it('adagg ingest finds the gateway and its dev token, and the clicks are counted', async () => {
    const now = Date.now();
    const file = path.join(home, 'clicks.ndjson');
    await writeFile(file, [1, 2, 3].map((i) => JSON.stringify({ click_id: `nc-${String(i)}`, ad_id: AD, ts: now })).join('\n') + '\n');
    const r = await adagg(['ingest', '--json', file], home);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ lines: 3, accepted: 3, rejected: 0 });
    const token = (await readFile(path.join(dataDir, 'dev-token'), 'utf8')).trim();
    const q = `${field('gateway')}/v1/ads/${AD}/aggregated_count?from=${String(now - 120_000)}&to=${String(now + 120_000)}`;
    await waitFor('3 clicks counted', async () => {
      const res = await fetch(q, { headers: { authorization: `Bearer ${token}` } });
      return res.ok && ((await res.json()) as { count: number }).count === 3;
    }, { timeoutMs: 60_000, everyMs: 250 });
  });

  it('a clean stop removes instance.json; a file whose process is gone is ignored with a message', async () => {
    process.kill(child!.pid!, 'SIGTERM');
    expect(await exited).toBe(0);
    await expect(stat(path.join(dataDir, 'instance.json'))).rejects.toMatchObject({ code: 'ENOENT' });
    // What a killed run leaves: the file of a process that no longer runs.
    const dead = spawn(process.execPath, ['-e', '']);
    const deadPid = dead.pid!;
    await new Promise((r) => dead.once('exit', r));
    const stale = { pid: deadPid, procStart: null, instance: 'x', url: 'http://127.0.0.1:1', natsUrl: 'nats://127.0.0.1:1', redisUrl: 'redis://127.0.0.1:1', prefix: 'adagg', dataDir, since: '' };
    await writeFile(path.join(dataDir, 'instance.json'), JSON.stringify(stale));
    const r = await adagg(['nodes'], home);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`ignoring ${path.join(dataDir, 'instance.json')}: the adagg start that wrote it (pid ${String(deadPid)}) is not running`);
    expect(r.stderr).toContain('ADAGG_E_BAD_OPTION: REDIS_URL must be set');
  }, 60_000);
});
