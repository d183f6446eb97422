/**
 * The server configs and units of deploy/ pass the real programs: nats-server accepts the NATS
 * configs (`-t`), redis-server runs the container config and a Sentinel runs sentinel.conf and
 * finds its primary by host name, and systemd-analyze verifies the units. A program that is not
 * installed skips its test (nats-server and redis-server are on every CI machine).
 */
import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { freePort } from '../../src/runtime/local-servers.ts';
import { waitForValue } from '../helpers/wait.ts';
import * as f from './deploy-files.ts';
import type { K8sObject } from './k8s-checks.ts';

const run = promisify(execFile);
const PATH = `${process.env.PATH ?? ''}:/usr/local/sbin:/usr/sbin`;
const NATS = process.env.ADAGG_NATS_SERVER ?? 'nats-server';
const REDIS = process.env.ADAGG_REDIS_SERVER ?? 'redis-server';
const has = (bin: string) => spawnSync(bin, ['--version'], { env: { ...process.env, PATH } }).status === 0;
const units = f.walk(path.join(f.DEPLOY, 'systemd')).filter((p) => p.endsWith('.service'));
const unitValue = (unit: string, key: string) => f.unitEntries(unit).filter(([k]) => k === key).map(([, v]) => v).at(-1);

const dirs: string[] = [];
const children: ChildProcess[] = [];
async function tempDir(): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'adagg-deploy-'));
  dirs.push(dir);
  return dir;
}
afterAll(async () => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
});

