/**
 * Issue 13 (alerts): deploy/prometheus/ is valid for Debian's promtool, and a real `prometheus`
 * scraping a running cluster of real processes (3 `adagg node`, each serving /metrics on its
 * ADAGG_METRICS_PORT, and a gateway) reads adagg series back through its HTTP API, with the alert
 * rules loaded. Skipped, saying so, only where promtool/prometheus are not installed
 * (`apt-get install prometheus`).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { freePort } from '../../src/runtime/local-servers.ts';
import { killAllChildren, ProcCluster, ROOT } from '../helpers/cluster-procs.ts';
import { startTestServers, uniquePrefix, type TestServers } from '../helpers/servers.ts';
import { postClicks } from '../helpers/stack.ts';
import { waitFor, waitForValue } from '../helpers/wait.ts';

const DEPLOY = path.join(ROOT, 'deploy/prometheus');
const PROMTOOL = ['/usr/bin/promtool', '/usr/local/bin/promtool'].find((p) => existsSync(p));
const PROMETHEUS = ['/usr/bin/prometheus', '/usr/local/bin/prometheus'].find((p) => existsSync(p));
if (!PROMTOOL) console.warn('SKIP test/ops/prometheus.test.ts promtool checks: promtool is not installed (apt-get install prometheus)');
if (!PROMETHEUS) console.warn('SKIP test/ops/prometheus.test.ts live scrape: prometheus is not installed (apt-get install prometheus)');

const tmp = mkdtempSync(path.join(os.tmpdir(), 'adagg-prom-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** The deployed config in `dir`, its token file pointing at a local (dummy) one, as promtool checks that the file exists. */
function deployedConfigIn(dir: string): string {
  const token = path.join(dir, 'metrics-token');
  writeFileSync(token, 'not-a-real-token\n');
  const text = readFileSync(path.join(DEPLOY, 'prometheus.yml'), 'utf8').replace('/run/secrets/adagg-metrics-token', token);
  copyFileSync(path.join(DEPLOY, 'alerts.yml'), path.join(dir, 'alerts.yml'));
  const file = path.join(dir, 'prometheus.yml');
  writeFileSync(file, text);
  return file;
}

