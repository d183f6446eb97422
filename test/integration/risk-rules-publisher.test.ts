import { jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { spawn } from 'node:child_process';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { reloadRiskRules, putRiskRulesInEffect, type RiskRulesTarget } from '../../src/cli/risk-rules-loader.ts';
import { decodeRiskMessage, isRiskMessage, type RiskMessage } from '../../src/model/risk-messages.ts';
import { parseRiskRules, type RiskRuleSet } from '../../src/model/risk-rules.ts';
import { compileOptions } from '../../src/options.ts';
import { createLogger } from '../../src/runtime/logger.ts';
import { connectNats } from '../../src/runtime/nats.ts';
import { knownRuleNames, publishRiskRules, readPublishedRules } from '../../src/runtime/risk-rules-publisher.ts';
import { ensureStreams } from '../../src/runtime/streams.ts';
import { topology, type Topology } from '../../src/runtime/topology.ts';
import { startTestServers, uniquePrefix, type TestServers } from '../helpers/servers.ts';
import { runAdagg } from '../helpers/adagg-cli.ts';
import { waitFor } from '../helpers/wait.ts';

const SHARDS = 4;
const ROOT = path.resolve(import.meta.dirname, '../..');
const silent = createLogger('test', 'silent');

const rulesDoc = (capMax: number, extra: object[] = []): string =>
  JSON.stringify({
    rules: [
      { name: 'nets', kind: 'ip_block', cidrs: ['203.0.113.0/24'] },
      { name: 'ip-ad-cap', kind: 'frequency', key: ['ip', 'ad_id'], max: capMax, window_seconds: 60 },
      ...extra,
    ],
  });

/** The messages of a shard subject, in stream order. */
async function subjectMessages(jsm: JetStreamManager, topo: Topology, shard: number): Promise<RiskMessage[]> {
  const info = await jsm.streams.info(topo.clicksStream, { subjects_filter: topo.clickSubject(shard) });
  const out: RiskMessage[] = [];
  for (let seq = info.state.first_seq; info.state.messages > 0 && seq <= info.state.last_seq; seq++) {
    const m = await jsm.streams.getMessage(topo.clicksStream, { seq }).catch(() => null);
    if (!m || m.subject !== topo.clickSubject(shard)) continue;
    expect(isRiskMessage(m.data)).toBe(true);
    out.push(decodeRiskMessage(m.data));
  }
  return out;
}

/** Messages per shard subject, and the total in the stream. */
async function counts(jsm: JetStreamManager, topo: Topology): Promise<{ perSubject: number[]; total: number }> {
  const info = await jsm.streams.info(topo.clicksStream, { subjects_filter: '>' });
  const subjects = info.state.subjects ?? {};
  return { perSubject: Array.from({ length: SHARDS }, (_, n) => subjects[topo.clickSubject(n)] ?? 0), total: info.state.messages };
}

describe('risk rules publisher', () => {
  let servers: TestServers;
  let nc: NatsConnection;
  let jsm: JetStreamManager;
  let redis: Redis;
  beforeAll(async () => {
    servers = await startTestServers();
    nc = await connectNats(servers.natsUrl, 'risk-rules-test');
    jsm = await jetstreamManager(nc);
    redis = new Redis(servers.redisUrl);
  });
  afterAll(async () => {
    redis?.disconnect();
    await nc?.close();
    await servers?.stop();
  });

  async function setup(): Promise<{ prefix: string; topo: Topology; publish: (set: RiskRuleSet) => Promise<boolean> }> {
    const prefix = uniquePrefix();
    const topo = topology(prefix);
    await ensureStreams(nc, topo, { shards: SHARDS, replicas: 1, rawRetentionMs: 3600_000, duplicateWindowMs: 120_000 });
    return { prefix, topo, publish: (set) => publishRiskRules({ nc, redis, topology: topo, shards: SHARDS, prefix, set, log: silent, now: () => 1_700_000_000_000 }) };
  }

  it('publishes one rules message into every shard subject, then records the version and the names', async () => {
    const { prefix, topo, publish } = await setup();
    expect(await readPublishedRules(redis, prefix)).toBeNull();
    expect(await knownRuleNames(redis, prefix)).toEqual([]);
    const set = parseRiskRules(rulesDoc(5), 'a.json');
    expect(await publish(set)).toBe(true);
    expect(await counts(jsm, topo)).toEqual({ perSubject: [1, 1, 1, 1], total: SHARDS });
    for (let n = 0; n < SHARDS; n++) {
      expect(await subjectMessages(jsm, topo, n)).toEqual([{ kind: 'rules', version: set.version, rules: set.rules }]);
    }
    expect(await readPublishedRules(redis, prefix)).toEqual({ version: set.version, rules: set.rules });
    expect(JSON.parse((await redis.hget(`${prefix}:risk:rules`, 'current'))!)).toMatchObject({ version: set.version, at: 1_700_000_000_000 });
    expect(await knownRuleNames(redis, prefix)).toEqual(['ip-ad-cap', 'nets']);

    // The same version again (key order and whitespace differ): nothing published.
    const reordered = (JSON.parse(rulesDoc(5)) as { rules: object[] }).rules.map((r) => Object.fromEntries(Object.entries(r).reverse()));
    const same = parseRiskRules(JSON.stringify({ rules: reordered }, null, 2), 'b.json');
    expect(same.version).toBe(set.version);
    expect(await publish(same)).toBe(false);
    expect(await counts(jsm, topo)).toEqual({ perSubject: [1, 1, 1, 1], total: SHARDS });
  });

  it('a changed file publishes again; a removed rule stays among the names; going back publishes again within the duplicate window', async () => {
    const { prefix, topo, publish } = await setup();
    const v1 = parseRiskRules(rulesDoc(5, [{ name: 'ip-spread', kind: 'spread', key: ['ip'], distinct: 'ad_id', max: 20, window_seconds: 600 }]), 'r.json');
    const v2 = parseRiskRules(rulesDoc(6), 'r.json');
    expect(v2.version).not.toBe(v1.version);
    expect(await publish(v1)).toBe(true);
    expect(await publish(v2)).toBe(true);
    expect(await publish(v2)).toBe(false);
    expect(await counts(jsm, topo)).toEqual({ perSubject: [2, 2, 2, 2], total: 2 * SHARDS });
    expect(await readPublishedRules(redis, prefix)).toEqual({ version: v2.version, rules: v2.rules });
    expect(await knownRuleNames(redis, prefix)).toEqual(['ip-ad-cap', 'ip-spread', 'nets']);
    // Back to v1 within seconds: its earlier message ids must not make JetStream drop it.
    expect(await publish(v1)).toBe(true);
    expect(await counts(jsm, topo)).toEqual({ perSubject: [3, 3, 3, 3], total: 3 * SHARDS });
    for (let n = 0; n < SHARDS; n++) {
      expect((await subjectMessages(jsm, topo, n)).map((m) => (m.kind === 'rules' ? m.version : m.kind))).toEqual([v1.version, v2.version, v1.version]);
    }
    expect((await readPublishedRules(redis, prefix))?.version).toBe(v1.version);
  });

  it('nodes publishing the same change at once leave one message per shard subject', async () => {
    const { topo, publish } = await setup();
    const set = parseRiskRules(rulesDoc(7), 'n.json');
    const results = await Promise.all([publish(set), publish(set), publish(set)]);
    expect(results.some(Boolean)).toBe(true);
    expect(await counts(jsm, topo)).toEqual({ perSubject: [1, 1, 1, 1], total: SHARDS });
  });

  it('the loader creates the streams, publishes, and a reload with a bad file publishes nothing and keeps the rules', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'adagg-risk-'));
    const lines: string[] = [];
    const log = createLogger('test', { level: 'info', format: 'json', destination: { write: (l: string) => lines.push(l) } });
    try {
      const file = path.join(dir, 'rules.json');
      await writeFile(file, rulesDoc(5));
      const o: RiskRulesTarget = {
        ...compileOptions({ prefix: uniquePrefix(), shards: SHARDS, riskRules: file }),
        natsUrl: servers.natsUrl,
        redisUrl: servers.redisUrl,
      };
      const topo = topology(o.prefix);
      const first = parseRiskRules(rulesDoc(5), file);
      // No stream yet: the loader makes it (a deployment's first start).
      expect(await putRiskRulesInEffect(o, first, log)).toBe(true);
      expect(await counts(jsm, topo)).toEqual({ perSubject: [1, 1, 1, 1], total: SHARDS });

      await writeFile(file, rulesDoc(9));
      expect(await reloadRiskRules(o, log)).toBe(true);
      const second = parseRiskRules(rulesDoc(9), file);
      expect(await counts(jsm, topo)).toEqual({ perSubject: [2, 2, 2, 2], total: 2 * SHARDS });
      const reloaded = lines.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l.msg === 'risk rules reloaded');
      expect(reloaded).toMatchObject({ version: second.version, subjects: SHARDS, published: true });

      await writeFile(file, rulesDoc(9).replace('"ip_block"', '"ip_blocks"'));
      expect(await reloadRiskRules(o, log)).toBe(false);
      expect(await counts(jsm, topo)).toEqual({ perSubject: [2, 2, 2, 2], total: 2 * SHARDS });
      expect((await readPublishedRules(redis, o.prefix))?.version).toBe(second.version);
      const refused = lines.map((l) => JSON.parse(l) as { msg: string; err?: { code?: string; message?: string } }).find((l) => l.msg.startsWith('risk rules not reloaded'));
      expect(refused?.err).toMatchObject({ code: 'ADAGG_E_RISK_RULES', message: `risk rules ${file}: rule 1 "nets": kind must be one of ip_block, frequency, spread` });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('a process with ADAGG_RISK_RULES publishes at start and again on SIGHUP; a bad file on SIGHUP keeps the rules', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'adagg-risk-'));
    const file = path.join(dir, 'rules.json');
    await writeFile(file, rulesDoc(5));
    const prefix = uniquePrefix();
    const topo = topology(prefix);
    // The composition root's steps (src/cli/risk-rules-loader.ts), without the actors.
    const script = [
      `const { compileOptions, optionsFromEnv } = await import(${JSON.stringify(path.join(ROOT, 'src/options.ts'))});`,
      `const { createLogger } = await import(${JSON.stringify(path.join(ROOT, 'src/runtime/logger.ts'))});`,
      `const L = await import(${JSON.stringify(path.join(ROOT, 'src/cli/risk-rules-loader.ts'))});`,
      `const log = createLogger('t', { level: 'info', format: 'json' });`,
      `const o = L.riskRulesOptions({ ...compileOptions(optionsFromEnv()), natsUrl: process.env.NATS_URL, redisUrl: process.env.REDIS_URL }, log);`,
      `await L.startRiskRules(o, await L.readRiskRules(o), log);`,
      `log.info({ hotChildren: o.hotChildren }, 'test ready');`,
      `setInterval(() => {}, 1 << 30);`,
    ].join('\n');
    const env = { ...process.env, ADAGG_PREFIX: prefix, ADAGG_SHARDS: String(SHARDS), ADAGG_RISK_RULES: file, NATS_URL: servers.natsUrl, REDIS_URL: servers.redisUrl };
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
    const lines: Array<Record<string, unknown>> = [];
    let stderr = '';
    let buf = '';
    child.stdout.on('data', (d: Buffer) => {
      buf += d.toString();
      const parts = buf.split('\n');
      buf = parts.pop() ?? '';
      for (const l of parts) if (l.startsWith('{')) lines.push(JSON.parse(l) as Record<string, unknown>);
    });
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const logged = (msg: string): Array<Record<string, unknown>> => lines.filter((l) => l.msg === msg);
    const detail = (): unknown => ({ lines: lines.map((l) => l.msg), stderr });
    try {
      await waitFor('the process ready', () => logged('test ready').length === 1, { timeoutMs: 30_000, everyMs: 50, detail });
      expect(logged('test ready')[0]).toMatchObject({ hotChildren: 0 });
      expect(logged('ADAGG_RISK_RULES is set: hot-ad splitting is off')).toHaveLength(1);
      expect(await counts(jsm, topo)).toEqual({ perSubject: [1, 1, 1, 1], total: SHARDS });

      await writeFile(file, rulesDoc(8));
      child.kill('SIGHUP');
      await waitFor('risk rules reloaded', () => logged('risk rules reloaded').length === 1, { timeoutMs: 30_000, everyMs: 50, detail });
      const v2 = parseRiskRules(rulesDoc(8), file).version;
      expect(logged('risk rules reloaded')[0]).toMatchObject({ version: v2, subjects: SHARDS, published: true });
      expect(await counts(jsm, topo)).toEqual({ perSubject: [2, 2, 2, 2], total: 2 * SHARDS });

      await writeFile(file, '{"rules": [');
      child.kill('SIGHUP');
      await waitFor('the bad file refused', () => logged('risk rules not reloaded: the rules in effect stay').length === 1, { timeoutMs: 30_000, everyMs: 50, detail });
      expect(await counts(jsm, topo)).toEqual({ perSubject: [2, 2, 2, 2], total: 2 * SHARDS });
      expect((await readPublishedRules(redis, prefix))?.version).toBe(v2);
      expect(child.exitCode).toBeNull();
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('adagg start and adagg node refuse a bad rules file with the coded error before they serve', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'adagg-risk-'));
    try {
      const file = path.join(dir, 'rules.json');
      await writeFile(file, rulesDoc(5, [{ name: 'per-user', kind: 'frequency', key: ['user_id'], max: 3, window_seconds: 60 }]));
      const message = `ADAGG_E_RISK_RULES: risk rules ${file}: rule 3 "per-user": key must contain "ad_id"`;
      const base: NodeJS.ProcessEnv = { ...process.env, ADAGG_LOG_LEVEL: 'warn', ADAGG_RISK_RULES: file, ADAGG_PREFIX: uniquePrefix() };
      for (const k of ['NATS_URL', 'REDIS_URL', 'REDIS_SENTINELS']) delete base[k];
      const dataDir = path.join(dir, 'data');
      const start = await runAdagg(['start'], { env: { ...base, ADAGG_DATA_DIR: dataDir, ADAGG_HTTP_PORT: '0' }, timeoutMs: 60_000 });
      expect(start.code, start.stdout + start.stderr).toBe(1);
      expect(start.stderr).toContain(message);
      // Refused before any local server started.
      expect(await readdir(dataDir).catch(() => [])).toEqual([]);
      const node = await runAdagg(['node', '--id', 'n1'], { env: { ...base, NATS_URL: servers.natsUrl, REDIS_URL: servers.redisUrl }, timeoutMs: 60_000 });
      expect(node.code, node.stdout + node.stderr).toBe(1);
      expect(node.stderr).toContain(message);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
