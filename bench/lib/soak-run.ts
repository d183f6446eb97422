/**
 * A soak run as stored in bench/results/soak-<label>-<rate>.json, and its evaluation: the key
 * figures of its second half and the three targets (watermark delay bounded; commit cost flat
 * while tracked ids grow; Redis writes ≤ 3 × the clicks' own bytes).
 */
import type { SoakSample } from './soak-sampler.ts';
import type { SenderStats } from './soak-sender.ts';

export interface SoakRun {
  scenario: 'soak';
  label: string;
  rate: number;
  minutes: number;
  date: string;
  command: string;
  versions: Record<string, string>;
  /** The checkout the service ran from, its commit and whether its src/ had uncommitted changes. */
  service: { root: string; commit: string; dirty: boolean };
  config: {
    shards: number;
    lanes: number;
    tickMs: number;
    sampleEveryS: number;
    maxBacklogSec: number;
    /** Environment the bench gave the service (ADAGG_*), defaults of the service otherwise. */
    serviceEnv: Record<string, string>;
    workload: Record<string, unknown>;
  };
  outcome: {
    /** The load ran for the whole duration with the service up. */
    completed: boolean;
    durationS: number;
    endedEarly: string | null;
    actorFailures: { restarts: number; fatal: number; first: string | null };
    sender: SenderStats;
    loadavgEnd: number[];
  };
  samples: SoakSample[];
}

export const FLAT_LIMIT_PCT = 10;
export const WRITE_RATIO_LIMIT = 3;
/** Samples in the first seconds are not held to the watermark target (start-up). */
export const WARMUP_S = 30;
/**
 * The run counts as having held the load when it accepted at least this share of the offered rate,
 * and as keeping up when the shard actors processed at least this share of what was accepted.
 */
export const RATE_HELD = 0.95;

export function allowedLatenessMs(run: SoakRun): number {
  const v = Number(run.config.serviceEnv.ADAGG_ALLOWED_LATENESS_MS);
  return Number.isFinite(v) && v >= 0 && run.config.serviceEnv.ADAGG_ALLOWED_LATENESS_MS !== undefined ? v : 10_000;
}

/** Least-squares slope of y over t (per second) and the mean of y; null with fewer than 3 points. */
export function fit(points: ReadonlyArray<readonly [number, number]>): { slope: number; mean: number; n: number } | null {
  const n = points.length;
  if (n < 3) return null;
  const mt = points.reduce((a, p) => a + p[0], 0) / n;
  const my = points.reduce((a, p) => a + p[1], 0) / n;
  let sxy = 0;
  let sxx = 0;
  for (const [t, y] of points) {
    sxy += (t - mt) * (y - my);
    sxx += (t - mt) ** 2;
  }
  return sxx > 0 ? { slope: sxy / sxx, mean: my, n } : null;
}

/** Growth of a figure over the given samples: the fitted slope as % of its mean per 5 minutes. */
export function growthPct(samples: readonly SoakSample[], pick: (s: SoakSample) => number | null): number | null {
  const pts = samples.flatMap((s) => {
    const y = pick(s);
    return y === null || !Number.isFinite(y) ? [] : [[s.t, y] as const];
  });
  const f = fit(pts);
  if (!f || !(f.mean > 0)) return null;
  return ((f.slope * 300) / f.mean) * 100;
}

export const secondHalf = (run: SoakRun): SoakSample[] => {
  const half = (run.samples.at(-1)?.t ?? 0) / 2;
  return run.samples.filter((s) => s.t >= half);
};

const mean = (xs: ReadonlyArray<number | null>): number | null => {
  const v = xs.filter((x): x is number => x !== null && Number.isFinite(x));
  return v.length ? v.reduce((a, b) => a + b, 0) / v.length : null;
};
const maxOf = (xs: ReadonlyArray<number | null>): number | null => {
  const v = xs.filter((x): x is number => x !== null && Number.isFinite(x));
  return v.length ? Math.max(...v) : null;
};

/** Σ processed ÷ Σ accepted over samples (null when the service does not export adagg_events_processed_total). */
function share(samples: readonly SoakSample[]): number | null {
  const w = samples.filter((s) => s.processedRate !== null && s.processedRate !== undefined);
  const accepted = w.reduce((a, s) => a + s.ingestRate * s.intervalS, 0);
  return w.length && accepted > 0 ? w.reduce((a, s) => a + s.processedRate! * s.intervalS, 0) / accepted : null;
}

