/**
 * adagg benchmark: `npm run bench [-- --quick] [-- --only a,b] [-- --cpu-prof]`.
 * Starts its own nats-server and redis-server (free ports, temp dir), runs the scenarios in
 * bench/scenarios/, prints the results table and writes bench/results/latest.{md,json} and
 * bench/results/throughput.svg. See bench/README.md.
 */
import os from 'node:os';
import path from 'node:path';
import { parseConfig, freshPrefix, SCENARIOS, type Ctx, type Row } from './lib/context.ts';
import { Progress } from './lib/progress.ts';
import { markdownTable, profileSection, throughputSvg, writeResults } from './lib/report.ts';
import { httpRows, latencyRows, medianRun, memoryRows, naiveRows, pipelineRows, recoveryRows, transportRows } from './lib/rows.ts';
import { deleteStream, startBenchServers, versions } from './lib/servers.ts';
import { setServiceRoot, startBenchService, startService, type Service } from './lib/service.ts';
import { DriveError, type Sample } from './lib/drive.ts';
import { int, rate } from './lib/stats.ts';
import { runHttp, type HttpResult } from './scenarios/http.ts';
import { runLatency, type LatencyResult } from './scenarios/latency.ts';
import { dedupMemory, type DedupMemory } from './scenarios/memory.ts';
import { runNaive, type NaiveResult } from './scenarios/naive.ts';
import { pipelineRun, type PipelineRun } from './scenarios/pipeline.ts';
import { runRecovery, type RecoveryResult } from './scenarios/recovery.ts';
import { runRestart, type RestartResult } from './scenarios/restart.ts';
import { writeRestartReport } from './lib/restart-report.ts';
import { runSoak, type SoakResult } from './scenarios/soak.ts';
import { runTransport, type TransportResult } from './scenarios/transport.ts';
import { runRisk, type RiskResult } from './scenarios/risk.ts';
import { riskRows, writeRiskReport } from './lib/risk-report.ts';
import { runHistory, type HistoryResult } from './scenarios/history.ts';
import { historyRows, writeHistoryReport } from './lib/history-report.ts';
import { recomputeRows, runRecompute, writeRecomputeReport, type RecomputeResult } from './scenarios/recompute.ts';
import { topology } from '../src/runtime/topology.ts';

const argv = process.argv.slice(2);
const cfg = parseConfig(argv);
if (cfg.serviceRoot) setServiceRoot(cfg.serviceRoot);
// soak, restart, risk and history write their own files (soak-*.json/svg, soak.md; restart.json/md;
// risk.json/md; history.json/md); alone, they leave latest.* untouched.
const soakOnly = [...cfg.only].every((s) => s === 'soak' || s === 'restart' || s === 'risk' || s === 'history' || s === 'recompute');
const command =
  process.env.npm_lifecycle_event === 'bench'
    ? `npm run bench${argv.length ? ` -- ${argv.join(' ')}` : ''}`
    : `node --import tsx bench/run.ts ${argv.join(' ')}`.trim();
const started = Date.now();
const progress = new Progress();
progress.start();
progress.log(`adagg bench (${cfg.quick ? 'quick' : 'full'}): ${[...cfg.only].join(', ')}`);
const servers = await startBenchServers();
let interrupted = false;
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.on(sig, () => {
    if (interrupted) process.exit(130);
    interrupted = true;
    progress.log(`${sig}: stopping servers`);
    void servers.stop().finally(() => process.exit(130));
  });
}
const rows: Row[] = [];
const data: Record<string, unknown> = {};
const ctx: Ctx = {
  cfg,
  servers,
  progress,
  rows,
  data,
  row: (scenario, figure, value, note) => rows.push({ scenario, figure, value, ...(note ? { note } : {}) }),
};
const failures: string[] = [];
async function attempt<T>(name: string, f: () => Promise<T>): Promise<T | undefined> {
  try {
    return await f();
  } catch (err) {
    const msg = err instanceof Error ? (err.stack ?? err.message) : String(err);
    progress.log(`${name} FAILED: ${msg}`);
    failures.push(name);
    rows.push({ scenario: name, figure: 'FAILED', value: 'error', note: (err instanceof Error ? err.message : String(err)).split('\n')[0]!.slice(0, 300) });
    return undefined;
  }
}

