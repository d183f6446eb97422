/**
 * Scenario 3 (naive): the Yahoo-streaming-benchmark style peer. One consumer process, durable pull
 * consumer with explicit acks, HINCRBY per event through one ioredis pipeline per message.
 * a) throughput, measured like the pipeline (first publish → everything applied and acked);
 * b) exactness after one SIGKILL: a second durable reads the same stream (a backlog now) into its
 *    own keys, is killed at ~40%, restarted, and finishes; its totals are compared with the truth.
 */
import { jetstreamManager } from '@nats-io/jetstream';
import type { Redis } from 'ioredis';
import { compileOptions } from '../../src/options.ts';
import { ensureStreams } from '../../src/runtime/streams.ts';
import { topology } from '../../src/runtime/topology.ts';
import { freshPrefix, spreadSpec, type Ctx } from '../lib/context.ts';
import { drive } from '../lib/drive.ts';
import { AckTracker, TrackingProducer } from '../lib/publisher.ts';
import { minuteRange } from '../lib/redis-state.ts';
import { deleteStream } from '../lib/servers.ts';
import { CpuMeter } from '../lib/cpu.ts';
import { int, ms, rate, sleep, until } from '../lib/stats.ts';
import { startWorker, type Worker } from '../lib/worker.ts';
import { rankOf, Workload } from '../lib/workload.ts';

interface NaiveState {
  applied: number;
  acked: number;
}

export interface NaiveCount {
  totalCounted: number;
  truth: number;
  /** Σ over ads of max(0, counted − truth). */
  over: number;
  /** Σ over ads of max(0, truth − counted). */
  under: number;
  adsOver: number;
  adsUnder: number;
}

export interface NaiveResult {
  events: number;
  duplicatesSent: number;
  eventsPerSec: number;
  durationMs: number;
  cores: { consumer: number; redis: number; nats: number; bench: number; others: number };
  noCrash: NaiveCount;
  crash: NaiveCount & {
    killedAtApplied: number;
    restartToDoneMs: number;
    /** Over-count beyond the duplicates the naive peer never removes: the redelivery damage. */
    overFromRedelivery: number;
  };
}

async function naiveCount(rd: Redis, kp: string, w: Workload): Promise<NaiveCount> {
  const [m0, m1] = minuteRange(w);
  const counted = new Int32Array(w.truth.length);
  let total = 0;
  for (let m = m0; m <= m1; m++) {
    const h = await rd.hgetall(`${kp}:c:${m}`);
    for (const [ad, v] of Object.entries(h)) {
      const r = rankOf(ad);
      total += Number(v);
      if (r >= 0) counted[r]! += Number(v);
    }
  }
  let over = 0;
  let under = 0;
  let adsOver = 0;
  let adsUnder = 0;
  for (let r = 0; r < counted.length; r++) {
    const d = counted[r]! - w.truth[r]!;
    if (d > 0) {
      over += d;
      adsOver++;
    } else if (d < 0) {
      under -= d;
      adsUnder++;
    }
  }
  return { totalCounted: total, truth: w.distinct, over, under, adsOver, adsUnder };
}

async function consumerDone(stream: string, durable: string, lastSeq: number, ctx: Ctx): Promise<boolean> {
  const jsm = await jetstreamManager(ctx.servers.nc);
  const ci = await jsm.consumers.info(stream, durable);
  return ci.num_pending === 0 && ci.num_ack_pending === 0 && ci.delivered.stream_seq >= lastSeq;
}