describe.skipIf(!PROMTOOL)('promtool', () => {
  it('check rules: every alert rule of deploy/prometheus/alerts.yml is valid', () => {
    const r = spawnSync(PROMTOOL!, ['check', 'rules', path.join(DEPLOY, 'alerts.yml')], { encoding: 'utf8' });
    expect(r.status, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toMatch(/SUCCESS: 9 rules found/);
  });

  it('check config: deploy/prometheus/prometheus.yml (with its rule file) is valid', () => {
    const dir = mkdtempSync(path.join(tmp, 'check-'));
    const r = spawnSync(PROMTOOL!, ['check', 'config', deployedConfigIn(dir)], { encoding: 'utf8' });
    expect(r.status, r.stdout + r.stderr).toBe(0);
  });

  it('the alerts the issue asks for are there', () => {
    const text = readFileSync(path.join(DEPLOY, 'alerts.yml'), 'utf8');
    for (const a of ['AdaggNodeDown', 'AdaggConsumerLagGrowing', 'AdaggWatermarkDelayHigh', 'AdaggActorRestarts', 'AdaggActorFenced', 'AdaggDeadLetters', 'AdaggCommitFailures']) {
      expect(text).toContain(`alert: ${a}\n`);
    }
  });
});

interface PromResult {
  metric: Record<string, string>;
  value: [number, string];
}

describe.skipIf(!PROMETHEUS)('a real prometheus scraping a 3-node cluster', () => {
  let servers: TestServers;
  let cluster: ProcCluster;
  let prom: ChildProcess | undefined;
  let promUrl = '';
  let promLog = '';
  const nodes = ['node1', 'node2', 'node3'];
  const clicks = 200;

  afterAll(async () => {
    prom?.kill('SIGKILL');
    await cluster?.close();
    await killAllChildren();
    await servers?.stop();
  });

  async function query(q: string): Promise<PromResult[]> {
    const res = await fetch(`${promUrl}/api/v1/query?query=${encodeURIComponent(q)}`, { signal: AbortSignal.timeout(10_000) });
    const body = (await res.json()) as { status: string; data?: { result: PromResult[] }; error?: string };
    if (body.status !== 'success') throw new Error(`${q}: ${body.error}`);
    return body.data!.result;
  }
  const scalar = async (q: string): Promise<number> => Number((await query(q))[0]?.value[1] ?? NaN);

  it('starts the cluster and prometheus with the deployed rules', async () => {
    servers = await startTestServers();
    cluster = new ProcCluster({ natsUrl: servers.natsUrl, redisUrl: servers.redisUrl, prefix: uniquePrefix(), env: { ADAGG_MIN_NODES: '3', ADAGG_WORKERS: '1' } });
    const metricsPorts: number[] = [];
    for (const id of nodes) {
      const port = await freePort();
      metricsPorts.push(port);
      cluster.startNode(id, { ADAGG_METRICS_PORT: String(port) });
    }
    await cluster.startGateway(90_000);
    await cluster.waitSettled(nodes, 90_000);

    const dir = mkdtempSync(path.join(tmp, 'live-'));
    copyFileSync(path.join(DEPLOY, 'alerts.yml'), path.join(dir, 'alerts.yml'));
    // The deployed jobs and rules; this cluster's addresses, and a 1 s scrape so the test is quick.
    const gw = new URL(cluster.url).host;
    writeFileSync(
      path.join(dir, 'prometheus.yml'),
      [
        'global: { scrape_interval: 1s, evaluation_interval: 1s }',
        'rule_files: [alerts.yml]',
        'scrape_configs:',
        `  - { job_name: adagg-gateway, static_configs: [{ targets: ['${gw}'] }] }`,
        `  - { job_name: adagg-node, static_configs: [{ targets: [${metricsPorts.map((p) => `'127.0.0.1:${p}'`).join(', ')}] }] }`,
        '',
      ].join('\n'),
    );
    const port = await freePort();
    promUrl = `http://127.0.0.1:${port}`;
    prom = spawn(PROMETHEUS!, [`--config.file=${path.join(dir, 'prometheus.yml')}`, `--storage.tsdb.path=${path.join(dir, 'data')}`, `--web.listen-address=127.0.0.1:${port}`], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const keep = (d: Buffer): void => void (promLog = (promLog + d.toString()).slice(-20_000));
    prom.stdout!.on('data', keep);
    prom.stderr!.on('data', keep);
    await waitFor('prometheus ready', () => fetch(`${promUrl}/-/ready`).then((r) => r.ok, () => false), { timeoutMs: 60_000, everyMs: 200 }).catch((err: unknown) => {
      throw new Error(`${String(err)}\n${promLog}`);
    });
  }, 240_000);

  it('scrapes every process: up == 1 for the gateway and each node', async () => {
    const up = await waitForValue(
      'all four targets up',
      () => query('up{job=~"adagg-node|adagg-gateway"}'),
      (r) => r.length === 4 && r.every((s) => s.value[1] === '1'),
      { timeoutMs: 60_000, everyMs: 500 },
    );
    expect(up.filter((s) => s.metric.job === 'adagg-node')).toHaveLength(3);
  }, 90_000);

  it('reads back adagg series: counts, end-to-end latency, lag per shard on exactly one node, HTTP', async () => {
    const now = Date.now();
    const lines = Array.from({ length: clicks }, (_, i) => JSON.stringify({ click_id: `p${i}`, ad_id: `ad${i % 23}`, ts: now }));
    const res = await postClicks(cluster.url, lines);
    expect(res.status).toBe(200);
    expect(res.body.accepted).toBe(clicks);
    await waitFor('every click counted, per the nodes', async () => (await scalar('sum(adagg_events_counted_total{job="adagg-node"})')) === clicks, {
      timeoutMs: 60_000,
      everyMs: 500,
    });
    await waitFor('every click in the ingest → committed histogram', async () => (await scalar('sum(adagg_ingest_to_committed_seconds_count)')) === clicks, {
      timeoutMs: 60_000,
      everyMs: 500,
    });
    // Each target is scraped on its own second: a series of another process may lag one scrape.
    const settled = (expr: string): Promise<void> =>
      waitFor(`${expr} = ${clicks}`, async () => (await scalar(expr)) === clicks, { timeoutMs: 60_000, everyMs: 500 });
    await settled('sum(adagg_ingest_to_counted_seconds_count)');
    const p99 = await scalar('histogram_quantile(0.99, sum by (le) (adagg_ingest_to_committed_seconds_bucket))');
    expect(p99).toBeGreaterThan(0);
    expect(p99).toBeLessThanOrEqual(300);
    // Each shard's lag comes from the one node running it.
    const lag = await query('count by (shard) (adagg_consumer_lag_messages{job="adagg-node"})');
    expect(lag.map((s) => Number(s.value[1]))).toEqual(Array(cluster.shards).fill(1));
    await settled('sum(adagg_ingest_clicks_total{job="adagg-gateway",result="accepted"})');
    expect(await scalar('sum(adagg_http_request_duration_seconds_count{job="adagg-gateway",route="/v1/clicks"})')).toBeGreaterThanOrEqual(1);
    expect(await scalar('count(process_cpu_user_seconds_total{job=~"adagg-node|adagg-gateway"})')).toBe(4);
  }, 150_000);

  it('loads the deployed alert rules, all healthy, no critical one firing on a healthy cluster', async () => {
    const res = await fetch(`${promUrl}/api/v1/rules`);
    const body = (await res.json()) as { data: { groups: Array<{ rules: Array<{ name: string; health: string; state: string; lastError?: string }> }> } };
    const rules = body.data.groups.flatMap((g) => g.rules);
    expect(rules).toHaveLength(9);
    await waitFor('every rule evaluated', async () => {
      const r = (await (await fetch(`${promUrl}/api/v1/rules`)).json()) as typeof body;
      return r.data.groups.flatMap((g) => g.rules).every((x) => x.health === 'ok');
    }, { timeoutMs: 30_000, everyMs: 500 });
    // Critical ones only: a restart or two on a loaded 2-core machine is not what this checks.
    const firing = await query('ALERTS{alertstate="firing",severity="critical"}');
    expect(firing.map((a) => a.metric.alertname)).toEqual([]);
  }, 60_000);

  it('a node killed is reported down (the AdaggNodeDown expression)', async () => {
    cluster.node('node3').signal('SIGKILL');
    await cluster.node('node3').exited;
    const down = await waitForValue('node3 seen down', () => query('up{job="adagg-node"} == 0'), (r) => r.length === 1, { timeoutMs: 60_000, everyMs: 500 });
    expect(down).toHaveLength(1);
  }, 90_000);
});
