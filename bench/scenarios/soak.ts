/**
 * Scenario soak (only when named: `npm run bench -- soak --rate R --minutes M`): live clicks
 * (event time = now) over POST /v1/clicks at a fixed rate into a fresh service with the default
 * configuration (1 h correction horizon: every click id stays tracked for the whole run), sampled
 * every 10 s, to show whether the cost of committing state stays flat while the state grows.
 * Writes bench/results/soak-<label>-<rate>.{json,svg} and regenerates soak.md. A service that
 * dies ends the run early; every wait has a bound.
 */
import { execFileSync } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { topology } from '../../src/runtime/topology.ts';
import { freshPrefix, liveSpec, type Ctx } from '../lib/context.ts';
import { within } from '../lib/prom.ts';
import { runFile, writeSoakReport } from '../lib/soak-report.ts';
import { evaluate, keyFigures, type SoakRun } from '../lib/soak-run.ts';
import { carry, fillTracked, read, sampleOf, type SoakSample } from '../lib/soak-sampler.ts';
import { RateSender } from '../lib/soak-sender.ts';
import { soakSvg } from '../lib/soak-svg.ts';
import { deleteStream, type Versions } from '../lib/servers.ts';
import { actorFailures, serviceRoot, startService } from '../lib/service.ts';
import { int, mib, rate, sleep } from '../lib/stats.ts';
import { Workload } from '../lib/workload.ts';

const SAMPLE_EVERY_S = 10;
const TICK_MS = 100;
const MAX_BACKLOG_S = 3;

function gitOf(root: string): { commit: string; dirty: boolean } {
  const git = (...args: string[]): string => execFileSync('git', ['-C', root, ...args], { timeout: 10_000, encoding: 'utf8' }).trim();
  try {
    return { commit: git('rev-parse', '--short', 'HEAD'), dirty: git('status', '--porcelain', '--', 'src').length > 0 };
  } catch {
    return { commit: 'unknown', dirty: false };
  }
}

const clock = (s: number): string => `${Math.floor(s / 60)}:${String(Math.floor(s % 60)).padStart(2, '0')}`;
const f = (x: number | null, g: (v: number) => string): string => (x === null || !Number.isFinite(x) ? 'n/a' : g(x));

function describe(s: SoakSample): string {
  return [
    `tracked ${f(s.trackedIds, rate)}`,
    `${f(s.bytesPerCommitMetric ?? s.bytesPerCommitRedis, mib)}/commit`,
    `Redis ${f(s.redisWriteBytesPerSec, (v) => (v / 1e6).toFixed(1))} MB/s`,
    `lag ${f(s.lag, int)}`,
    `wm ${f(s.watermarkDelayS, (v) => v.toFixed(1))} s`,
  ].join(' | ');
}

export interface SoakResult {
  run: SoakRun;
  files: string[];
}

