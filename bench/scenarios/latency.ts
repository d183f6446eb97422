/**
 * Scenario 4 (latency): a fixed offered rate of live clicks (event time = now) for a fixed time,
 * with a probe click on a dedicated probe ad every 100 ms. Per probe: publish ack → visible in
 * GET /v1/ads/<probe>/aggregated_count (polled every 20 ms); for a few probes also ack → final
 * (`final: true` for its minute, i.e. the watermark passed the minute end and the commit landed).
 */
import { topology } from '../../src/runtime/topology.ts';
import { liveSpec, type Ctx } from '../lib/context.ts';
import { AckTracker, TrackingProducer } from '../lib/publisher.ts';
import { actorFailures, type Service } from '../lib/service.ts';
import { int, ms, percentile, rate, sleep } from '../lib/stats.ts';
import { Workload } from '../lib/workload.ts';

export interface LatencyResult {
  targetRate: number;
  seconds: number;
  achievedRate: number;
  probes: number;
  visibleMs: { p50: number; p90: number; p99: number; max: number; n: number; timedOut: number };
  /** Probe publish → ack (the part before the measured interval). */
  ackMs: { p50: number; p99: number };
  finalMs: Array<{ probe: number; ackToFinalMs: number | null; beyondCloseMs: number | null }>;
  allowedLatenessMs: number;
  /** Shard actor failures logged by the service during the scenario. */
  failures: { restarts: number; fatal: number; first: string | null };
  /** Why the wait for final probes ended early, if it did. */
  finalNote: string | null;
}

interface AdCount {
  count: number;
  minutes: Array<{ count: number; final: boolean }>;
}

async function adCount(url: string, ad: string, minute: number): Promise<AdCount | null> {
  try {
    const r = await fetch(`${url}/v1/ads/${ad}/aggregated_count?from=${minute * 60_000}&to=${(minute + 1) * 60_000}`);
    if (r.status !== 200) {
      await r.body?.cancel();
      return null;
    }
    return (await r.json()) as AdCount;
  } catch {
    return null;
  }
}

export async function runLatency(ctx: Ctx, svc: Service, prefix: string): Promise<LatencyResult> {
  const { cfg, servers } = ctx;
  const R = cfg.latencyRate;
  const D = cfg.latencySeconds * 1000;
  const allowedLatenessMs = 10_000;
  const tag = prefix.slice(-5);
  const w = new Workload(liveSpec(cfg, Math.ceil((R * (D + cfg.finalWaitMs)) / 1000) + R, cfg.seed + 300, `l${tag}`));
  const tracker = new AckTracker(cfg.shards);
  const producer = new TrackingProducer(servers.nc, topology(prefix), cfg.shards, cfg.maxBatch, tracker);
  const nProbes = Math.floor(D / 100);
  const finalEvery = Math.max(1, Math.floor(nProbes / cfg.finalProbes));
  const visible: number[] = [];
  const acks: number[] = [];
  let timedOut = 0;
  const finals: LatencyResult['finalMs'] = [];
  const probeTasks: Array<Promise<void>> = [];
  let runEnded = 0;

  const probe = async (k: number): Promise<void> => {
    const ad = `probe${tag}-${k}`;
    const ts = Date.now();
    const minute = Math.floor(ts / 60_000);
    const tSend = Date.now();
    await producer.publish([{ click_id: `probe-${tag}-${k}`, ad_id: ad, ts, country: 'US' }]);
    const tAck = Date.now();
    acks.push(tAck - tSend);
    const deadline = tAck + 30_000;
    for (;;) {
      const c = await adCount(svc.url, ad, minute);
      if (c && c.count >= 1) {
        visible.push(Date.now() - tAck);
        break;
      }
      if (Date.now() > deadline) {
        timedOut++;
        return;
      }
      await sleep(20);
    }
    if (k % finalEvery !== 0 || finals.length >= cfg.finalProbes) return;
    const slot = { probe: k, ackToFinalMs: null as number | null, beyondCloseMs: null as number | null };
    finals.push(slot);
    for (;;) {
      const c = await adCount(svc.url, ad, minute);
      if (c?.minutes[0]?.final) {
        const t = Date.now();
        slot.ackToFinalMs = t - tAck;
        slot.beyondCloseMs = t - ((minute + 1) * 60_000 + allowedLatenessMs);
        return;
      }
      if ((runEnded && Date.now() > runEnded + cfg.finalWaitMs) || failure) return;
      await sleep(100);
    }
  };

  ctx.progress.set({ phase: `latency: ${int(R)} events/s for ${cfg.latencySeconds} s`, sent: 0, done: undefined });
  const t0 = Date.now();
  let sent = 0;
  let inflight = 0;
  let k = 0;
  let nextProbe = t0;
  let ackedInWindow = 0;
  let failed: unknown;
  let failure: string | null = null;
  let achievedRate = NaN;
  let finalsPending = true;
  for (;;) {
    const now = Date.now();
    if (now - t0 >= D) {
      // Tail: the same offered load keeps running (unmeasured) until the final probes' minutes close.
      if (!runEnded) {
        runEnded = now;
        achievedRate = (ackedInWindow * 1000) / D;
        void Promise.all(probeTasks).then(() => (finalsPending = false));
        ctx.progress.set({ note: `measured window over; load continues until the final probes are final (≤ ${ms(cfg.finalWaitMs)})` });
      }
      if (!finalsPending || now > runEnded + cfg.finalWaitMs) break;
      const f = actorFailures(svc);
      if (f.restarts + f.fatal > 0) {
        failure = `shard actors failing (${f.restarts} restarts; first: ${f.first}); stopped waiting for final`;
        break;
      }
    }
    const due = Math.floor((R * (now - t0)) / 1000) - sent;
    if (due > 0 && inflight < 256) {
      const clicks = w.take(due);
      sent += clicks.length;
      inflight++;
      producer.publish(clicks).then(
        () => {
          inflight--;
          if (Date.now() - t0 <= D) ackedInWindow += clicks.length;
        },
        (err: unknown) => (failed = err),
      );
    }
    if (!runEnded && now >= nextProbe && k < nProbes) {
      probeTasks.push(probe(k++));
      nextProbe += 100;
    }
    ctx.progress.set({
      sent: tracker.ackedEvents,
      note: runEnded
        ? `tail: final ${finals.filter((f) => f.ackToFinalMs !== null).length}/${finals.length}`
        : `probes visible ${visible.length}/${k}`,
    });
    if (failed) throw failed;
    await sleep(5);
  }
  ctx.progress.set({ note: 'waiting for the last probes' });
  await Promise.all(probeTasks);
  const res: LatencyResult = {
    targetRate: R,
    seconds: cfg.latencySeconds,
    achievedRate,
    probes: k,
    visibleMs: {
      p50: percentile(visible, 50),
      p90: percentile(visible, 90),
      p99: percentile(visible, 99),
      max: percentile(visible, 100),
      n: visible.length,
      timedOut,
    },
    ackMs: { p50: percentile(acks, 50), p99: percentile(acks, 99) },
    finalMs: finals,
    allowedLatenessMs,
    failures: actorFailures(svc),
    finalNote: failure,
  };
  ctx.progress.log(
    `latency: achieved ${rate(achievedRate)}/s of ${rate(R)}/s; ack→visible p50 ${ms(res.visibleMs.p50)} p99 ${ms(res.visibleMs.p99)} ` +
      `(${visible.length}/${k} probes); ack→final ${finals.map((f) => (f.ackToFinalMs === null ? 'n/a' : ms(f.ackToFinalMs))).join(', ')}`,
  );
  return res;
}
