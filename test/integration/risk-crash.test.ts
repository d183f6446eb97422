import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { keyValue, riskPartition } from '../../src/model/risk-rules.ts';
import { chunked, killAllChildren, LoadClient, ProcCluster, stopBackground } from '../helpers/cluster-procs.ts';
import { RISK_CAST, RISK_RULES_A, riskStream, type RiskStream } from '../helpers/risk-stream.ts';
import { expectRisk, showMismatches, untilExact, verifyOffenders, verifyRiskCounts, waitRiskQuiet, type RiskExpectation } from '../helpers/risk-verify.ts';
import { startTestServers, uniquePrefix, type TestServers } from '../helpers/servers.ts';
import { serviceEnv, spawnService, type ServiceProcess } from '../helpers/service-process.ts';
import { postClicks } from '../helpers/stack.ts';

/**
 * Invalid-click verdicts survive SIGKILL (issue 14): the stream of risk-exactness.test.ts, posted
 * by a retrying client, (1) to one `adagg start` process killed mid-stream and again right after
 * the late clicks that flip verdicts of closed minutes; (2) to three `adagg node` processes, the one
 * hosting the spreading IP's risk partition killed mid-stream. Afterwards every ad-minute's valid
 * and invalid counts by rule equal the independent truth.
 */
describe('invalid-click filtering: SIGKILL mid-stream', () => {
  let servers: TestServers;
  let dir: string;
  let rulesFile: string;
  let svc: ServiceProcess | undefined;
  let cluster: ProcCluster | undefined;

  beforeAll(async () => {
    servers = await startTestServers();
    dir = await mkdtemp(path.join(os.tmpdir(), 'adagg-risk-crash-'));
    rulesFile = path.join(dir, 'risk-rules.json');
    await writeFile(rulesFile, JSON.stringify(RISK_RULES_A, null, 2));
  });
  afterEach(async () => {
    await stopBackground();
    svc?.child.kill('SIGKILL');
    if (svc) await svc.exited;
    svc = undefined;
    await cluster?.close();
    cluster = undefined;
    await killAllChildren();
  });
  afterAll(async () => {
    await servers?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  /** Phase 2 (clicks late after close), then the full check against the truth. */
  async function verifyAll(url: string, stream: RiskStream, full: RiskExpectation, prefix: string, shards: number): Promise<void> {
    await waitRiskQuiet(url, servers.natsUrl, prefix, shards, stream.lastMinute, 90_000);
    const m = await untilExact(() =>
      verifyRiskCounts(url, full, { fromMs: stream.fromMs, toMs: stream.toMs, countryAds: [RISK_CAST.hammerAd, RISK_CAST.userEdgeAd, 'ad-12'], countries: ['US', 'DE', 'JP'] }),
    );
    expect(m.length, showMismatches(m)).toBe(0);
    for (const rule of ['ip-ad-cap', 'ip-spread']) {
      const { mismatches } = await verifyOffenders(url, full, rule, 20);
      expect(mismatches.length, showMismatches(mismatches)).toBe(0);
    }
  }

  it('one process: SIGKILL mid-stream and right after the late clicks; counts equal the truth', async () => {
    const stream = riskStream({ seed: 1402, batch: 150 });
    const phase1 = expectRisk(stream.mainClicks, RISK_RULES_A.rules);
    const full = expectRisk(stream.allClicks, RISK_RULES_A.rules);
    const prefix = uniquePrefix();
    const env = serviceEnv(servers, prefix, {
      ADAGG_SNAPSHOT_INTERVAL_MS: '200',
      ADAGG_SNAPSHOT_EVERY_MESSAGES: '20',
      // The restarted process takes over the killed one's placement lease once it expires.
      ADAGG_NODE_TIMEOUT_MS: '2000',
      ADAGG_HEARTBEAT_INTERVAL_MS: '400',
      ADAGG_RISK_RULES: rulesFile,
    });
    svc = await spawnService(env);
    const port = Number(new URL(svc.url).port);
    const restart = async (): Promise<void> => {
      svc!.child.kill('SIGKILL');
      await svc!.exited;
      svc = await spawnService(env, port);
    };

    const load = new LoadClient(() => svc!.url, stream.main, 60).start();
    await load.reach(Math.floor(stream.main.length * 0.45));
    await restart(); // a post is in flight: the client retries it
    await load.done;
    expect(load.retries).toBeGreaterThan(0);
    await waitRiskQuiet(svc.url, servers.natsUrl, prefix, 4, stream.lastMinute, 90_000);
    const m1 = await untilExact(() => verifyRiskCounts(svc!.url, phase1, { fromMs: stream.fromMs, toMs: stream.toMs }));
    expect(m1.length, showMismatches(m1)).toBe(0);

    // Late clicks that change verdicts of closed minutes, then a kill before they have settled.
    for (const batch of stream.afterClose) expect((await postClicks(svc.url, batch)).status).toBe(200);
    await restart();
    await verifyAll(svc.url, stream, full, prefix, 4);
  }, 150_000);

  it('three nodes: SIGKILL of the node hosting the spreading IP\'s risk partition; counts equal the truth', async () => {
    const stream = riskStream({ seed: 1403, batch: 150 });
    const full = expectRisk(stream.allClicks, RISK_RULES_A.rules);
    const prefix = uniquePrefix();
    const nodes = ['node1', 'node2', 'node3'];
    const c = new ProcCluster({ natsUrl: servers.natsUrl, redisUrl: servers.redisUrl, prefix, env: { ADAGG_MIN_NODES: '3', ADAGG_RISK_RULES: rulesFile } });
    cluster = c;
    for (const id of nodes) c.startNode(id);
    await c.startGateway();
    await c.waitSettled(nodes, 60_000);

    const spreader = stream.allClicks.find((x) => x.ip === RISK_CAST.spreaderIp)!;
    const partition = riskPartition(keyValue(spreader, ['ip'])!, c.shards);

    const load = new LoadClient(() => c.url, stream.main, 80).start();
    // Mid-stream: the spreader's window (the middle third of event time) is being posted.
    await load.reach(Math.floor(stream.main.length * 0.5));
    const victim = (await c.owners()).get(partition);
    expect(victim).toBeTruthy();
    const live = nodes.filter((n) => n !== victim);
    const postedAtKill = load.posted;
    c.node(victim!).signal('SIGKILL');
    await c.node(victim!).exited;
    expect(postedAtKill).toBeLessThan(stream.main.length);
    await c.waitSettled(live, 30_000);
    await load.done;
    console.log(`FIGURE risk_partition_kill partition=${partition} victim=${victim} posted_at_kill=${postedAtKill}/${stream.main.length} post_retries=${load.retries}`);

    await waitRiskQuiet(c.url, servers.natsUrl, prefix, c.shards, stream.lastMinute, 90_000);
    const late = new LoadClient(() => c.url, chunked(stream.afterClose.flat(), 1000)).start();
    await late.done;
    await verifyAll(c.url, stream, full, prefix, c.shards);
  }, 150_000);
});
