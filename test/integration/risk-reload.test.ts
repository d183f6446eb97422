import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RedisKeys } from '../../src/runtime/redis-keys.ts';
import { freeze } from '../helpers/processes.ts';
import { firstCopies, RISK_CAST, RISK_RULES_A, RISK_RULES_B, riskStream, type RiskClick } from '../helpers/risk-stream.ts';
import { expectRisk, invalidByRuleTotal, lastSubjectSeqs, publishRules, showMismatches, untilExact, verifyOffenders, verifyRiskCounts, waitRiskQuiet, type RiskExpectation } from '../helpers/risk-verify.ts';
import { startTestServers, uniquePrefix, type TestServers } from '../helpers/servers.ts';
import { serviceEnv, spawnService, type ServiceProcess } from '../helpers/service-process.ts';
import { postClicks } from '../helpers/stack.ts';

/**
 * A rules reload mid-stream (issue 14): rules A for the first half, then rules B (a new ip_block
 * first, a cap lowered, a rule removed) published while the node is frozen, so that its restart
 * replays across the reload point. A reload re-evaluates every click still inside the correction
 * horizon: afterwards every count equals the truth of all clicks under B (the removed rule's name
 * still listed, at 0), and again after one more SIGKILL and restart.
 */
describe('invalid-click filtering: rules reload mid-stream', () => {
  let servers: TestServers;
  let dir: string;
  let svc: ServiceProcess | undefined;
  let redis: Redis;
  const SEED = 1404;
  const stream = riskStream({ seed: SEED, batch: 250 });
  const prefix = uniquePrefix();
  const range = { fromMs: stream.fromMs, toMs: stream.toMs };
  const half = Math.floor(stream.main.length / 2);
  const threeQuarters = Math.floor((stream.main.length * 3) / 4);
  const clicksOf = (batches: readonly string[][]): RiskClick[] => firstCopies(batches.flat().map((l) => JSON.parse(l) as RiskClick));
  const namesA = RISK_RULES_A.rules.map((r) => r.name);

  beforeAll(async () => {
    servers = await startTestServers();
    dir = await mkdtemp(path.join(os.tmpdir(), 'adagg-risk-reload-'));
    redis = new Redis(servers.redisUrl, { maxRetriesPerRequest: 3 });
  });
  afterAll(async () => {
    if (svc) {
      svc.child.kill('SIGCONT');
      svc.child.kill('SIGKILL');
      await svc.exited;
    }
    redis?.disconnect();
    await servers?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  async function check(e: RiskExpectation, what: string): Promise<void> {
    await waitRiskQuiet(svc!.url, servers.natsUrl, prefix, 4, stream.lastMinute, 90_000);
    const m = await untilExact(() => verifyRiskCounts(svc!.url, e, { ...range, countryAds: [RISK_CAST.hammerAd, RISK_CAST.capEdgeAd], countries: ['US', 'DE'] }));
    expect(m.length, `${what}: ${showMismatches(m)}`).toBe(0);
  }

  it('counts follow rules A, then all clicks under rules B, across a replay over the reload and a restart', async () => {
    const rulesFile = path.join(dir, 'risk-rules.json');
    await writeFile(rulesFile, JSON.stringify(RISK_RULES_A));
    const env = serviceEnv(servers, prefix, {
      // Commits are rarer than in the other tests, so the kill below finds clicks posted under A uncommitted.
      ADAGG_SNAPSHOT_INTERVAL_MS: '3000',
      // The restarted process takes over the killed one's placement lease once it expires.
      ADAGG_NODE_TIMEOUT_MS: '2000',
      ADAGG_HEARTBEAT_INTERVAL_MS: '400',
      ADAGG_RISK_RULES: rulesFile,
    });
    svc = await spawnService(env);
    const port = Number(new URL(svc.url).port);
    const post = async (batches: readonly string[][]): Promise<void> => {
      for (const b of batches) expect((await postClicks(svc!.url, b)).status).toBe(200);
    };

    // 1. Rules A, the first half.
    await post(stream.main.slice(0, half));
    await check(expectRisk(clicksOf(stream.main.slice(0, half)), RISK_RULES_A.rules), 'first half under A');

    // 2. A quarter more under A, then B published while the node is frozen: its restart restores a
    //    commit from before the rules message and replays across it.
    await post(stream.main.slice(half, threeQuarters));
    await freeze(svc.child as { pid: number; kill(signal: NodeJS.Signals): void });
    const keys = new RedisKeys(prefix);
    const committed = await Promise.all([0, 1, 2, 3].map(async (s) => Number((await redis.hget(keys.meta(s), 'seq')) ?? 0)));
    await writeFile(rulesFile, JSON.stringify(RISK_RULES_B));
    expect(await publishRules({ natsUrl: servers.natsUrl, redisUrl: servers.redisUrl, prefix, shards: 4 }, RISK_RULES_B)).toBe(true);
    // Nothing else publishes while the node (and its gateway) is frozen: the rules message is last.
    const rulesSeqs = await lastSubjectSeqs(servers.natsUrl, prefix, 4);
    svc.child.kill('SIGKILL');
    await svc.exited;
    svc = await spawnService(env, port);
    console.log(`FIGURE risk_reload rules message at seqs ${rulesSeqs.join(',')}; committed at the kill ${committed.join(',')}`);
    for (let s = 0; s < 4; s++) expect(committed[s]).toBeLessThan(rulesSeqs[s]!);
    const soFar = clicksOf(stream.main.slice(0, threeQuarters));
    // The reload must show: the same clicks give other counts under B than under A.
    expect(invalidByRuleTotal(expectRisk(soFar, RISK_RULES_B.rules, namesA))).not.toEqual(invalidByRuleTotal(expectRisk(soFar, RISK_RULES_A.rules, namesA)));
    await check(expectRisk(soFar, RISK_RULES_B.rules, namesA), 'three quarters re-evaluated under B');

    // 3. The rest, late clicks after close included, under B.
    await post([...stream.main.slice(threeQuarters), ...stream.afterClose]);
    const full = expectRisk(stream.allClicks, RISK_RULES_B.rules, namesA);
    const totals = invalidByRuleTotal(full);
    console.log(`FIGURE risk_reload seed=${SEED} invalid_by_rule under B=${JSON.stringify(totals)}`);
    expect(totals['bad-net-2']).toBeGreaterThan(0);
    expect(totals['user-ad-cap']).toBe(0);
    await check(full, 'all clicks under B');
    const { mismatches } = await verifyOffenders(svc.url, full, 'bad-net-2', 20);
    expect(mismatches.length, showMismatches(mismatches)).toBe(0);

    // 4. SIGKILL and restart: the same counts.
    svc.child.kill('SIGKILL');
    await svc.exited;
    svc = await spawnService(env, port);
    await check(full, 'all clicks under B after a restart');
  }, 150_000);
});
