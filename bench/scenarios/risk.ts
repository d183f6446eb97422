/**
 * Scenario `risk`: pipeline throughput with the example invalid-click rules (deploy/risk-rules.json)
 * on, next to off, over the same stream (bench/lib/risk-workload.ts: the pipeline workload with a
 * few percent of blocked, hammering and spreading clicks). Each pair of runs is a fresh service
 * without ADAGG_RISK_RULES, then a fresh one with it (so hot-ad splitting is off, as the option
 * says; the rules are published before the first click). Then the actor path alone on one core,
 * rules off and on, over the same clicks. Checked: with rules off the counts equal the truth; with
 * rules on, valid + invalid = distinct clicks, and the invalid clicks per rule equal the
 * independent truth (test/helpers/risk-truth.ts), the one-actor run and the metrics.
 */
import { jetstreamManager } from '@nats-io/jetstream';
import path from 'node:path';
import type { Click } from '../../src/model/click.ts';
import { readRiskRulesFile } from '../../src/runtime/risk-rules-file.ts';
import { publishRiskRules } from '../../src/runtime/risk-rules-publisher.ts';
import { silentLogger } from '../../src/runtime/logger.ts';
import { RedisKeys } from '../../src/runtime/redis-keys.ts';
import { topology } from '../../src/runtime/topology.ts';
import type { RiskRuleSet } from '../../src/model/risk-rules.ts';
import { riskTruth } from '../../test/helpers/risk-truth.ts';
import { freshPrefix, spreadSpec, type Ctx } from '../lib/context.ts';
import { CpuMeter } from '../lib/cpu.ts';
import { drive } from '../lib/drive.ts';
import { AckTracker, TrackingProducer } from '../lib/publisher.ts';
import { checkExactness, minuteRange, readMetas } from '../lib/redis-state.ts';
import { actorPathRun, type ActorPathRun } from '../lib/risk-actor-path.ts';
import { RiskWorkload, type AbuseCounts } from '../lib/risk-workload.ts';
import { actorFailures, clearRun, committedProbe, metric, rssOf, stallGuard, startBenchService } from '../lib/service.ts';
import { int, median, mib, ms, rate, sleep, until } from '../lib/stats.ts';
import type { WorkloadSpec } from '../lib/workload.ts';

export const RISK_RULES_FILE = path.resolve(import.meta.dirname, '../../deploy/risk-rules.json');

export interface RiskServiceRun {
  rules: boolean;
  events: number;
  distinct: number;
  /** Events / (first publish → every click committed). */
  eventsPerSec: number;
  /** Events / (first publish → every message of the stream committed, risk messages included). */
  settledPerSec: number;
  publishPerSec: number;
  /** Risk messages (presence, verdicts, rules) in the stream beyond the click batches. */
  riskMessages: number;
  exact: boolean;
  exactNote: string;
  valid: number;
  invalid: Record<string, number>;
  /** Σ by rule of adagg_invalid_clicks_total − adagg_invalid_clicks_released_total. */
  metricInvalid: Record<string, number>;
  rssSteady: number;
  rssEnd: number;
  redisUsedMemory: number;
  cores: { service: number; bench: number; nats: number; redis: number; others: number };
  failures: number;
}

export interface RiskResult {
  rulesFile: string;
  version: string;
  events: number;
  abuse: AbuseCounts;
  pairs: Array<{ off: RiskServiceRun; on: RiskServiceRun }>;
  /** Invalid clicks per rule by the independent truth. */
  truth: Record<string, number>;
  truthValid: number;
  actor: { off: ActorPathRun[]; on: ActorPathRun[]; clicks: number; alone: Array<ActorPathRun & { rule: string }> };
}

