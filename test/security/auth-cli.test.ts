/**
 * Authentication through the real commands: `adagg start` makes, prints and reuses a dev token
 * that the gateway, the dashboard URL and `adagg ingest --token` use; `adagg gateway` refuses an
 * unsafe configuration and reloads its tokens on SIGHUP.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startTestServers, type TestServers } from '../helpers/servers.ts';
import { waitFor } from '../helpers/wait.ts';
import { sha256Hex } from '../../src/gateway/auth/token-hash.ts';
import { STANDARD, TOKENS, tempDir, tokensJson, writeTokensFile } from './auth-helpers.ts';

const ROOT = path.resolve(import.meta.dirname, '../..');

interface Proc {
  child: ChildProcess;
  out(): string;
  exited: Promise<number | null>;
}

/** Runs `adagg <args>` from the sources with a clean auth environment plus `env`. */
function adagg(args: string[], env: Record<string, string>): Proc {
  const base = { ...process.env };
  for (const k of ['ADAGG_AUTH', 'ADAGG_TOKENS_FILE', 'ADAGG_INSECURE', 'ADAGG_HTTP_HOST', 'ADAGG_TOKEN', 'NATS_URL', 'REDIS_URL', 'VITEST']) delete base[k];
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], { cwd: ROOT, env: { ...base, ...env }, stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  return { child, out: () => out, exited };
}

const running: Proc[] = [];
afterEach(async () => {
  for (const p of running.splice(0)) {
    if (p.child.exitCode === null && p.child.signalCode === null) {
      p.child.kill('SIGTERM');
      await p.exited;
    }
  }
});

const status = async (url: string, token?: string): Promise<number> => {
  const res = await fetch(url, token ? { headers: { authorization: `Bearer ${token}` } } : {});
  await res.arrayBuffer();
  return res.status;
};

describe('adagg gateway', () => {
  it('refuses ADAGG_AUTH=off on 0.0.0.0 and auth on without ADAGG_TOKENS_FILE (exit 1, ADAGG_E_BAD_OPTION), adagg start too', async () => {
    const common = { NATS_URL: 'nats://127.0.0.1:1', REDIS_URL: 'redis://127.0.0.1:1', ADAGG_HTTP_PORT: '0' };
    const open = adagg(['gateway'], { ...common, ADAGG_AUTH: 'off', ADAGG_HTTP_HOST: '0.0.0.0' });
    expect(await open.exited).toBe(1);
    expect(open.out()).toMatch(/ADAGG_E_BAD_OPTION.*ADAGG_AUTH=off on 0\.0\.0\.0.*ADAGG_INSECURE=1/);
    const noTokens = adagg(['gateway'], common);
    expect(await noTokens.exited).toBe(1);
    expect(noTokens.out()).toMatch(/ADAGG_E_BAD_OPTION.*ADAGG_TOKENS_FILE/);
    // `adagg start` makes a dev token only on loopback: elsewhere it refuses before starting a node.
    const startWide = adagg(['start'], { ...common, ADAGG_HTTP_HOST: '0.0.0.0' });
    expect(await startWide.exited).toBe(1);
    expect(startWide.out()).toMatch(/ADAGG_E_BAD_OPTION.*ADAGG_TOKENS_FILE/);
    const startOpen = adagg(['start'], { ...common, ADAGG_HTTP_HOST: '0.0.0.0', ADAGG_AUTH: 'off' });
    expect(await startOpen.exited).toBe(1);
    expect(startOpen.out()).toMatch(/ADAGG_E_BAD_OPTION.*ADAGG_INSECURE=1/);
  });

  describe('on real servers', () => {
    let servers: TestServers;
    beforeAll(async () => {
      servers = await startTestServers();
    });
    afterAll(async () => {
      await servers?.stop();
    });

    it('reloads ADAGG_TOKENS_FILE on SIGHUP: a removed token stops working, a new one works', async () => {
      const dir = await tempDir();
      const file = await writeTokensFile(dir, STANDARD);
      // Any free port (a port picked here could be taken before the child binds it): its URL is in the 'gateway started' log line.
      const gw = adagg(['gateway'], { NATS_URL: servers.natsUrl, REDIS_URL: servers.redisUrl, ADAGG_TOKENS_FILE: file, ADAGG_HTTP_PORT: '0', ADAGG_SHARDS: '2', ADAGG_PREFIX: 'authhup' });
      running.push(gw);
      let url = '';
      await waitFor('gateway up', async () => {
        if (gw.child.exitCode !== null) throw new Error(`gateway exited:\n${gw.out()}`);
        const line = gw.out().split('\n').find((l) => l.includes('"gateway started"'));
        if (line === undefined) return false;
        url = `${(JSON.parse(line) as { url: string }).url}/openapi.json`;
        return (await status(url, TOKENS.read).catch(() => 0)) === 200;
      }, { timeoutMs: 60_000, everyMs: 200 });
      expect(await status(url)).toBe(401);

      const fresh = 'tok-after-sighup';
      await writeFile(file, tokensJson([...STANDARD.filter((t) => t.name !== 'only-read'), { name: 'fresh', token: fresh, scopes: ['read'] }]));
      gw.child.kill('SIGHUP');
      await waitFor('new token accepted', async () => (await status(url, fresh)) === 200, { timeoutMs: 30_000, everyMs: 100 });
      expect(await status(url, TOKENS.read)).toBe(401);

      // A broken file on reload: logged, the previous tokens stay, the process lives on.
      await writeFile(file, '{"tokens": [');
      gw.child.kill('SIGHUP');
      await waitFor('reload error logged', () => gw.out().includes('bearer tokens not reloaded'), { timeoutMs: 30_000, everyMs: 100 });
      expect(await status(url, fresh)).toBe(200);
      expect(gw.child.exitCode).toBeNull();
    });
  });
});

