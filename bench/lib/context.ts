/** Bench configuration (flags → sizes), the shared context and the result table rows. */
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { parseArgs } from 'node:util';
import type { Progress } from './progress.ts';
import type { BenchServers } from './servers.ts';
import type { WorkloadSpec } from './workload.ts';

/** The default (full) run. */
export const SCENARIOS = ['pipeline', 'transport', 'naive', 'latency', 'http', 'recovery', 'memory'] as const;
/** Scenarios that run only when named (`npm run bench -- soak` or `--only soak`); each writes its own report. */
export const EXTRA_SCENARIOS = ['soak', 'restart', 'risk', 'history', 'recompute'] as const;
export type ScenarioName = (typeof SCENARIOS)[number] | (typeof EXTRA_SCENARIOS)[number];
const KNOWN: readonly string[] = [...SCENARIOS, ...EXTRA_SCENARIOS];

export interface SoakConfig {
  /** Offered clicks/s over HTTP. */
  rate: number;
  minutes: number;
  /** Names the run in bench/results/soak-<label>-<rate>.* ('before' / 'after'). */
  label: string;
  /** ADAGG_SHARDS of the soak service (--shards, default 16: the product default). */
  shards: number;
}

export interface BenchConfig {
  quick: boolean;
  only: Set<ScenarioName>;
  cpuProf: boolean;
  shards: number;
  maxBatch: number;
  /** Concurrent publish calls in flight. */
  window: number;
  ads: number;
  zipfS: number;
  pipelineEvents: number;
  pipelineRuns: number;
  transportEvents: number;
  naiveEvents: number;
  latencyRate: number;
  latencySeconds: number;
  /** Probes whose time to final is measured. */
  finalProbes: number;
  /** Longest wait for a probe's minute to close. */
  finalWaitMs: number;
  httpEvents: number;
  httpClients: number;
  recoveryEvents: number;
  /** Event time of the throughput workloads spans this many minutes before the current minute. */
  spanMinutes: number;
  /** Extra environment for every adagg service the bench starts (--service-env K=V,K=V). */
  serviceEnv: Record<string, string>;
  /** Where latest.md/json and throughput.svg go. */
  outDir: string;
  seed: number;
  /** Checkout whose `src/cli/main.ts start` is spawned as the service (--service-root); default this one. */
  serviceRoot: string | undefined;
  soak: SoakConfig;
  /** restart: events consumed before the SIGKILL (≈ tracked ids) (--ids). */
  restartIds: number;
  /** restart: events published while the service is down (--backlog). */
  restartBacklog: number;
  /** restart: SIGKILL + restart cycles on the one built state (--runs; default 3, quick 1); the median is reported. */
  restartRuns: number;
  /** restart: ADAGG_SHARDS of its service (--shards, default 16). */
  restartShards: number;
  /** restart: event time of its workload spans this many minutes before the current one. */
  restartSpanMinutes: number;
  /** risk: events per run (--events; default 500,000, quick 200,000). */
  riskEvents: number;
  /** history: events per archive off/on run (--events; default 2,000,000, quick 500,000). */
  historyEvents: number;
  /** history: original clicks of the generated day (--day-clicks; default 20,000,000, quick 2,000,000). */
  historyDayClicks: number;
  /** history: ads of the generated day. */
  historyAds: number;
}