export async function runRisk(ctx: Ctx): Promise<RiskResult> {
  const { cfg } = ctx;
  const set = await readRiskRulesFile(RISK_RULES_FILE);
  const events = cfg.riskEvents;
  const pairs = cfg.quick ? 1 : Math.min(cfg.pipelineRuns, 2);
  const spec = spreadSpec(cfg, events, cfg.seed + 14, 'r');
  const result: RiskResult = { rulesFile: path.relative(process.cwd(), RISK_RULES_FILE), version: set.version, events, abuse: { blocked: 0, hammer: {}, spread: {} }, pairs: [], truth: {}, truthValid: 0, actor: { off: [], on: [], clicks: 0, alone: [] } };

  // The truth: the same clicks regenerated, judged by the independent oracle.
  ctx.progress.set({ phase: 'risk: truth of the workload (independent oracle)', sent: 0, done: undefined });
  const all: Click[] = [];
  const tw = new RiskWorkload(spec, set);
  for (let c = tw.nextClick(); c; c = tw.nextClick()) all.push(c);
  result.abuse = tw.abuse;
  for (const v of riskTruth(all, set.rules).values()) {
    if (v === null) result.truthValid++;
    else result.truth[v] = (result.truth[v] ?? 0) + 1;
  }
  ctx.progress.log(`risk: ${int(events)} events, ${int(tw.distinct)} distinct; truth: ${int(result.truthValid)} valid, invalid ${JSON.stringify(result.truth)}`);

  for (let p = 0; p < pairs; p++) {
    const off = await serviceRun(ctx, spec, set, false, `risk ${p + 1}/${pairs} rules off`);
    const on = await serviceRun(ctx, spec, set, true, `risk ${p + 1}/${pairs} rules on`);
    result.pairs.push({ off, on });
    ctx.progress.log(`risk pair ${p + 1}: off ${rate(off.eventsPerSec)} events/s, on ${rate(on.eventsPerSec)} (settled ${rate(on.settledPerSec)}), on/off ${(on.eventsPerSec / off.eventsPerSec).toFixed(2)}`);
  }

  // The actor path on one core: the same clicks as one shard's batches.
  const batches: Click[][] = [];
  const aw = new RiskWorkload({ ...spec, shards: 1 }, set);
  for (let b = aw.nextShardBatch(); b; b = aw.nextShardBatch()) batches.push(b.clicks);
  result.actor.clicks = aw.sent;
  for (let i = 0; i < 2; i++) {
    for (const rules of [null, set]) {
      ctx.progress.set({ phase: `risk: actor path on one core, rules ${rules ? 'on' : 'off'} (${i + 1}/2)`, sent: 0, done: undefined });
      const r = await actorPathRun(batches, rules);
      (rules ? result.actor.on : result.actor.off).push(r);
      ctx.progress.log(`risk actor path rules ${rules ? 'on ' : 'off'}: ${rate(r.clicksPerSec)} clicks/s, ${int(r.riskMessages)} risk messages, heap ${mib(r.heapBytes)}, commit bytes/click ${r.commitBytesPerClick.toFixed(1)}`);
    }
  }
  // What each rule costs alone (the one actor, same clicks): where the time and memory go.
  for (const rule of set.rules) {
    ctx.progress.set({ phase: `risk: actor path on one core, rule ${rule.name} alone`, sent: 0, done: undefined });
    const r = await actorPathRun(batches, { version: `alone-${rule.name}`, rules: [rule] });
    result.actor.alone.push({ ...r, rule: rule.name });
    ctx.progress.log(`risk actor path ${rule.name} alone: ${rate(r.clicksPerSec)} clicks/s, ${int(r.riskMessages)} risk messages, heap ${mib(r.heapBytes)}`);
  }
  return result;
}

