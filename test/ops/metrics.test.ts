/**
 * Issue 13 (metrics): what a scrape of a running stack shows. End-to-end latency histograms from
 * actors in a worker thread, HTTP duration and errors by route pattern, standard process metric
 * names, the reducer's metrics in the gateway's registry, minute-close delay, and per-shard series
 * that leave a node with its shard.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { actorRegistry } from '../../src/actors/index.ts';
import { compileOptions } from '../../src/options.ts';
import { RuntimeEvents } from '../../src/runtime/events.ts';
import { createLogger } from '../../src/runtime/logger.ts';
import { createMetrics } from '../../src/runtime/metrics.ts';
import { MetricsServer } from '../../src/runtime/metrics-server.ts';
import { RuntimeNode } from '../../src/runtime/runtime-node.ts';
import { startTestServers, uniquePrefix, type TestServers } from '../helpers/servers.ts';
import { postClicks, startStack, TEST_OPTIONS, type TestStack } from '../helpers/stack.ts';
import { waitFor, waitForValue } from '../helpers/wait.ts';
import { parseSamples, scrape, sumOf } from './prom-text.ts';

const cleanups: Array<() => Promise<void>> = [];
afterAll(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => undefined);
});

describe('gateway + node metrics (actors in a worker thread)', () => {
  let stack: TestStack;
  const clicks = 120;

  it('starts and ingests', async () => {
    stack = await startStack({ workers: 1 });
    cleanups.push(() => stack.close());
    const now = Date.now();
    // Spread over ads (so over shards) and one minute three minutes back, which then closes.
    const lines = Array.from({ length: clicks }, (_, i) => JSON.stringify({ click_id: `m${i}`, ad_id: `ad${i % 7}`, ts: i < 20 ? now - 180_000 : now }));
    const res = await postClicks(stack.url, lines);
    expect(res.status).toBe(200);
    expect(res.body.accepted).toBe(clicks);
  }, 90_000);

  it('ingest → counted and → committed latencies count every click, across the worker thread', async () => {
    const text = await waitForValue(
      'every click counted and committed in the latency histograms',
      () => scrape(`${stack.url}/metrics`),
      (t) => sumOf(t, 'adagg_ingest_to_committed_seconds_count') >= clicks,
      { timeoutMs: 60_000, everyMs: 200 },
    );
    expect(sumOf(text, 'adagg_ingest_to_counted_seconds_count')).toBe(clicks);
    expect(sumOf(text, 'adagg_ingest_to_committed_seconds_count')).toBe(clicks);
    // Real latencies: positive, and not absurd (the clocks of NATS and the node are one machine's).
    const meanCommitted = sumOf(text, 'adagg_ingest_to_committed_seconds_sum') / clicks;
    expect(meanCommitted).toBeGreaterThan(0);
    expect(meanCommitted).toBeLessThan(60);
    expect(sumOf(text, 'adagg_ingest_to_counted_seconds_sum')).toBeLessThanOrEqual(sumOf(text, 'adagg_ingest_to_committed_seconds_sum'));
  }, 90_000);

  it('a closed minute reports its close delay', async () => {
    const text = await waitForValue(
      'a minute close observed',
      () => scrape(`${stack.url}/metrics`),
      (t) => sumOf(t, 'adagg_minute_close_delay_seconds_count') > 0,
      { timeoutMs: 60_000, everyMs: 200 },
    );
    const mean = sumOf(text, 'adagg_minute_close_delay_seconds_sum') / sumOf(text, 'adagg_minute_close_delay_seconds_count');
    // Allowed lateness (5 s) + idle timeout (1 s) at least, far less than an hour.
    expect(mean).toBeGreaterThanOrEqual(5);
    expect(mean).toBeLessThan(3600);
  }, 90_000);

  it('HTTP duration and errors by route pattern and status, never the raw URL', async () => {
    const secret = `zz${Date.now()}`;
    expect((await fetch(`${stack.url}/v1/ads/${secret}/aggregated_count?from=x`)).status).toBe(400);
    expect((await fetch(`${stack.url}/${secret}/nothing-here`)).status).toBe(404);
    const text = await waitForValue(
      'the requests measured',
      () => scrape(`${stack.url}/metrics`),
      (t) => sumOf(t, 'adagg_http_request_errors_total', { route: 'unmatched', status: '404' }) >= 1,
      { timeoutMs: 20_000, everyMs: 100 },
    );
    expect(sumOf(text, 'adagg_http_request_duration_seconds_count', { route: '/v1/clicks', method: 'POST' })).toBeGreaterThanOrEqual(1);
    expect(sumOf(text, 'adagg_http_request_errors_total', { route: '/v1/ads/:ad_id/aggregated_count', method: 'GET', status: '400' })).toBe(1);
    expect(sumOf(text, 'adagg_http_request_errors_total', { route: '/v1/clicks' })).toBe(0);
    // Bounded cardinality: the ad id and the unknown path appear in no label.
    expect(text).not.toContain(secret);
  }, 60_000);

  it('process metrics have their standard names; the reducer and dead letters are in the registry', async () => {
    const text = await scrape(`${stack.url}/metrics`);
    expect(text).not.toContain('adagg_process_process_');
    expect(text).toMatch(/^process_cpu_user_seconds_total /m);
    expect(text).toMatch(/^nodejs_heap_size_used_bytes /m);
    expect(sumOf(text, 'adagg_reducer_rankings_total', { kind: 'provisional' })).toBeGreaterThanOrEqual(0);
    expect(text).toMatch(/^# TYPE adagg_reducer_specs gauge/m);
    expect(text).toMatch(/^# TYPE adagg_dead_letters_total counter/m);
    // A click older than the horizon is refused at ingest and dead-lettered.
    const old = await postClicks(stack.url, [JSON.stringify({ click_id: 'old1', ad_id: 'ad1', ts: Date.now() - 3 * 3600_000 })]);
    expect(old.body.rejected[0].code).toBe('too_old');
    await waitFor('the dead letter counted', async () => sumOf(await scrape(`${stack.url}/metrics`), 'adagg_dead_letters_total', { reason: 'too_old', stage: 'ingest' }) === 1, {
      timeoutMs: 20_000,
    });
  }, 60_000);
});

describe('per-shard series follow the shard', () => {
  let servers: TestServers;

  it('a node no longer reports lag and watermark of shards that moved to another node', async () => {
    servers = await startTestServers();
    cleanups.push(() => servers.stop());
    const opts = { ...compileOptions({ ...TEST_OPTIONS, prefix: uniquePrefix(), joinGraceMs: 0 }), natsUrl: servers.natsUrl, redisUrl: servers.redisUrl };
    const eventsA = new RuntimeEvents();
    const registryA = createMetrics(eventsA);
    const a = new RuntimeNode('node-a', opts, { actors: actorRegistry, events: eventsA });
    cleanups.push(() => a.close());
    await a.startManaged();
    const series = async (): Promise<Set<string>> =>
      new Set(parseSamples(await registryA.metrics()).filter((s) => s.name === 'adagg_consumer_lag_messages').map((s) => s.labels.shard!));
    await waitFor('node A reports lag of every shard', async () => (await series()).size === opts.shards, { timeoutMs: 60_000, everyMs: 100 });

    const b = new RuntimeNode('node-b', opts, { actors: actorRegistry, events: new RuntimeEvents() });
    cleanups.push(() => b.close());
    await b.startManaged();
    await waitFor('some shards moved to node B', () => b.running().size > 0 && a.running().size + b.running().size === opts.shards, {
      timeoutMs: 60_000,
      everyMs: 100,
    });
    const moved = [...b.running().keys()].map(String);
    await waitFor(
      'node A no longer reports the moved shards',
      async () => {
        const s = await series();
        return moved.every((m) => !s.has(m)) && [...a.running().keys()].every((k) => s.has(String(k)));
      },
      { timeoutMs: 30_000, everyMs: 100 },
    );
    const text = await registryA.metrics();
    for (const m of moved) expect(parseSamples(text).some((s) => s.name === 'adagg_watermark_delay_seconds' && s.labels.shard === m)).toBe(false);
  }, 180_000);
});

describe("a node's metrics server", () => {
  it('serves GET /metrics, /healthz and /readyz only, and a taken port is a coded refusal', async () => {
    const log = createLogger('test', 'silent');
    let ready = false;
    const server = new MetricsServer(createMetrics(new RuntimeEvents()), { port: 0, host: '127.0.0.1', ready: () => ({ ok: ready, checks: { node: ready } }) }, log);
    cleanups.push(() => server.close());
    const { url, port } = await server.start();
    expect(await scrape(`${url}/metrics`)).toMatch(/^# TYPE adagg_consumer_lag_messages gauge/m);
    expect((await fetch(`${url}/healthz`)).status).toBe(200);
    const starting = await fetch(`${url}/readyz`);
    expect([starting.status, await starting.json()]).toEqual([503, { status: 'not ready', checks: { node: false } }]);
    ready = true;
    expect((await fetch(`${url}/readyz`)).status).toBe(200);
    const other = await fetch(`${url}/v1/status`);
    expect(other.status).toBe(404);
    expect(await other.json()).toMatchObject({ code: 'ADAGG_E_NOT_FOUND' });
    const second = new MetricsServer(createMetrics(new RuntimeEvents()), { port, host: '127.0.0.1' }, log);
    await expect(second.start()).rejects.toMatchObject({ code: 'ADAGG_E_BAD_OPTION' });
    await second.close();
  });
});