/** Watermark delay of a sample: the larger of the gauge and /v1/status (a stalled shard's gauge stops moving). */
export const wmDelay = (s: SoakSample): number | null => maxOf([s.watermarkDelayS, s.statusWatermarkDelayS]);
/** Bytes per commit as the service reports it when it can, else as Redis saw it. */
export const bytesPerCommit = (s: SoakSample): number | null => s.bytesPerCommitMetric ?? s.bytesPerCommitRedis;

export interface KeyFigures {
  achievedRate: number | null;
  /** Second half: clicks the shard actors processed ÷ clicks accepted (< 1: falling behind). */
  processedShare: number | null;
  trackedEnd: number | null;
  trackedGrowthPct: number | null;
  bytesPerCommitRedis: number | null;
  bytesPerCommitRedisGrowthPct: number | null;
  bytesPerCommitMetric: number | null;
  bytesPerCommitMetricGrowthPct: number | null;
  commitMeanMs: number | null;
  commitMeanGrowthPct: number | null;
  commitP99MaxMs: number | null;
  /** The largest p99 fell past the last histogram bucket: commitP99MaxMs is a lower bound. */
  commitP99Capped: boolean;
  commitsPerSec: number | null;
  redisWriteBps: number | null;
  redisWriteGrowthPct: number | null;
  writeOverClicks: number | null;
  redisMemEnd: number | null;
  rssEnd: number | null;
  lagMax: number | null;
  wmDelayMax: number | null;
  load1Mean: number | null;
  serviceCoresMean: number | null;
  othersCoresMean: number | null;
}

/** Second-half means and growths, end values, and maxima after the warm-up. */
export function keyFigures(run: SoakRun): KeyFigures {
  const h = secondHalf(run);
  const warm = run.samples.filter((s) => s.t > WARMUP_S);
  const last = [...run.samples].reverse();
  const lastOf = (f: (s: SoakSample) => number | null): number | null => last.map(f).find((x) => x !== null) ?? null;
  // Totals over the second-half samples whose Redis reading worked (a failed read leaves a gap).
  const withRedis = h.filter((s) => s.redisWriteBytesPerSec !== null);
  const netIn = withRedis.reduce((a, s) => a + s.redisWriteBytesPerSec! * s.intervalS, 0);
  const clicks = withRedis.reduce((a, s) => a + s.clickBytesPerSec * s.intervalS, 0);
  const secs = withRedis.reduce((a, s) => a + s.intervalS, 0);
  const withBoth = withRedis.filter((s) => s.commitsPerSec !== null);
  const commits = withBoth.reduce((a, s) => a + s.commitsPerSec! * s.intervalS, 0);
  const netInCommitted = withBoth.reduce((a, s) => a + s.redisWriteBytesPerSec! * s.intervalS, 0);
  return {
    achievedRate: mean(run.samples.map((s) => s.ingestRate)),
    processedShare: share(h),
    trackedEnd: lastOf((s) => s.trackedIds),
    trackedGrowthPct: growthPct(h, (s) => s.trackedIds),
    bytesPerCommitRedis: commits > 0 ? netInCommitted / commits : null,
    bytesPerCommitRedisGrowthPct: growthPct(h, (s) => s.bytesPerCommitRedis),
    bytesPerCommitMetric: mean(h.map((s) => s.bytesPerCommitMetric)),
    bytesPerCommitMetricGrowthPct: growthPct(h, (s) => s.bytesPerCommitMetric),
    commitMeanMs: mean(h.map((s) => s.commitMeanMs)),
    commitMeanGrowthPct: growthPct(h, (s) => s.commitMeanMs),
    commitP99MaxMs: maxOf(h.map((s) => s.commitP99Ms)),
    commitP99Capped: h.some((s) => s.commitP99Capped && s.commitP99Ms === maxOf(h.map((x) => x.commitP99Ms))),
    commitsPerSec: withBoth.length ? commits / withBoth.reduce((a, s) => a + s.intervalS, 0) : null,
    redisWriteBps: secs > 0 ? netIn / secs : null,
    redisWriteGrowthPct: growthPct(h, (s) => s.redisWriteBytesPerSec),
    writeOverClicks: clicks > 0 ? netIn / clicks : null,
    redisMemEnd: lastOf((s) => s.redisUsedMemory),
    rssEnd: lastOf((s) => s.rss),
    lagMax: maxOf(warm.map((s) => s.lag)),
    wmDelayMax: maxOf(warm.map(wmDelay)),
    load1Mean: mean(run.samples.map((s) => s.load1)),
    serviceCoresMean: mean(run.samples.map((s) => s.serviceCores)),
    othersCoresMean: mean(run.samples.map((s) => s.cores?.others ?? null)),
  };
}

