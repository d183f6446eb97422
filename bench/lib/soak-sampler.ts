/**
 * The soak scenario's readings: the service's /metrics and /v1/status, the bench Redis' INFO
 * (network input, used memory), the service's RSS and CPU from /proc, the load average. Every
 * read has a time bound; a read that fails leaves its figures null in the sample. A sample is
 * the difference of two readings (and of two copies of the sender's counters).
 */
import os from 'node:os';
import type { Redis } from 'ioredis';
import { getText, PromText, quantileBetween, within, type PromHistogram } from './prom.ts';
import { CpuMeter } from './cpu.ts';
import { rssOf } from './service.ts';
import type { SenderStats } from './soak-sender.ts';

export interface Reading {
  /** When the reads were issued: the sender's counters are copied then. */
  at: number;
  prom: PromText | null;
  /** When /metrics answered (late when the service is busy; its rates use this clock). */
  promAt: number;
  /** Per-shard tracked ids and watermark delay from /v1/status (null if unavailable). */
  status: Array<{ trackedIds: number | null; watermarkDelayMs: number | null }> | null;
  /** Shards whose trackedIds did not answer in time and were carried from an earlier reading (see fillTracked). */
  trackedCarried: number;
  redisNetIn: number | null;
  /** When INFO stats answered. */
  redisAt: number;
  redisUsedMemory: number | null;
  rss: number;
  /** CPU from this reading to the next. */
  cpu: CpuMeter;
  sender: SenderStats;
  errors: string[];
}

export interface SoakSample {
  /** Seconds since the first click was sent (end of the interval). */
  t: number;
  intervalS: number;
  /** Accepted clicks/s, from the sender's own count. */
  ingestRate: number;
  /** Clicks/s the shard actors processed: Δ adagg_events_processed_total (behind ingest when the service cannot keep up). */
  processedRate: number | null;
  /** Clicks/s put into requests (accepted or not). */
  postedRate: number;
  /** Cumulative: clicks failed (request error) and dropped (sender behind beyond its bound). */
  failed: number;
  dropped: number;
  /** Largest sender backlog in the interval, seconds of clicks. */
  backlogS: number;
  requestMeanMs: number | null;
  /** NDJSON bytes/s of accepted requests. */
  clickBytesPerSec: number;
  trackedIds: number | null;
  trackedSource: 'metric' | 'status' | null;
  /** Shards that reported tracked ids fresh in this sample. */
  trackedShards: number | null;
  /**
   * Shards whose count is their last answer from an earlier sample (/v1/status leaves out a shard
   * that does not answer in time; a busy old service often does not): the sum is then a little low.
   */
  trackedCarried: number;
  /** Σ adagg_dedup_bytes{shard}: memory of the dedupe tables (newer services only). */
  dedupBytes: number | null;
  commits: number | null;
  commitsPerSec: number | null;
  /** Δ adagg_commit_bytes _sum/_count (newer services only). */
  bytesPerCommitMetric: number | null;
  /** Redis write bytes/s ÷ commits/s (each over its own clock: the reads answer at different times). */
  bytesPerCommitRedis: number | null;
  redisWriteBytesPerSec: number | null;
  redisWriteOverClickBytes: number | null;
  commitMeanMs: number | null;
  commitP99Ms: number | null;
  /** True when p99 fell in the +Inf bucket: commitP99Ms is then the largest finite bound (a lower bound). */
  commitP99Capped: boolean;
  redisUsedMemory: number | null;
  rss: number | null;
  serviceCores: number | null;
  /** CPU cores used in the interval by the bench, nats-server, redis-server, and every other process on the machine (noise). */
  cores: { bench: number; nats: number; redis: number; others: number } | null;
  lag: number | null;
  /** Max over shards of adagg_watermark_delay_seconds. */
  watermarkDelayS: number | null;
  /** Max over shards of /v1/status watermark_delay_ms (computed at the request, so a stalled shard shows). */
  statusWatermarkDelayS: number | null;
  actorRestarts: number;
  load1: number;
  serviceUp: boolean;
  errors: string[];
}

const READ_TIMEOUT_MS = 5000;

