/**
 * Issue 13 (dashboard): every metric deploy/grafana/adagg.json and deploy/prometheus/alerts.yml
 * query exists in the registry of a running process: the gateway's /metrics and an `adagg node`'s
 * own /metrics (ADAGG_METRICS_PORT), both scraped from real processes.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { freePort } from '../../src/runtime/local-servers.ts';
import { killAllChildren, ProcCluster, ROOT } from '../helpers/cluster-procs.ts';
import { startTestServers, uniquePrefix, type TestServers } from '../helpers/servers.ts';
import { waitForValue } from '../helpers/wait.ts';
import { declaredNames, scrape } from './prom-text.ts';

interface Panel {
  title?: string;
  type: string;
  targets?: Array<{ expr?: string }>;
  panels?: Panel[];
}

/** Every PromQL expression of the dashboard, with its panel title. */
function dashboardExprs(): Array<{ panel: string; expr: string }> {
  const dash = JSON.parse(readFileSync(path.join(ROOT, 'deploy/grafana/adagg.json'), 'utf8')) as { panels: Panel[] };
  const out: Array<{ panel: string; expr: string }> = [];
  const walk = (ps: Panel[]): void => {
    for (const p of ps) {
      for (const t of p.targets ?? []) if (t.expr) out.push({ panel: p.title ?? '?', expr: t.expr });
      walk(p.panels ?? []);
    }
  };
  walk(dash.panels);
  return out;
}

/** The alert rules' expressions (`expr:` lines, folded `|` blocks included). */
function alertExprs(): string[] {
  const text = readFileSync(path.join(ROOT, 'deploy/prometheus/alerts.yml'), 'utf8');
  return [...text.matchAll(/expr: (?:\|\n((?: {10}.*\n)+)|(.*)\n)/g)].map((m) => (m[1] ?? m[2] ?? '').trim());
}

/**
 * Metric names in a PromQL expression: identifiers of adagg's and prom-client's families
 * (`adagg_*`, `process_*`, `nodejs_*`), outside label matchers' quoted values.
 */
function metricNames(expr: string): string[] {
  const unquoted = expr.replace(/"(?:[^"\\]|\\.)*"/g, '""');
  return [...unquoted.matchAll(/\b((?:adagg|process|nodejs)_[a-zA-Z0-9_:]+)\b/g)].map((m) => m[1]!);
}

describe('dashboard and alert metrics exist', () => {
  let servers: TestServers;
  let cluster: ProcCluster;

  afterAll(async () => {
    await cluster?.close();
    await killAllChildren();
    await servers?.stop();
  });

  it('the dashboard has the panels the issue asks for', () => {
    const exprs = dashboardExprs().map((e) => e.expr).join('\n');
    for (const name of [
      'adagg_ingest_clicks_total',
      'adagg_ingest_to_committed_seconds_bucket',
      'adagg_ingest_to_counted_seconds_bucket',
      'adagg_consumer_lag_messages',
      'adagg_watermark_delay_seconds',
      'adagg_snapshot_seconds_bucket',
      'adagg_actor_restarts_total',
      'adagg_dead_letters_total',
      'adagg_ws_clients',
    ]) {
      expect(exprs).toContain(name);
    }
    expect(exprs).toMatch(/histogram_quantile\(0\.5, sum by \(le\) \(rate\(adagg_ingest_to_committed_seconds_bucket/);
    expect(exprs).toMatch(/histogram_quantile\(0\.99, sum by \(le\) \(rate\(adagg_ingest_to_committed_seconds_bucket/);
  });

  it('every metric used by the dashboard and the alerts is served by the gateway or a node', async () => {
    servers = await startTestServers();
    cluster = new ProcCluster({ natsUrl: servers.natsUrl, redisUrl: servers.redisUrl, prefix: uniquePrefix(), shards: 4 });
    const metricsPort = await freePort();
    cluster.startNode('node1', { ADAGG_METRICS_PORT: String(metricsPort) });
    await cluster.startGateway(90_000);
    const nodeText = await waitForValue(
      "the node's /metrics, its shards reporting",
      () => scrape(`http://127.0.0.1:${metricsPort}/metrics`).catch(() => ''),
      (t) => /^adagg_consumer_lag_messages\{/m.test(t),
      { timeoutMs: 90_000, everyMs: 250 },
    );
    const gatewayText = await scrape(`${cluster.url}/metrics`);
    const served = new Set([...declaredNames(nodeText), ...declaredNames(gatewayText)]);

    const used = [...dashboardExprs().map((e) => ({ where: `dashboard "${e.panel}"`, expr: e.expr })), ...alertExprs().map((expr) => ({ where: 'alerts.yml', expr }))];
    expect(alertExprs()).toHaveLength(9);
    expect(used.length).toBeGreaterThan(30);
    const missing = used.flatMap((u) => metricNames(u.expr).filter((n) => !served.has(n)).map((n) => `${n} (${u.where})`));
    expect(missing).toEqual([]);
    // Where each family lives: shard metrics on the node, HTTP and reducer on the gateway.
    expect(declaredNames(nodeText).has('adagg_ingest_to_committed_seconds')).toBe(true);
    expect(declaredNames(gatewayText).has('adagg_http_request_duration_seconds')).toBe(true);
    expect(declaredNames(gatewayText).has('adagg_reducer_specs')).toBe(true);
  }, 180_000);
});