export interface TargetResult {
  /** A few words for the one-line verdict. */
  short: string;
  target: string;
  pass: boolean;
  detail: string;
}

const pct = (x: number | null): string => (x === null ? 'n/a' : `${x >= 0 ? '+' : ''}${x.toFixed(1)} %`);

/** The targets of one run, in the order of bench/README.md; a run that did not complete fails them all. */
export function evaluate(run: SoakRun): TargetResult[] {
  const k = keyFigures(run);
  const limitS = allowedLatenessMs(run) / 1000 + 5;
  const broken = run.outcome.completed ? null : `run did not complete: ${run.outcome.endedEarly ?? 'unknown'}`;
  const out: TargetResult[] = [];
  const held = k.achievedRate !== null && k.achievedRate >= RATE_HELD * run.rate;
  // A service that falls behind commits less work, so its write figures understate the cost:
  // targets 2 and 3 only count while it keeps up.
  const keptUp = k.processedShare === null || k.processedShare >= RATE_HELD;
  const behind = keptUp ? '' : `; the service fell behind (processed ${((k.processedShare ?? 0) * 100).toFixed(0)} % of the accepted clicks in the 2nd half), so this figure understates the cost`;
  out.push({
    short: 'load held and kept up',
    target: `0. load held: ${run.minutes} min at ≥ ${RATE_HELD * 100} % of ${run.rate.toLocaleString('en-US')} clicks/s, and processed ≥ ${RATE_HELD * 100} % of them (2nd half)`,
    pass: !broken && held && keptUp,
    detail:
      broken ??
      `accepted ${k.achievedRate === null ? 'n/a' : Math.round(k.achievedRate).toLocaleString('en-US')} clicks/s; processed ${k.processedShare === null ? 'n/a' : `${(k.processedShare * 100).toFixed(1)} %`} of them (adagg_events_processed_total); ${run.outcome.sender.failed.toLocaleString('en-US')} clicks in failed requests, ${run.outcome.sender.dropped.toLocaleString('en-US')} dropped by the sender`,
  });
  const warm = run.samples.filter((s) => s.t > WARMUP_S);
  const over = warm.filter((s) => {
    const d = wmDelay(s);
    return d === null || d > limitS;
  });
  out.push({
    short: 'watermark',
    target: `1. watermark delay ≤ ${limitS} s (lateness + 5 s) at every sample after ${WARMUP_S} s`,
    pass: !broken && warm.length > 0 && over.length === 0,
    detail: `${over.length} of ${warm.length} samples over (or unknown); max ${k.wmDelayMax === null ? 'n/a' : `${k.wmDelayMax.toFixed(1)} s`}${broken ? `; ${broken}` : ''}`,
  });
  const grows = k.trackedGrowthPct !== null && k.trackedGrowthPct > 0;
  const flat = (name: string, g: number | null, short: string): TargetResult => ({
    short: `flat ${short}`,
    target: `2. flat in the 2nd half: ${name} (< ${FLAT_LIMIT_PCT} % per 5 min)`,
    pass: !broken && keptUp && grows && g !== null && g < FLAT_LIMIT_PCT,
    detail: `${pct(g)} per 5 min; tracked ids ${pct(k.trackedGrowthPct)} per 5 min${grows ? '' : ' (not growing: inconclusive)'}${behind}${broken ? `; ${broken}` : ''}`,
  });
  out.push(flat('bytes per commit (Redis)', k.bytesPerCommitRedisGrowthPct, 'B/commit'));
  if (k.bytesPerCommitMetric !== null) out.push(flat('bytes per commit (adagg_commit_bytes)', k.bytesPerCommitMetricGrowthPct, 'B/commit (metric)'));
  out.push(flat('commit time (mean)', k.commitMeanGrowthPct, 'commit time'));
  out.push(flat('Redis write bytes/s', k.redisWriteGrowthPct, 'Redis B/s'));
  out.push({
    short: `writes ≤ ${WRITE_RATIO_LIMIT}× clicks`,
    target: `3. Redis write bytes ≤ ${WRITE_RATIO_LIMIT} × the clicks' own bytes (2nd half)`,
    pass: !broken && keptUp && k.writeOverClicks !== null && k.writeOverClicks <= WRITE_RATIO_LIMIT,
    detail: `${k.writeOverClicks === null ? 'n/a' : `${k.writeOverClicks.toFixed(2)} ×`}${behind}${broken ? `; ${broken}` : ''}`,
  });
  return out;
}
