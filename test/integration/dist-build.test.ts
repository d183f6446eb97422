/**
 * The build `npm start` runs: tsc emits src/ as JavaScript (relative imports rewritten to .js), the
 * build copies the worker bootstrap and the dashboard's files, and `node <out>/cli/main.js start`
 * then serves clicks with its actors in a worker thread, without tsx. Built into test-artifacts/
 * (inside the repo, so node_modules resolves), never into dist/.
 */
import { execFile, spawn } from 'node:child_process';
import { mkdir, readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../../src/runtime/local-servers.ts';
import { startTestServers, uniquePrefix, type TestServers } from '../helpers/servers.ts';
import { waitFor, waitForValue } from '../helpers/wait.ts';

const ROOT = path.resolve(import.meta.dirname, '../..');
const MINUTE = 60_000;
const run = promisify(execFile);

describe('the build (npm run build) runs without tsx', () => {
  const out = path.join(ROOT, 'test-artifacts', `dist-${uniquePrefix()}`);
  let servers: TestServers;

  beforeAll(async () => {
    await mkdir(out, { recursive: true });
    const tsc = path.join(ROOT, 'node_modules/typescript/bin/tsc');
    // The emit only: CI type-checks the same sources (tsc --noEmit).
    const emitOnly = ['--noCheck', '--declaration', 'false', '--sourceMap', 'false'];
    await run(process.execPath, [tsc, '-p', 'tsconfig.build.json', '--outDir', out, '--tsBuildInfoFile', path.join(out, '.tsbuildinfo'), ...emitOnly], { cwd: ROOT });
    await run(process.execPath, [path.join(ROOT, 'scripts/copy-build-assets.mjs'), out], { cwd: ROOT });
    servers = await startTestServers();
  }, 180_000);

  afterAll(async () => {
    await servers?.stop();
    await rm(out, { recursive: true, force: true });
  });

  it('emits .js imports and the files tsc does not', async () => {
    const main = await readFile(path.join(out, 'cli/main.js'), 'utf8');
    expect(main).toMatch(/from ["']\.\/start\.js["']/);
    expect(main).not.toMatch(/from ["']\.[^"']*\.ts["']/);
    await expect(readFile(path.join(out, 'runtime/worker-bootstrap.mjs'), 'utf8')).resolves.toContain('workerData.entry');
    await expect(readFile(path.join(out, 'gateway/static/index.html'), 'utf8')).resolves.toContain('<html');
  });

  it('`node <out>/cli/main.js start` serves the dashboard and counts a click, actors in a worker', async () => {
    const port = await freePort();
    const url = `http://127.0.0.1:${port}`;
    const child = spawn(process.execPath, [path.join(out, 'cli/main.js'), 'start'], {
      cwd: ROOT,
      env: {
        ...process.env,
        NODE_OPTIONS: '', // no loader inherited from the test runner
        NATS_URL: servers.natsUrl,
        REDIS_URL: servers.redisUrl,
        ADAGG_PREFIX: uniquePrefix(),
        ADAGG_SHARDS: '2',
        ADAGG_WORKERS: '1',
        ADAGG_HTTP_PORT: String(port),
        ADAGG_HTTP_HOST: '127.0.0.1',
        ADAGG_AUTH: 'off',
        ADAGG_IDLE_TIMEOUT_MS: '1000',
        ADAGG_LOG_LEVEL: 'info',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    try {
      await waitFor('"adagg is ready" logged', () => {
        if (child.exitCode !== null) throw new Error(`exited ${child.exitCode}:\n${output}`);
        return output.includes('adagg is ready');
      }, { timeoutMs: 60_000, everyMs: 100 });
      await waitForValue('readyz 200', () => fetch(`${url}/readyz`).then((r) => r.status), (s) => s === 200, { everyMs: 100 });

      const page = await fetch(`${url}/`);
      expect(page.status).toBe(200);
      expect(await page.text()).toContain('<html');

      const ts = Date.now();
      const posted = await fetch(`${url}/v1/clicks`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-ndjson' },
        body: `${JSON.stringify({ click_id: 'dist-1', ad_id: 'ad-dist', ts })}\n`,
      });
      expect(await posted.json()).toMatchObject({ accepted: 1 });
      const from = Math.floor(ts / MINUTE) * MINUTE;
      const body = await waitForValue(
        'the click counted',
        () => fetch(`${url}/v1/ads/ad-dist/aggregated_count?from=${from}&to=${from + MINUTE}`).then((r) => r.json() as Promise<{ count?: number }>),
        (b) => (b.count ?? 0) > 0,
        { everyMs: 100 },
      );
      expect(body.count).toBe(1);
      expect(output).not.toMatch(/"level":(50|60)/);
    } finally {
      child.kill('SIGTERM');
    }
    expect(await exited).toBe(0);
  });
});