function statusOf(body: unknown): Reading['status'] {
  const shards = (body as { shards?: unknown }).shards;
  if (!Array.isArray(shards)) return null;
  const num = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) ? v : null);
  return shards.map((s: Record<string, unknown>) => ({
    trackedIds: num(s.tracked_ids ?? s.trackedIds),
    watermarkDelayMs: num(s.watermark_delay_ms ?? s.watermarkDelayMs),
  }));
}

export interface Pids {
  service: number;
  nats: number;
  redis: number;
}

export async function read(url: string, pids: Pids, rd: Redis, sender: SenderStats): Promise<Reading> {
  const errors: string[] = [];
  const at = Date.now();
  const senderCopy = { ...sender };
  const stamp = async <T>(p: Promise<T>): Promise<[T, number]> => [await p, Date.now()];
  const [[metrics, promAt], status, [stats, redisAt], memory] = await Promise.all([
    stamp(getText(`${url}/metrics`, READ_TIMEOUT_MS)),
    getText(`${url}/v1/status`, READ_TIMEOUT_MS),
    stamp(within(rd.info('stats'), READ_TIMEOUT_MS, 'redis INFO stats')),
    within(rd.info('memory'), READ_TIMEOUT_MS, 'redis INFO memory'),
  ]);
  const field = (info: string | Error, name: string): number | null => {
    if (info instanceof Error) return null;
    const m = new RegExp(`^${name}:(\\d+)`, 'm').exec(info);
    return m ? Number(m[1]) : null;
  };
  let st: Reading['status'] = null;
  if (status instanceof Error) errors.push(`/v1/status: ${status.message}`);
  else {
    try {
      st = statusOf(JSON.parse(status));
    } catch {
      errors.push('/v1/status: not JSON');
    }
  }
  if (metrics instanceof Error) errors.push(`/metrics: ${metrics.message}`);
  for (const x of [stats, memory]) if (x instanceof Error) errors.push(x.message);
  return {
    at,
    prom: metrics instanceof Error ? null : new PromText(metrics),
    promAt,
    status: st,
    trackedCarried: 0,
    redisNetIn: field(stats, 'total_net_input_bytes'),
    redisAt,
    redisUsedMemory: field(memory, 'used_memory'),
    rss: rssOf(pids.service),
    cpu: new CpuMeter({ ...pids }),
    sender: senderCopy,
    errors,
  };
}

/** `cur` with each shard's missing /v1/status tracked ids taken from `prev` (already filled the same way). */
export function fillTracked(prev: Reading, cur: Reading): Reading {
  if (!cur.status) return cur;
  let carried = 0;
  const status = cur.status.map((s, i) => {
    if (s.trackedIds !== null) return s;
    const last = prev.status?.[i]?.trackedIds ?? null;
    if (last !== null) carried++;
    return { ...s, trackedIds: last };
  });
  return { ...cur, status, trackedCarried: carried };
}

/**
 * The reading to compare the next one with: `cur`, but where a read failed, the last one that
 * worked (so the next interval spans the gap, on that read's own clock).
 */
export function carry(prev: Reading, cur: Reading): Reading {
  return {
    ...cur,
    prom: cur.prom ?? prev.prom,
    status: cur.status ?? prev.status,
    promAt: cur.prom ? cur.promAt : prev.promAt,
    redisNetIn: cur.redisNetIn ?? prev.redisNetIn,
    redisAt: cur.redisNetIn !== null ? cur.redisAt : prev.redisAt,
  };
}

const delta = (a: number | null | undefined, b: number | null | undefined): number | null =>
  a === null || a === undefined || b === null || b === undefined || b < a ? null : b - a;
const fin = (x: number): number | null => (Number.isFinite(x) ? x : null);