export function parseConfig(argv: string[]): BenchConfig {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      quick: { type: 'boolean', default: false },
      only: { type: 'string' },
      'cpu-prof': { type: 'boolean', default: false },
      events: { type: 'string' },
      runs: { type: 'string' },
      window: { type: 'string' },
      batch: { type: 'string' },
      'span-minutes': { type: 'string' },
      'final-wait': { type: 'string' },
      'service-env': { type: 'string' },
      out: { type: 'string' },
      shards: { type: 'string' },
      'service-root': { type: 'string' },
      rate: { type: 'string' },
      minutes: { type: 'string' },
      label: { type: 'string' },
      ids: { type: 'string' },
      backlog: { type: 'string' },
      'day-clicks': { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    console.log(`npm run bench -- [scenario ...] [--quick] [--only ${KNOWN.join(',')}] [--cpu-prof]
  scenario ...   run only these (same as --only); without one: ${SCENARIOS.join(', ')}
                 (soak and restart only run when named: npm run bench -- soak --rate 10000 --minutes 15,
                 npm run bench -- restart --ids 40000000, npm run bench -- risk: the example
                 invalid-click rules on next to off, writes bench/results/risk.md;
                 npm run bench -- history: archive off next to on, reconcile of a generated day,
                 writes bench/results/history.md)
  --quick        small sizes (< 2 min), for a smoke test
  --only a,b     run only these scenarios
  --cpu-prof     V8 CPU profile of the service during the first pipeline run (top self time in the report)
  --events N     events per pipeline/transport/naive run (default 2,000,000; quick 200,000),
                 per risk run (default 500,000; quick 200,000)
  --runs N       pipeline repetitions, or restart cycles (default 3; quick 1)
  --window N     concurrent publish calls (default 32)
  --batch N      producer maxBatch (default 500)
  --span-minutes N  event time of pipeline/transport/naive/recovery spread over the N minutes
                 before the current one (default 4)
  --final-wait S longest wait, in seconds, for latency probes to become final (default 90; quick 25)
  --service-env K=V,K=V  extra environment for the adagg service (e.g. ADAGG_SNAPSHOT_EVERY_MESSAGES=50)
  --out DIR      results directory (default bench/results)
  --shards N     ADAGG_SHARDS of the services the bench starts (default 8; soak: 16, the product default)
  --service-root DIR  spawn the service from this checkout (DIR/src/cli/main.ts start), e.g. a git
                 worktree of an older commit; the bench code itself still runs from here
  --rate R       soak: offered clicks/s over POST /v1/clicks (default 10000)
  --minutes M    soak: duration of the load (default 15)
  --label L      soak: run label in bench/results/soak-<label>-<rate>.* (default after)
  --ids N        restart: events consumed before the SIGKILL, ≈ click ids tracked (default 40,000,000;
                 quick 2,000,000)
  --backlog N    restart: events published while the service is down (default 100,000: 10 s of the
                 specified average load, 2 s of its peak)
                 restart: --runs N kill/restart cycles on the one built state (default 3; quick 1)
  --day-clicks N history: original clicks of the generated day (default 20,000,000; quick 2,000,000);
                 --events N: events per archive off/on run (default 2,000,000; quick 500,000)`);
    process.exit(0);
  }
  const quick = values.quick === true;
  const only = new Set<ScenarioName>();
  const named = [...(values.only ?? '').split(','), ...positionals].map((x) => x.trim()).filter(Boolean);
  for (const s of named.length ? named : SCENARIOS) {
    if (!KNOWN.includes(s)) throw new Error(`unknown scenario '${s}' (known: ${KNOWN.join(', ')})`);
    only.add(s as ScenarioName);
  }
  const n = (v: string | undefined, d: number): number => {
    if (v === undefined) return d;
    const x = Number(v.replace(/_/g, ''));
    if (!Number.isSafeInteger(x) || x < 1) throw new Error(`bad number ${v}`);
    return x;
  };
  const events = n(values.events, quick ? 200_000 : 2_000_000);
  const label = values.label ?? 'after';
  if (!/^[A-Za-z0-9_-]{1,40}$/.test(label)) throw new Error(`--label: letters, digits, _ and - only, got '${label}'`);
  return {
    quick,
    only,
    cpuProf: values['cpu-prof'] === true,
    shards: n(values.shards, 8),
    maxBatch: n(values.batch, 500),
    window: n(values.window, 32),
    ads: 2_000_000,
    zipfS: 1.0,
    pipelineEvents: events,
    pipelineRuns: n(values.runs, quick ? 1 : 3),
    transportEvents: events,
    naiveEvents: events,
    latencyRate: quick ? 10_000 : 50_000,
    latencySeconds: quick ? 5 : 20,
    finalProbes: quick ? 3 : 5,
    finalWaitMs: n(values['final-wait'], quick ? 25 : 90) * 1000,
    httpEvents: quick ? 50_000 : 500_000,
    httpClients: 4,
    recoveryEvents: quick ? 100_000 : 1_000_000,
    spanMinutes: n(values['span-minutes'], 4),
    serviceEnv: parseEnv(values['service-env']),
    outDir: path.resolve(values.out ?? path.join(import.meta.dirname, '../results')),
    seed: 20_240_709,
    serviceRoot: values['service-root'] === undefined ? undefined : path.resolve(values['service-root']),
    soak: { rate: n(values.rate, 10_000), minutes: n(values.minutes, 15), label, shards: n(values.shards, 16) },
    restartIds: n(values.ids, quick ? 2_000_000 : 40_000_000),
    restartBacklog: n(values.backlog, 100_000),
    restartRuns: n(values.runs, quick ? 1 : 3),
    restartShards: n(values.shards, 16),
    restartSpanMinutes: 30,
    riskEvents: n(values.events, quick ? 200_000 : 500_000),
    historyEvents: n(values.events, quick ? 500_000 : 2_000_000),
    historyDayClicks: n(values['day-clicks'], quick ? 2_000_000 : 20_000_000),
    historyAds: 200_000,
  };
}

function parseEnv(v: string | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const kv of (v ?? '').split(',').map((x) => x.trim()).filter(Boolean)) {
    const i = kv.indexOf('=');
    if (i < 1 || !/^ADAGG_[A-Z_]+$/.test(kv.slice(0, i))) throw new Error(`--service-env: expected ADAGG_NAME=value, got '${kv}'`);
    out[kv.slice(0, i)] = kv.slice(i + 1);
  }
  return out;
}

export interface Row {
  scenario: string;
  figure: string;
  value: string;
  note?: string;
}

export interface Ctx {
  cfg: BenchConfig;
  servers: BenchServers;
  progress: Progress;
  rows: Row[];
  /** Raw per-scenario results for latest.json. */
  data: Record<string, unknown>;
  row(scenario: string, figure: string, value: string, note?: string): void;
}

/** A fresh stream/key prefix (letters and digits, as adagg requires). */
export function freshPrefix(kind: string): string {
  return `b${kind}${randomBytes(4).toString('hex')}`;
}

/**
 * Workload of the throughput scenarios: event time spread over the minutes before the current minute
 * (`cfg.spanMinutes` of them, over `cfg.shards` shards, unless the scenario says otherwise).
 */
export function spreadSpec(
  cfg: BenchConfig,
  events: number,
  seed: number,
  tag: string,
  over: { spanMinutes?: number; shards?: number } = {},
): WorkloadSpec {
  const t0 = Math.floor(Date.now() / 60_000) * 60_000;
  const span = (over.spanMinutes ?? cfg.spanMinutes) * 60_000;
  return {
    events,
    ads: cfg.ads,
    zipfS: cfg.zipfS,
    lateFraction: 0.01,
    maxLateMs: 120_000,
    dupFraction: 0.01,
    time: { mode: 'spread', startMs: t0 - span, endMs: t0 - 1 },
    seed,
    tag,
    shards: over.shards ?? cfg.shards,
    maxBatch: cfg.maxBatch,
  };
}

export function liveSpec(cfg: BenchConfig, events: number, seed: number, tag: string): WorkloadSpec {
  return { ...spreadSpec(cfg, events, seed, tag), time: { mode: 'live' } };
}