const v = await versions(servers);
const runs: PipelineRun[] = [];
let failedRun: { message: string; samples: Sample[] } | undefined;
let transport: TransportResult | undefined;
let naive: NaiveResult | undefined;
let latency: LatencyResult | undefined;
let http: HttpResult | undefined;
let recovery: RecoveryResult | undefined;
let dedup: DedupMemory | undefined;
let soak: SoakResult | undefined;
let restart: RestartResult | undefined;
let risk: RiskResult | undefined;
let history: HistoryResult | undefined;
let recomputeResult: RecomputeResult | undefined;

try {
  if (cfg.only.has('pipeline') || cfg.only.has('memory')) {
    const n = cfg.only.has('pipeline') ? cfg.pipelineRuns : 1;
    for (let i = 0; i < n; i++) {
      const r = await attempt('pipeline', () =>
        pipelineRun(ctx, i, cfg.pipelineEvents).catch((err: unknown) => {
          if (err instanceof DriveError && !failedRun) failedRun = { message: err.message, samples: err.samples };
          throw err;
        }),
      );
      if (r) runs.push(r);
    }
  }
  if (cfg.only.has('transport')) transport = await attempt('transport', () => runTransport(ctx));
  if (cfg.only.has('naive')) naive = await attempt('naive', () => runNaive(ctx));
  // Latency and HTTP each get a fresh service (a failing minute close in one must not spoil the other).
  const withService = async (name: 'latency' | 'http', kind: string, f: (svc: Service, prefix: string) => Promise<void>): Promise<void> => {
    const prefix = freshPrefix(kind);
    await attempt(name, async () => {
      progress.set({ phase: `${name}: starting service`, sent: 0, done: undefined });
      const svc = await startBenchService({ cfg, servers }, prefix);
      try {
        await f(svc, prefix);
        await svc.stop(5000);
      } finally {
        await svc.kill();
        await deleteStream(servers.nc, topology(prefix).clicksStream);
        await deleteStream(servers.nc, topology(prefix).deadLetterStream);
        await servers.rd.flushall();
      }
    });
  };
  if (cfg.only.has('latency')) await withService('latency', 'l', async (svc, prefix) => void (latency = await runLatency(ctx, svc, prefix)));
  if (cfg.only.has('http')) await withService('http', 'h', async (svc, prefix) => void (http = await runHttp(ctx, svc, prefix)));
  if (cfg.only.has('recovery')) recovery = await attempt('recovery', () => runRecovery(ctx));
  if (cfg.only.has('memory')) dedup = await attempt('memory', async () => dedupMemory());
  if (cfg.only.has('soak')) soak = await attempt('soak', () => runSoak(ctx, { command, versions: v }));
  if (cfg.only.has('restart')) restart = await attempt('restart', () => runRestart(ctx, cfg.restartIds));
  if (cfg.only.has('risk')) risk = await attempt('risk', () => runRisk(ctx));
  if (cfg.only.has('history')) history = await attempt('history', () => runHistory(ctx));
  if (cfg.only.has('recompute')) recomputeResult = await attempt('recompute', () => runRecompute(ctx));
} finally {
  progress.stop();
  await servers.stop();
}

if (cfg.only.has('pipeline')) rows.push(...pipelineRows(runs));
if (transport) rows.push(...transportRows(transport, runs));
if (naive) rows.push(...naiveRows(naive, runs));
if (latency) rows.push(...latencyRows(latency));
if (http) rows.push(...httpRows(http));
if (recovery) rows.push(...recoveryRows(recovery));
if (cfg.only.has('memory')) rows.push(...memoryRows(runs, dedup));
if (risk) rows.push(...riskRows(risk));
if (history) rows.push(...historyRows(history));
if (recomputeResult) rows.push(...recomputeRows(recomputeResult));
// Scenario order (failure rows were added when they happened); within a scenario, figures first.
const order = (r: Row): number => {
  const i = (SCENARIOS as readonly string[]).indexOf(r.scenario);
  return (i < 0 ? SCENARIOS.length : i) * 2 + Number(r.figure === 'FAILED');
};
rows.sort((a, b) => order(a) - order(b));