/** The figures of the interval between two readings. */
export function sampleOf(prev: Reading, cur: Reading, t0: number, maxOwed: number, rate: number, actorRestarts: number, serviceUp: boolean): SoakSample {
  const dt = (cur.at - prev.at) / 1000;
  const promDt = (cur.promAt - prev.promAt) / 1000;
  const redisDt = (cur.redisAt - prev.redisAt) / 1000;
  const s0 = prev.sender;
  const s1 = cur.sender;
  const p = cur.prom;
  const hist = (name: string): [PromHistogram, PromHistogram] | null => {
    const a = prev.prom?.histogram(name);
    const b = p?.histogram(name);
    return a && b ? [a, b] : null;
  };
  const snap = hist('adagg_snapshot_seconds');
  const commits = snap ? delta(snap[0].count, snap[1].count) : null;
  const commitSum = snap ? delta(snap[0].sum, snap[1].sum) : null;
  const p99 = snap ? quantileBetween(snap[0], snap[1], 0.99) : null;
  const cb = hist('adagg_commit_bytes');
  const cbCount = cb ? delta(cb[0].count, cb[1].count) : null;
  const cbSum = cb ? delta(cb[0].sum, cb[1].sum) : null;
  // A labelled counter appears with its first event: absent from a reading that worked means 0.
  const processed = delta(prev.prom && (prev.prom.sum('adagg_events_processed_total') ?? 0), p && (p.sum('adagg_events_processed_total') ?? 0));
  const commitsPerSec = commits !== null && promDt > 0 ? commits / promDt : null;
  const netIn = delta(prev.redisNetIn, cur.redisNetIn);
  const redisBps = netIn !== null && redisDt > 0 ? netIn / redisDt : null;
  const clickBps = (s1.bytesAccepted - s0.bytesAccepted) / dt;
  const trackedMetric = p?.sum('adagg_tracked_ids') ?? null;
  const trackedShards =
    trackedMetric !== null ? (p?.get('adagg_tracked_ids').length ?? 0) : cur.status ? cur.status.filter((s) => s.trackedIds !== null).length - cur.trackedCarried : null;
  const trackedStatus = cur.status?.length && cur.status.every((s) => s.trackedIds !== null) ? cur.status.reduce((a, s) => a + s.trackedIds!, 0) : null;
  const statusDelays = (cur.status ?? []).flatMap((s) => (s.watermarkDelayMs === null ? [] : [s.watermarkDelayMs / 1000]));
  const reqN = s1.requestMsCount - s0.requestMsCount;
  const cpu = prev.cpu.read();
  return {
    t: (cur.at - t0) / 1000,
    intervalS: dt,
    ingestRate: (s1.accepted - s0.accepted) / dt,
    processedRate: processed !== null && promDt > 0 ? processed / promDt : null,
    postedRate: (s1.posted - s0.posted) / dt,
    failed: s1.failed,
    dropped: s1.dropped,
    backlogS: maxOwed / rate,
    requestMeanMs: reqN > 0 ? (s1.requestMsSum - s0.requestMsSum) / reqN : null,
    clickBytesPerSec: clickBps,
    trackedIds: trackedMetric ?? trackedStatus,
    trackedSource: trackedMetric !== null ? 'metric' : trackedStatus !== null ? 'status' : null,
    trackedShards,
    trackedCarried: trackedMetric !== null ? 0 : cur.trackedCarried,
    dedupBytes: p?.sum('adagg_dedup_bytes') ?? null,
    commits,
    commitsPerSec,
    bytesPerCommitMetric: cbSum !== null && cbCount ? cbSum / cbCount : null,
    bytesPerCommitRedis: redisBps !== null && commitsPerSec ? redisBps / commitsPerSec : null,
    redisWriteBytesPerSec: redisBps,
    redisWriteOverClickBytes: redisBps !== null && clickBps > 0 ? redisBps / clickBps : null,
    commitMeanMs: commitSum !== null && commits ? (1000 * commitSum) / commits : null,
    commitP99Ms: p99 ? 1000 * p99.value : null,
    commitP99Capped: p99?.capped ?? false,
    redisUsedMemory: cur.redisUsedMemory,
    rss: fin(cur.rss),
    serviceCores: fin(cpu.cores.service ?? NaN),
    cores: Number.isFinite(cpu.others) ? { bench: cpu.cores.bench!, nats: cpu.cores.nats!, redis: cpu.cores.redis!, others: cpu.others } : null,
    lag: p?.sum('adagg_consumer_lag_messages') ?? null,
    watermarkDelayS: p?.max('adagg_watermark_delay_seconds') ?? null,
    statusWatermarkDelayS: statusDelays.length ? Math.max(...statusDelays) : null,
    actorRestarts,
    load1: os.loadavg()[0] ?? NaN,
    serviceUp,
    errors: cur.errors,
  };
}
