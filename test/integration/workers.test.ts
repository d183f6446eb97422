import { jetstream } from '@nats-io/jetstream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { GatewayService } from '../../src/gateway/gateway-service.ts';
import { encodeControl } from '../../src/model/hot-messages.ts';
import { shardOf } from '../../src/model/partition.ts';
import { connectNats } from '../../src/runtime/nats.ts';
import type { RuntimeNode } from '../../src/runtime/runtime-node.ts';
import { realisticStream, Truth } from '../helpers/click-stream.ts';
import { postClicks, startStack, type TestStack } from '../helpers/stack.ts';
import { verifyAdMinutes, verifyTopN, waitAllClosed } from '../helpers/verify.ts';
import { waitFor } from '../helpers/wait.ts';

const SHARDS = 6;

/** `adagg_events_processed_total` per shard from the gateway's /metrics. */
async function processedByShard(url: string): Promise<Map<number, number>> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const out = new Map<number, number>();
  for (const m of text.matchAll(/^adagg_events_processed_total\{shard="(\d+)"\} (\S+)$/gm)) out.set(Number(m[1]), Number(m[2]));
  return out;
}

/**
 * A runtime node hosting its actors in 2 worker threads, with the gateway on its main thread (as
 * `npm start` runs them): shards spread over both workers, one worker killed mid-stream, counts
 * still exact against an independent recount, actor metrics of both workers on /metrics, hot
 * children placed away from their parent's worker, and a clean close.
 */
describe('actors in worker threads', () => {
  let stack: TestStack;
  let node: RuntimeNode;
  let gateway: GatewayService;
  let url: string;
  // A cooler hot ad, milder lateness and no malformed lines; `now` fixed so the later stream shares the span.
  const spec = { seed: 7, events: 24_000, now: Date.now(), hotShare: 0.2, lateFraction: 0.015, maxLateMs: 3 * 60_000, malformedFraction: 0 };
  const stream = realisticStream(spec);
  const truth = new Truth().add(stream.clicks);
  const byWorker = new Map<number, number[]>();

  beforeAll(async () => {
    // The stack's node gets the worker entry when `workers` > 0; its gateway shares the node's events.
    stack = await startStack({ shards: SHARDS, workers: 2 });
    ({ node, gateway, url } = stack);
  });
  afterAll(async () => {
    await stack?.close();
  });

  it('spreads the shards over both workers', () => {
    const workers = node.actorWorkers();
    expect(workers.map((w) => w.index)).toEqual([0, 1]);
    for (const w of workers) {
      expect(w.ready).toBe(true);
      expect(w.threadId).not.toBeNull();
      byWorker.set(w.index, w.shards);
    }
    // Fewest actors first: 3 and 3.
    expect(workers.map((w) => w.shards.length)).toEqual([3, 3]);
    expect(workers.flatMap((w) => w.shards).sort()).toEqual([...Array(SHARDS).keys()]);
  });

  it('a worker killed mid-stream: its shards restart in a live worker and every count stays exact', async () => {
    const half = Math.floor(stream.lines.length / 2);
    let accepted = 0;
    for (let i = 0; i < half; i += 1000) accepted += (await postClicks(url, stream.lines.slice(i, Math.min(half, i + 1000)))).body.accepted;
    // The actors are still reading the first half when their thread dies.
    const killedThread = node.actorWorkers()[0]!.threadId;
    const lost = byWorker.get(0)!;
    await node.crashWorkerForTest(0);
    for (let i = half; i < stream.lines.length; i += 1000) {
      const res = await postClicks(url, stream.lines.slice(i, i + 1000));
      expect(res.status).toBe(200);
      accepted += res.body.accepted;
    }
    expect(accepted).toBe(stream.clicks.length);

    await waitFor('the lost shards running again', () => {
      const running = node.running();
      const workers = node.actorWorkers();
      return lost.every((s) => running.has(s)) && workers.every((w) => w.ready) && workers[0]!.threadId !== killedThread;
    }, { timeoutMs: 60_000, everyMs: 100 });
    const after = node.actorWorkers();
    expect(after.flatMap((w) => w.shards).sort()).toEqual([...Array(SHARDS).keys()]);

    const minutes = truth.minutes();
    const last = minutes[minutes.length - 1]!;
    await waitAllClosed(url, last, 90_000);
    const topAds = truth.top(5, 0, Number.MAX_SAFE_INTEGER).map((r) => r.ad_id);
    expect((await verifyAdMinutes(url, truth, { adsForCountry: topAds, countries: ['US', 'JP'] })).slice(0, 10)).toEqual([]);
    expect(await verifyTopN(url, truth, [{ n: 10, window: 5, toMinute: last + 1 }, { n: 20, window: 10, toMinute: last + 1, country: 'DE' }])).toEqual([]);
  });

  it('/metrics shows the actor metrics of both workers', async () => {
    const processed = await processedByShard(url);
    for (const [w, shards] of byWorker) {
      for (const s of shards) expect(processed.get(s) ?? 0, `shard ${s} (worker ${w})`).toBeGreaterThan(0);
    }
    // Heartbeat figures come from the workers' stats.
    await waitFor('stats of every shard', () => {
      const st = node.stats().shards;
      return [...Array(SHARDS).keys()].every((s) => st[String(s)] !== undefined && st[String(s)]!.epoch > 0 && st[String(s)]!.lag >= 0);
    }, { timeoutMs: 10_000, everyMs: 100 });
  });

  it('hot children run in a worker other than their parent\'s, counts exact', async () => {
    const hot = 'ad-0';
    const parent = shardOf(hot, SHARDS);
    const nc = await connectNats(stack.opts.natsUrl, 'workers-test');
    try {
      await jetstream(nc).publish(stack.node.topo.clickSubject(parent), encodeControl({ kind: 'split', ad: hot, children: 2, by: 'test' }));
      await waitFor('2 hot children running', () => [...node.runningUnits().keys()].length === 2, { timeoutMs: 30_000, everyMs: 100 });
    } finally {
      await nc.close();
    }
    const workers = node.actorWorkers();
    const parentWorker = workers.find((w) => w.shards.includes(parent))!;
    expect(parentWorker.units).toEqual([]);
    expect(workers.find((w) => w !== parentWorker)!.units).toHaveLength(2);

    const more = realisticStream({ ...spec, events: 6000, seed: 8 });
    truth.add(more.clicks);
    for (let i = 0; i < more.lines.length; i += 1000) expect((await postClicks(url, more.lines.slice(i, i + 1000))).status).toBe(200);
    const last = truth.minutes().at(-1)!;
    await waitAllClosed(url, last, 90_000);
    await waitFor('exact counts with the split ad', async () => (await verifyAdMinutes(url, truth, { adsForCountry: [hot], countries: ['US'] })).length === 0, { timeoutMs: 60_000, everyMs: 500 });
  });

  it('close() drains every worker and ends its thread', async () => {
    await gateway.close();
    await node.close();
    expect(node.actorWorkers().every((w) => w.threadId === null)).toBe(true);
    await node.close(); // idempotent
  });
});