const extra: string[] = [];
if (runs.length) {
  extra.push('## Pipeline runs', '', '| run | events/s | publish events/s | duration | drain | exact | RSS steady | service cores |', '|---:|---:|---:|---:|---:|---|---:|---:|');
  runs.forEach((r, i) =>
    extra.push(
      `| ${i + 1} | ${rate(r.eventsPerSec)} | ${rate(r.publishPerSec)} | ${(r.durationMs / 1000).toFixed(1)} s | ${(r.drainMs / 1000).toFixed(1)} s | ${r.exact.exact} | ${(r.rss.steady / 2 ** 20).toFixed(0)} MiB | ${r.cores.service.toFixed(2)} |`,
    ),
  );
  extra.push('');
  const prof = runs[0]?.profile;
  if (prof) extra.push(profileSection(prof));
}
const m = medianRun(runs);
const svg = m
  ? throughputSvg(
      m.samples,
      'adagg pipeline: throughput and lag (median run)',
      `${int(m.events)} events, ${cfg.shards} shards, batch ${cfg.maxBatch}, window ${cfg.window}; ${rate(m.eventsPerSec)} events/s first publish → all committed`,
    )
  : failedRun
    ? throughputSvg(failedRun.samples, 'adagg pipeline: FAILED run (given up)', failedRun.message.slice(0, 250))
    : null;
if (failedRun) data.pipelineFailedRun = failedRun;
Object.assign(data, { pipeline: runs.map((r) => ({ ...r, samples: r === m ? r.samples : undefined })), transport, naive, latency, http, recovery, dedup });
const restartFiles = restart ? await writeRestartReport(cfg.outDir, restart, { command, versions: v, serviceEnv: cfg.serviceEnv }) : [];
if (risk) restartFiles.push(...(await writeRiskReport(cfg.outDir, risk, { command, versions: { ...v }, shards: cfg.shards })));
if (recomputeResult) restartFiles.push(...(await writeRecomputeReport(cfg.outDir, recomputeResult, { command, versions: { ...v }, shards: cfg.shards, quick: cfg.quick })));
if (history) restartFiles.push(...(await writeHistoryReport(cfg.outDir, history, { command, versions: { ...v }, shards: cfg.shards, quick: cfg.quick, dayClicks: cfg.historyDayClicks })));
if (soakOnly) {
  console.log(`\n${markdownTable(rows)}\n`);
  console.error(`wrote ${[...(soak?.files ?? []), ...restartFiles].map((f) => path.relative(process.cwd(), f)).join(', ')} in ${((Date.now() - started) / 1000).toFixed(0)} s`);
  process.exit(failures.length ? 1 : 0);
}
const written = await writeResults(
  cfg.outDir,
  {
    command,
    date: new Date().toISOString(),
    mode: cfg.quick ? 'quick' : cfg.only.size === SCENARIOS.length && SCENARIOS.every((s) => cfg.only.has(s)) ? 'full' : `partial (${[...cfg.only].join(',')})`,
    versions: { ...v },
    config: {
      shards: cfg.shards,
      maxBatch: cfg.maxBatch,
      window: cfg.window,
      ads: cfg.ads,
      zipfS: cfg.zipfS,
      pipelineEvents: cfg.pipelineEvents,
      pipelineRuns: cfg.pipelineRuns,
      latencyRate: cfg.latencyRate,
      latencySeconds: cfg.latencySeconds,
      httpEvents: cfg.httpEvents,
      recoveryEvents: cfg.recoveryEvents,
      spanMinutes: cfg.spanMinutes,
      ...(cfg.serviceRoot ? { serviceRoot: cfg.serviceRoot } : {}),
      serviceEnv: `ADAGG_SHARDS=${cfg.shards},ADAGG_IDLE_TIMEOUT_MS=1000,ADAGG_LOG_LEVEL=warn${Object.entries(cfg.serviceEnv).map(([k, v]) => `,${k}=${v}`).join('')}`,
    },
    durationMs: Date.now() - started,
    loadavg: os.loadavg(),
  },
  rows,
  data,
  extra,
  svg,
);
const files = [...(soak?.files ?? []), ...restartFiles, ...written];
console.log(`\n${markdownTable(rows)}\n`);
console.error(`wrote ${files.map((f) => path.relative(process.cwd(), f)).join(', ')} in ${((Date.now() - started) / 1000).toFixed(0)} s`);
process.exit(failures.length ? 1 : 0);