export async function runSoak(ctx: Ctx, meta: { command: string; versions: Versions }): Promise<SoakResult> {
  const { cfg, servers, progress } = ctx;
  const { rate: R, minutes, label, shards } = cfg.soak;
  const prefix = freshPrefix('s');
  const root = serviceRoot();
  const serviceEnv = { ADAGG_SHARDS: String(shards), ADAGG_IDLE_TIMEOUT_MS: '1000', ADAGG_LOG_LEVEL: 'warn', ...cfg.serviceEnv };
  const lanes = R >= 20_000 ? 4 : 2;
  progress.set({ phase: `soak (${label}): starting service from ${root}`, sent: 0, done: undefined, note: undefined });
  const svc = await startService({
    natsUrl: servers.natsUrl,
    redisUrl: servers.redisUrl,
    prefix,
    shards,
    env: cfg.serviceEnv,
    logFile: path.join(servers.logDir, `service-${prefix}.log`),
  });
  // Set from callbacks: an object, so TypeScript does not narrow it to its initial value.
  const st = { endedEarly: null as string | null, stopping: false };
  void svc.exited.then((code) => {
    if (st.stopping) return;
    const last = svc.tail().trim().split('\n').slice(-3).join(' / ').slice(0, 400);
    st.endedEarly ??= `service exited (code ${code}, signal ${svc.child.signalCode ?? 'none'}): ${last}`;
  });
  const spec = liveSpec({ ...cfg, shards }, R * (minutes * 60 + 120), cfg.seed + 700, `s${prefix.slice(-5)}`);
  const samples: SoakSample[] = [];
  let durationS = 0;
  let lastBehindLog = 0;
  const sender = new RateSender(new Workload(spec), { url: svc.url, rate: R, lanes, tickMs: TICK_MS, maxBacklogSec: MAX_BACKLOG_S }, (owed, dropped) => {
    if (Date.now() - lastBehindLog < 10_000) return;
    lastBehindLog = Date.now();
    progress.log(`soak: sender behind by ${(owed / R).toFixed(1)} s of clicks (dropped so far: ${int(dropped)})`);
  });
  const pids = { service: svc.pid, nats: servers.nats.pid, redis: servers.redis.pid };
  try {
    let prev = await read(svc.url, pids, servers.rd, sender.stats);
    progress.set({ phase: `soak (${label}): ${int(R)} clicks/s over HTTP for ${minutes} min, ${shards} shards`, sent: 0 });
    sender.start();
    const t0 = sender.t0;
    const end = t0 + minutes * 60_000;
    let note = 'first sample after 10 s';
    for (let k = 1; ; k++) {
      const due = Math.min(t0 + k * SAMPLE_EVERY_S * 1000, end);
      while (Date.now() < due && !st.endedEarly) {
        progress.set({ sent: sender.stats.accepted, note: `${clock((Date.now() - t0) / 1000)}/${clock(minutes * 60)} | ${note}` });
        await sleep(Math.min(500, Math.max(1, due - Date.now())));
      }
      const cur = fillTracked(prev, await read(svc.url, pids, servers.rd, sender.stats));
      const s = sampleOf(prev, cur, t0, sender.takeMaxOwed(), R, actorFailures(svc).restarts, !st.endedEarly);
      samples.push(s);
      prev = carry(prev, cur);
      note = describe(s);
      progress.log(
        `soak ${clock(s.t)}: ${rate(s.ingestRate)}/s, ${note}, commit ${f(s.commitMeanMs, (v) => v.toFixed(0))} ms ` +
          `(p99 ${s.commitP99Capped ? '>' : ''}${f(s.commitP99Ms, (v) => v.toFixed(0))} ms, ${f(s.commits, int)} commits), Redis mem ${f(s.redisUsedMemory, mib)}, ` +
          `RSS ${f(s.rss, mib)}, load ${s.load1.toFixed(1)}, cores svc ${f(s.serviceCores, (v) => v.toFixed(2))} others ${f(s.cores?.others ?? null, (v) => v.toFixed(2))}${s.errors.length ? `, errors: ${s.errors.join('; ').slice(0, 200)}` : ''}`,
      );
      if (st.endedEarly || due >= end) break;
    }
    durationS = (Date.now() - t0) / 1000;
    progress.set({ note: 'stopping the sender (requests in flight ≤ 30 s)' });
    const stopped = await within(sender.stop(), 40_000, 'sender stop');
    if (stopped instanceof Error) progress.log(`soak: ${stopped.message}`);
  } catch (err) {
    st.endedEarly ??= `bench error: ${err instanceof Error ? err.message : String(err)}`;
    await within(sender.stop(), 40_000, 'sender stop');
  } finally {
    progress.set({ note: 'stopping the service' });
    st.stopping = true;
    await svc.stop(20_000);
    await svc.kill();
    await within(deleteStream(servers.nc, topology(prefix).clicksStream), 60_000, 'delete stream');
    await within(deleteStream(servers.nc, topology(prefix).deadLetterStream), 60_000, 'delete stream');
    await within(servers.rd.flushall(), 120_000, 'redis FLUSHALL');
  }
  const run: SoakRun = {
    scenario: 'soak',
    label,
    rate: R,
    minutes,
    date: new Date().toISOString(),
    command: meta.command,
    versions: { ...meta.versions },
    service: { root, ...gitOf(root) },
    config: {
      shards,
      lanes,
      tickMs: TICK_MS,
      sampleEveryS: SAMPLE_EVERY_S,
      maxBacklogSec: MAX_BACKLOG_S,
      serviceEnv,
      workload: { ads: spec.ads, zipfS: spec.zipfS, dupFraction: spec.dupFraction, lateFraction: spec.lateFraction, maxLateMs: spec.maxLateMs, seed: spec.seed, time: 'live (event time = now)' },
    },
    outcome: {
      completed: st.endedEarly === null,
      durationS,
      endedEarly: st.endedEarly,
      actorFailures: actorFailures(svc),
      sender: { ...sender.stats },
      loadavgEnd: os.loadavg(),
    },
    samples,
  };
  await mkdir(cfg.outDir, { recursive: true });
  const base = path.join(cfg.outDir, runFile(label, R));
  await writeFile(`${base}.json`, JSON.stringify(run, null, 1));
  await writeFile(`${base}.svg`, soakSvg(run));
  const md = await writeSoakReport(cfg.outDir);
  const targets = evaluate(run);
  const k = keyFigures(run);
  const ok = targets.every((t) => t.pass);
  ctx.row('soak', `verdict (${label}, ${int(R)}/s, ${minutes} min)`, ok ? 'PASS' : 'FAIL', targets.filter((t) => !t.pass).map((t) => t.short).join(', ') || 'all targets met');
  ctx.row('soak', 'tracked ids at the end', f(k.trackedEnd, int), `growth ${f(k.trackedGrowthPct, (v) => v.toFixed(1))} % per 5 min (2nd half)`);
  ctx.row('soak', 'bytes per commit (Redis), 2nd half', f(k.bytesPerCommitRedis, mib), `growth ${f(k.bytesPerCommitRedisGrowthPct, (v) => v.toFixed(1))} % per 5 min`);
  ctx.row('soak', 'commit time mean, 2nd half', f(k.commitMeanMs, (v) => `${v.toFixed(1)} ms`), `growth ${f(k.commitMeanGrowthPct, (v) => v.toFixed(1))} % per 5 min`);
  ctx.row('soak', 'Redis write bytes/s, 2nd half', f(k.redisWriteBps, (v) => `${(v / 1e6).toFixed(2)} MB/s`), `${f(k.writeOverClicks, (v) => v.toFixed(2))} × the clicks' bytes`);
  ctx.row('soak', 'watermark delay max (after 30 s)', f(k.wmDelayMax, (v) => `${v.toFixed(1)} s`));
  for (const t of targets) progress.log(`soak target ${t.pass ? 'pass' : 'FAIL'}: ${t.target}: ${t.detail}`);
  return { run, files: [`${base}.json`, `${base}.svg`, md] };
}