export async function runNaive(ctx: Ctx): Promise<NaiveResult> {
  const { cfg, servers } = ctx;
  const prefix = freshPrefix('n');
  const topo = topology(prefix);
  ctx.progress.set({ phase: 'naive: starting consumer', sent: 0, done: 0 });
  await ensureStreams(servers.nc, topo, compileOptions({ prefix, shards: cfg.shards }));
  const env = (durable: string) => ({
    NATS_URL: servers.natsUrl,
    REDIS_URL: servers.redisUrl,
    STREAM: topo.clicksStream,
    DURABLE: durable,
    KEY_PREFIX: `${prefix}:${durable}`,
  });
  let worker: Worker<NaiveState> | undefined;
  try {
    // a) throughput, concurrent with publishing
    worker = await startWorker<NaiveState>('naive-consumer.ts', env('naive1'));
    const w = new Workload(spreadSpec(cfg, cfg.naiveEvents, cfg.seed + 200, `n${prefix.slice(-4)}`));
    const tracker = new AckTracker(cfg.shards);
    const producer = new TrackingProducer(servers.nc, topo, cfg.shards, cfg.maxBatch, tracker);
    const lastSeq = () => Math.max(...tracker.lastSeq);
    const meter = new CpuMeter({ consumer: worker.pid, redis: servers.redis.pid, nats: servers.nats.pid });
    const wk = worker;
    const r = await drive(ctx, 'naive: throughput', w, producer, async () => {
      const applied = wk.state()?.applied ?? 0;
      return { done: applied, complete: applied >= w.sent && (await consumerDone(topo.clicksStream, 'naive1', lastSeq(), ctx)) };
    });
    const cpu = meter.read();
    const cores = { consumer: cpu.cores.consumer!, redis: cpu.cores.redis!, nats: cpu.cores.nats!, bench: cpu.cores.bench!, others: cpu.others };
    await worker.stop();
    worker = undefined;
    const noCrash = await naiveCount(servers.rd, `${prefix}:naive1`, w);
    ctx.progress.log(
      `naive: ${rate(r.eventsPerSec)} events/s; without crash counted ${int(noCrash.totalCounted)} vs truth ${int(noCrash.truth)} ` +
        `(over ${int(noCrash.over)}, duplicates sent ${int(w.duplicates)})`,
    );

    // b) one SIGKILL mid-stream on a backlog
    ctx.progress.set({ phase: 'naive: SIGKILL test', sent: w.sent, done: 0 });
    worker = await startWorker<NaiveState>('naive-consumer.ts', env('naive2'));
    const killAt = Math.floor(w.sent * 0.4);
    const wk2 = worker;
    await until('naive consumer at 40%', () => {
      const a = wk2.state()?.applied ?? 0;
      ctx.progress.set({ done: a });
      return a >= killAt;
    }, 10 * 60_000, 5);
    const killedAtApplied = worker.state()?.applied ?? 0;
    await worker.kill();
    worker = undefined;
    const tRestart = Date.now();
    worker = await startWorker<NaiveState>('naive-consumer.ts', env('naive2'));
    const wk3 = worker;
    await until(
      'naive consumer finished after restart',
      async () => {
        ctx.progress.set({ done: killedAtApplied + (wk3.state()?.applied ?? 0), note: 'restarted (redelivery after ack_wait 10 s)' });
        return consumerDone(topo.clicksStream, 'naive2', lastSeq(), ctx);
      },
      10 * 60_000,
      100,
    );
    const restartToDoneMs = Date.now() - tRestart;
    await sleep(200);
    await worker.stop();
    worker = undefined;
    const crash = await naiveCount(servers.rd, `${prefix}:naive2`, w);
    const res: NaiveResult = {
      events: w.sent,
      duplicatesSent: w.duplicates,
      eventsPerSec: r.eventsPerSec,
      durationMs: r.tDone - r.t0,
      cores,
      noCrash,
      crash: { ...crash, killedAtApplied, restartToDoneMs, overFromRedelivery: crash.over - noCrash.over },
    };
    ctx.progress.log(
      `naive SIGKILL: counted ${int(crash.totalCounted)} vs truth ${int(crash.truth)}: over ${int(crash.over)} ` +
        `(${int(res.crash.overFromRedelivery)} from redelivery), under ${int(crash.under)}; restart→done ${ms(restartToDoneMs)}`,
    );
    return res;
  } finally {
    await worker?.kill();
    await deleteStream(servers.nc, topo.clicksStream);
    await deleteStream(servers.nc, topo.deadLetterStream);
    await servers.rd.flushall();
  }
}