async function serviceRun(ctx: Ctx, spec: WorkloadSpec, set: RiskRuleSet, rules: boolean, phase: string): Promise<RiskServiceRun> {
  const { cfg, servers } = ctx;
  const prefix = freshPrefix(rules ? 'ron' : 'roff');
  const topo = topology(prefix);
  ctx.progress.set({ phase: `${phase}: starting service`, sent: 0, done: 0 });
  const svc = await startBenchService(ctx, prefix, rules ? { ADAGG_RISK_RULES: RISK_RULES_FILE } : {});
  try {
    // The service published the rules at its start; this is a no-op unless it did not.
    if (rules) await publishRiskRules({ nc: servers.nc, redis: servers.rd, topology: topo, shards: cfg.shards, prefix, set, log: silentLogger });
    await sleep(500);
    const w = new RiskWorkload(spec, set);
    const tracker = new AckTracker(cfg.shards);
    const producer = new TrackingProducer(servers.nc, topo, cfg.shards, cfg.maxBatch, tracker);
    const meter = new CpuMeter({ service: svc.pid, nats: servers.nats.pid, redis: servers.redis.pid });
    const r = await drive(ctx, phase, w, producer, committedProbe(servers.rd, prefix, cfg.shards, tracker, svc.pid), 12 * 60_000, stallGuard(svc));
    // Settled: every message of every shard subject committed, the risk messages the clicks caused included.
    ctx.progress.set({ phase: `${phase}: settling risk messages`, note: undefined });
    const jsm = await jetstreamManager(servers.nc);
    const lastSeqs = async (): Promise<number[]> =>
      Promise.all([...Array(cfg.shards).keys()].map(async (s) => (await jsm.streams.getMessage(topo.clicksStream, { last_by_subj: topo.clickSubject(s) }))?.seq ?? 0));
    let tSettled = r.tDone;
    for (;;) {
      const [last, metas] = await Promise.all([lastSeqs(), readMetas(servers.rd, prefix, cfg.shards)]);
      if (metas.every((m, s) => m.seq >= last[s]!)) break;
      if (Date.now() - r.tDone > 120_000) throw new Error(`${phase}: risk messages not settled 120 s after the clicks were committed`);
      await sleep(40);
      tSettled = Date.now();
    }
    const cpu = meter.read();
    const info = await jsm.streams.info(topo.clicksStream);
    const rssSamples = r.samples.map((s) => s.rss ?? NaN).filter(Number.isFinite);
    const rssSteady = median(rssSamples.slice(Math.floor(rssSamples.length / 4), Math.ceil((rssSamples.length * 3) / 4)));

    const [, lastMinute] = minuteRange(w);
    ctx.progress.set({ phase: `${phase}: waiting for minutes to close` });
    await until('all minutes closed', async () => (await readMetas(servers.rd, prefix, cfg.shards)).every((m) => m.closedThrough >= lastMinute), 150_000, 100);
    const totals = await readTotals(ctx, prefix, w, set.rules.map((x) => x.name));
    let exact: boolean;
    let exactNote: string;
    if (rules) {
      const sum = totals.valid + Object.values(totals.invalid).reduce((a, b) => a + b, 0);
      exact = sum === w.distinct;
      exactNote = `valid ${int(totals.valid)} + invalid ${int(sum - totals.valid)} = ${int(sum)} (distinct ${int(w.distinct)})`;
    } else {
      const e = await checkExactness(servers.rd, prefix, cfg.shards, w);
      exact = e.exact;
      exactNote = `counted ${int(e.totalCounted)} = truth ${int(e.totalTruth)}, ${int(e.fullAdsCompared)} ads compared${e.examples.length ? `; ${e.examples.slice(0, 2).join('; ')}` : ''}`;
    }
    const taken = await metric(svc.url, 'adagg_invalid_clicks_total');
    const released = await metric(svc.url, 'adagg_invalid_clicks_released_total');
    const metricInvalid: Record<string, number> = {};
    for (const [labels, v] of taken) {
      const rule = /rule="([^"]*)"/.exec(labels)?.[1] ?? '?';
      metricInvalid[rule] = (metricInvalid[rule] ?? 0) + v - (released.get(labels) ?? 0);
    }
    const mem = /used_memory:(\d+)/.exec(await servers.rd.info('memory'));
    const run: RiskServiceRun = {
      rules,
      events: w.sent,
      distinct: w.distinct,
      eventsPerSec: r.eventsPerSec,
      settledPerSec: (w.sent * 1000) / (tSettled - r.t0),
      publishPerSec: r.publishPerSec,
      riskMessages: info.state.messages - tracker.ackedMessages,
      exact,
      exactNote,
      valid: totals.valid,
      invalid: totals.invalid,
      metricInvalid,
      rssSteady,
      rssEnd: rssOf(svc.pid),
      redisUsedMemory: Number(mem?.[1] ?? NaN),
      cores: { service: cpu.cores.service!, bench: cpu.cores.bench!, nats: cpu.cores.nats!, redis: cpu.cores.redis!, others: cpu.others },
      failures: actorFailures(svc).restarts + actorFailures(svc).fatal,
    };
    ctx.progress.log(
      `${phase}: ${rate(run.eventsPerSec)} events/s (settled ${rate(run.settledPerSec)}), ${int(run.riskMessages)} risk messages, exact=${exact} (${exactNote}), ` +
        `invalid ${JSON.stringify(run.invalid)}, RSS steady ${mib(rssSteady)}, Redis ${mib(run.redisUsedMemory)}, cores service ${run.cores.service.toFixed(2)} others ${run.cores.others.toFixed(2)}, drain ${ms(r.tDone - r.tPublished)}`,
    );
    await svc.stop();
    return run;
  } finally {
    await svc.kill();
    await clearRun(servers, topo);
  }
}

/** Valid clicks (the ordinary count fields) and invalid clicks by rule (`!inv` fields) over every minute of the run. */
async function readTotals(ctx: Ctx, prefix: string, w: RiskWorkload, rules: readonly string[]): Promise<{ valid: number; invalid: Record<string, number> }> {
  const { cfg, servers } = ctx;
  const keys = new RedisKeys(prefix);
  const [m0, m1] = minuteRange(w);
  const sum = (vals: string[]): number => vals.reduce((a, v) => a + Number(v), 0);
  let valid = 0;
  const invalid: Record<string, number> = Object.fromEntries(rules.map((r) => [r, 0]));
  for (let s = 0; s < cfg.shards; s++) {
    const p = servers.rd.pipeline();
    for (let m = m0; m <= m1; m++) {
      p.hvals(keys.counts(s, m, null, null));
      for (const r of rules) p.hvals(keys.counts(s, m, '!inv', r));
    }
    const res = (await p.exec()) ?? [];
    let k = 0;
    for (let m = m0; m <= m1; m++) {
      valid += sum(res[k++]![1] as string[]);
      for (const r of rules) invalid[r]! += sum(res[k++]![1] as string[]);
    }
  }
  return { valid, invalid };
}