describe('deploy/ configs pass the real servers and tools', () => {
  it.skipIf(!has(NATS))('nats-server -t accepts the container and Kubernetes NATS configs', async () => {
    const k8s = f.yamlDocs(path.join(f.DEPLOY, 'k8s/nats.yaml')) as K8sObject[];
    const k8sConf = path.join(await tempDir(), 'k8s-nats.conf');
    await writeFile(k8sConf, k8s.find((o) => o.kind === 'ConfigMap')?.data?.['nats.conf'] ?? '(no nats.conf)');
    for (const conf of [path.join(f.DEPLOY, 'nats/container.conf'), k8sConf]) {
      await expect(run(NATS, ['-c', conf, '-t'], { env: { ...process.env, PATH, SERVER_NAME: 'nats-1' } }), conf).resolves.toBeDefined();
    }
  });

  it.skipIf(!has(REDIS))('redis-server runs the container config as compose does, and a Sentinel on sentinel.conf finds primary and replica by host name', async () => {
    const [port, replicaPort, sentinelPort] = [await freePort(), await freePort(), await freePort()];
    const compose = f.yamlDocs(path.join(f.DEPLOY, 'compose.yaml'))[0] as { services: Record<string, { command: string[] }> };
    // Compose host names → localhost (a host name still: the Sentinel's resolve-hostnames and
    // announce-hostnames are exercised), the compose port → this test's port.
    const local = (args: string[]) => args.map((a) => ({ 'redis-primary': 'localhost', 'redis-replica': 'localhost', '6379': String(port) })[a] ?? a);
    const start = async (service: string, listen: number) => {
      // The container config as it is but for where it listens and writes (never 6379;
      // redis-server changes into `dir` while reading the file, so it is replaced in the text).
      const dir = await tempDir();
      const text = readFileSync(path.join(f.DEPLOY, 'redis/redis-container.conf'), 'utf8');
      const conf = text.replace(/^bind .*$/m, 'bind 127.0.0.1').replace(/^port 6379$/m, `port ${listen}`).replace(/^dir \/data$/m, `dir ${dir}`);
      expect(conf.match(new RegExp(`^(bind 127\\.0\\.0\\.1|port ${listen}|dir ${dir})$`, 'gm'))).toHaveLength(3);
      await writeFile(path.join(dir, 'redis.conf'), conf);
      // The service's own arguments after its config file (announce-ip, replicaof).
      const [bin, , ...args] = compose.services[service]!.command;
      expect(bin).toBe('redis-server');
      children.push(spawn(REDIS, [path.join(dir, 'redis.conf'), ...local(args)], { env: { ...process.env, PATH }, stdio: 'ignore' }));
    };
    await start('redis-primary', port);
    await start('redis-replica', replicaPort);
    const dir = await tempDir();
    const conf = readFileSync(path.join(f.DEPLOY, 'redis/sentinel.conf'), 'utf8').replace(/\bredis-primary 6379\b/, `localhost ${port}`).replace(/^port \d+$/m, `port ${sentinelPort}`);
    expect(conf).toContain(`sentinel monitor adagg localhost ${port} 2`);
    await writeFile(path.join(dir, 'sentinel.conf'), conf);
    children.push(spawn(REDIS, [path.join(dir, 'sentinel.conf'), '--sentinel', '--bind', '127.0.0.1'], { env: { ...process.env, PATH }, stdio: 'ignore' }));

    const primary = new Redis({ port, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 1 });
    const sentinel = new Redis({ port: sentinelPort, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 1 });
    // Refused connections while the servers start are expected: the waits retry.
    for (const c of [primary, sentinel]) c.on('error', () => undefined);
    try {
      const config = await waitForValue('the primary answers CONFIG GET', () => primary.config('GET', '*').then((c) => c as string[], () => [] as string[]), (c) => c.length > 0, { timeoutMs: 30_000, everyMs: 100 });
      const get = (k: string) => config[config.indexOf(k) + 1];
      expect([get('appendonly'), get('appendfsync'), get('maxmemory-policy'), get('save')]).toEqual(['yes', 'everysec', 'noeviction', '']);
      const master = await waitForValue(
        'the Sentinel names the primary',
        () => sentinel.call('SENTINEL', 'get-master-addr-by-name', 'adagg').catch(() => null),
        (r) => Array.isArray(r) && r.length === 2,
        { timeoutMs: 30_000, everyMs: 100 },
      );
      expect(master).toEqual(['localhost', String(port)]);
      // The Sentinel learns the replica from the primary (INFO, every 10 s) by its announced name.
      let seen: unknown = [];
      const replicas = async (): Promise<Array<Record<string, string>>> => {
        const reply = (await sentinel.call('SENTINEL', 'replicas', 'adagg').catch(() => [])) as string[][];
        // Each replica is a flat [field, value, …] list.
        const list = reply.map((flat) => Object.fromEntries(flat.flatMap((v, i) => (i % 2 === 0 ? [[v, flat[i + 1]!]] : []))));
        seen = list.map((x) => `${x.ip}:${x.port}`);
        return list;
      };
      await waitForValue('the Sentinel lists the replica by its announced name', replicas, (r) => r.some((x) => x.ip === 'localhost' && x.port === String(replicaPort)), {
        timeoutMs: 60_000,
        everyMs: 250,
        detail: () => seen,
      });
    } finally {
      primary.disconnect();
      sentinel.disconnect();
    }
  }, 120_000);

  it('systemd units run an adagg command as a non-root user, restart on failure, with hardening', async () => {
    expect(units.map((u) => path.basename(u))).toEqual(expect.arrayContaining(['adagg-gateway.service', 'adagg-node@.service']));
    for (const unit of units) {
      expect(unitValue(unit, 'ExecStart'), unit).toMatch(/^\/\S+\/node \/\S+\/dist\/cli\/main\.js \w/);
      expect(unitValue(unit, 'User'), unit).not.toMatch(/^(root|0)?$/);
      expect(unitValue(unit, 'Restart'), unit).toBe('on-failure');
      expect(unitValue(unit, 'NoNewPrivileges'), unit).toBe('yes');
      expect(unitValue(unit, 'ProtectSystem'), unit).toBe('strict');
      expect(unitValue(unit, 'EnvironmentFile'), unit).toBeDefined();
      // V8's JIT needs writable and executable memory.
      expect(unitValue(unit, 'MemoryDenyWriteExecute'), unit).not.toBe('yes');
    }
  });

  it.skipIf(spawnSync('systemd-analyze', ['--version']).status !== 0)('systemd-analyze verify accepts the units without a warning', async () => {
    const dir = await tempDir();
    // A template is verified as an instance.
    const copies = await Promise.all(
      units.map(async (u) => {
        const to = path.join(dir, path.basename(u).replace('@.', '@node1.'));
        await writeFile(to, readFileSync(u, 'utf8'));
        return to;
      }),
    );
    const r = spawnSync('systemd-analyze', ['verify', ...copies], { encoding: 'utf8' });
    expect(`${r.status} ${r.stderr}`.trim()).toBe('0');
  }, 60_000);
});