describe('adagg start', () => {
  it('makes a dev token (0600, under ADAGG_DATA_DIR), prints it with a dashboard URL, uses it, and reuses it on the next start', async () => {
    const dataDir = await tempDir();
    // Any free port (a port picked here could be taken before the child binds it, as a CI run saw): the ready block tells which.
    const env = { ADAGG_DATA_DIR: dataDir, ADAGG_HTTP_PORT: '0', ADAGG_SHARDS: '2', ADAGG_WORKERS: '0', ADAGG_LOG_LEVEL: 'warn' };
    let base = '';
    const startOnce = async (): Promise<string> => {
      const p = adagg(['start'], env);
      running.push(p);
      await waitFor('the ready message with the dashboard URL', () => {
        if (p.child.exitCode !== null) throw new Error(`adagg start exited:\n${p.out()}`);
        return /#token=[A-Za-z0-9_-]{43}/.test(p.out());
      }, { timeoutMs: 90_000, everyMs: 200 });
      const [, url, token] = /dashboard +(http:\/\/127\.0\.0\.1:\d+)\/#token=([A-Za-z0-9_-]{43})/.exec(p.out())!;
      base = url!;
      expect(p.out()).toMatch(new RegExp(`gateway +${base}\\s`));
      expect(await status(`${base}/v1/status`, token)).toBe(200);
      expect(await status(`${base}/v1/status`)).toBe(401);
      expect(await status(`${base}/`)).toBe(200);
      return token!;
    };
    const stop = async (): Promise<void> => {
      const p = running.pop()!;
      p.child.kill('SIGTERM');
      expect(await p.exited).toBe(0);
    };

    const token = await startOnce();
    const tokenFile = path.join(dataDir, 'dev-token');
    expect((await readFile(tokenFile, 'utf8')).trim()).toBe(token);
    expect((await stat(tokenFile)).mode & 0o777).toBe(0o600);
    const tokens = JSON.parse(await readFile(path.join(dataDir, 'dev-tokens.json'), 'utf8')) as { tokens: Array<{ sha256: string; scopes: string[] }> };
    expect(tokens.tokens).toEqual([{ name: 'dev', sha256: sha256Hex(token), scopes: ['ingest', 'read', 'jobs', 'metrics', 'admin'] }]);

    // `adagg ingest` sends the token (--token or ADAGG_TOKEN); without it the gateway refuses.
    const clicks = path.join(dataDir, 'clicks.ndjson');
    await writeFile(clicks, `${JSON.stringify({ click_id: 'cli-1', ad_id: 'ad-cli', ts: Date.now() })}\n`);
    // (The dev token never starts with '-', which `--token TOKEN` would read as an option: exit 2.)
    const withToken = adagg(['ingest', '--url', base, '--json', '--token', token, clicks], {});
    expect({ exit: await withToken.exited, out: withToken.out() }).toMatchObject({ exit: 0 });
    expect(withToken.out()).toContain('"accepted":1');
    const fromEnv = adagg(['ingest', '--url', base, '--json', clicks], { ADAGG_TOKEN: token });
    expect({ exit: await fromEnv.exited, out: fromEnv.out() }).toMatchObject({ exit: 0 });
    const without = adagg(['ingest', '--url', base, clicks], {});
    expect({ exit: await without.exited, out: without.out() }).toMatchObject({ exit: 1 });
    expect(without.out()).toContain('ADAGG_E_UNAUTHENTICATED');
    await stop();

    expect(await startOnce()).toBe(token);
    await stop();
  });
});
