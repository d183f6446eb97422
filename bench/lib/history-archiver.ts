/**
 * Scenario `history`, part 1: the raw archiver next to the pipeline. The pipeline workload runs
 * through a fresh service with ADAGG_ARCHIVE=off, then through another with it on (a temp
 * ADAGG_ARCHIVE_DIR, a short ADAGG_ARCHIVE_FLUSH_MS so files are written during the run); after
 * the "on" run the bench waits until every archiver's progress (`<p>:{a-s<n>}:archive` seq) covers
 * its subject, then counts the archive's rows with DuckDB: rows must equal the events published
 * (each accepted click copy exactly once; duplicates a client sent twice stay raw data). Then one
 * archiver alone, in this process, over the same stream (what bench/archiver-throughput.ts does).
 */
import { mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { sqlString, duckConnection } from '../../src/runtime/archive/duckdb.ts';
import { Archiver } from '../../src/runtime/archive/archiver.ts';
import { rawDir } from '../../src/runtime/archive/layout.ts';
import { systemClock } from '../../src/runtime/clock.ts';
import { RuntimeEvents } from '../../src/runtime/events.ts';
import { silentLogger } from '../../src/runtime/logger.ts';
import { RedisKeys } from '../../src/runtime/redis-keys.ts';
import { topology } from '../../src/runtime/topology.ts';
import { freshPrefix, spreadSpec, type Ctx } from './context.ts';
import { CpuMeter } from './cpu.ts';
import { drive } from './drive.ts';
import { AckTracker, TrackingProducer } from './publisher.ts';
import { readMetas } from './redis-state.ts';
import { actorFailures, clearRun, committedProbe, rssOf, stallGuard, startBenchService } from './service.ts';
import { int, median, mib, ms, rate, sleep } from './stats.ts';
import { Workload } from './workload.ts';

/** ADAGG_ARCHIVE_FLUSH_MS of the "on" run: short, so files are written while the load runs. */
export const HISTORY_FLUSH_MS = 10_000;

export interface ArchiveCount {
  rows: number;
  /** Distinct (subject, seq, pos): must equal rows. */
  distinctKeys: number;
  /** Rows of shard subjects / of hot child subjects. */
  shardRows: number;
  hotRows: number;
  files: number;
  bytes: number;
  /** `*.tmp-*` files left outside the staging folder (must be 0). */
  tmpFiles: number;
}

export interface ArchiverServiceRun {
  archive: boolean;
  events: number;
  distinct: number;
  eventsPerSec: number;
  publishPerSec: number;
  durationMs: number;
  rssSteady: number;
  cores: { service: number; bench: number; nats: number; redis: number; others: number };
  failures: number;
  /** "on" run: first publish → every archiver's progress covers its subject. */
  archivedMs?: number;
  archiverClicksPerSec?: number;
  count?: ArchiveCount;
  /** rows = events published and no (subject, seq, pos) twice. */
  exactlyOnce?: boolean;
  /** One archiver alone in this process over the same stream (after the run). */
  alone?: ArchiverAlone;
}

export interface ArchiverAlone {
  clicks: number;
  files: number;
  ms: number;
  clicksPerSec: number;
  fileClicks: number;
}

/** Every file under `dir` (recursive) with its size. */
async function filesUnder(dir: string): Promise<Array<{ file: string; bytes: number }>> {
  const out: Array<{ file: string; bytes: number }> = [];
  const entries = await readdir(dir, { recursive: true, withFileTypes: true }).catch(() => []);
  for (const e of entries) {
    if (!e.isFile()) continue;
    const file = path.join(e.parentPath, e.name);
    out.push({ file, bytes: (await stat(file)).size });
  }
  return out;
}

/** Rows, keys and bytes of the raw archive under `root` (DuckDB over every final file). */
export async function countArchive(root: string): Promise<ArchiveCount> {
  const all = await filesUnder(rawDir(root));
  const files = all.filter((f) => f.file.endsWith('.parquet'));
  const tmpFiles = all.filter((f) => /\.tmp-/.test(f.file)).length;
  const bytes = files.reduce((a, f) => a + f.bytes, 0);
  if (files.length === 0) return { rows: 0, distinctKeys: 0, shardRows: 0, hotRows: 0, files: 0, bytes: 0, tmpFiles };
  const conn = await duckConnection();
  try {
    const r = await conn.runAndReadAll(`
      SELECT count(*) AS rows, count(DISTINCT (subject, seq, pos)) AS keys,
             count(*) FILTER (WHERE subject LIKE '%.clicks.%') AS shard_rows,
             count(*) FILTER (WHERE subject LIKE '%.hot.%') AS hot_rows
      FROM read_parquet(${sqlString(path.join(rawDir(root), '**', '*.parquet'))}, hive_partitioning = false)`);
    const o = r.getRowObjects()[0]!;
    return { rows: Number(o.rows), distinctKeys: Number(o.keys), shardRows: Number(o.shard_rows), hotRows: Number(o.hot_rows), files: files.length, bytes, tmpFiles };
  } finally {
    conn.closeSync();
  }
}

/** One service run of the pipeline workload with the archive off or on. */
export async function archiverServiceRun(ctx: Ctx, events: number, archive: boolean, phase: string, alone = false): Promise<ArchiverServiceRun> {
  const { cfg, servers } = ctx;
  const prefix = freshPrefix(archive ? 'hon' : 'hoff');
  const topo = topology(prefix);
  const keys = new RedisKeys(prefix);
  const dir = await mkdtemp(path.join(os.tmpdir(), 'adagg-bench-archive-'));
  ctx.progress.set({ phase: `${phase}: starting service`, sent: 0, done: 0 });
  const env: Record<string, string> = archive
    ? { ADAGG_ARCHIVE: 'on', ADAGG_ARCHIVE_DIR: dir, ADAGG_ARCHIVE_FLUSH_MS: String(HISTORY_FLUSH_MS) }
    : { ADAGG_ARCHIVE: 'off', ADAGG_ARCHIVE_DIR: dir };
  const svc = await startBenchService(ctx, prefix, env);
  try {
    await sleep(500);
    // Same seed and tag in both runs: the same clicks.
    const w = new Workload(spreadSpec(cfg, events, cfg.seed + 21, 'hist'));
    const tracker = new AckTracker(cfg.shards);
    const producer = new TrackingProducer(servers.nc, topo, cfg.shards, cfg.maxBatch, tracker);
    const meter = new CpuMeter({ service: svc.pid, nats: servers.nats.pid, redis: servers.redis.pid });
    const r = await drive(ctx, phase, w, producer, committedProbe(servers.rd, prefix, cfg.shards, tracker, svc.pid), 12 * 60_000, stallGuard(svc));
    const cpu = meter.read();
    const rssSamples = r.samples.map((s) => s.rss ?? NaN).filter(Number.isFinite);
    const run: ArchiverServiceRun = {
      archive,
      events: w.sent,
      distinct: w.distinct,
      eventsPerSec: r.eventsPerSec,
      publishPerSec: r.publishPerSec,
      durationMs: r.tDone - r.t0,
      rssSteady: median(rssSamples.slice(Math.floor(rssSamples.length / 4), Math.ceil((rssSamples.length * 3) / 4))),
      cores: { service: cpu.cores.service!, bench: cpu.cores.bench!, nats: cpu.cores.nats!, redis: cpu.cores.redis!, others: cpu.others },
      failures: 0,
    };
    if (archive) {
      ctx.progress.set({ phase: `${phase}: waiting for the archivers to cover the stream`, note: undefined });
      const deadline = Date.now() + 5 * HISTORY_FLUSH_MS + 120_000;
      for (;;) {
        const p = servers.rd.pipeline();
        for (let s = 0; s < cfg.shards; s++) p.hget(keys.archive(`a-s${s}`), 'seq');
        const seqs = ((await p.exec()) ?? []).map(([, v]) => Number((v as string | null) ?? 0));
        const covered = seqs.filter((q, s) => q >= tracker.lastSeq[s]!).length;
        ctx.progress.set({ note: `${covered}/${cfg.shards} archivers caught up` });
        if (covered === cfg.shards) break;
        if (Date.now() > deadline) throw new Error(`${phase}: archivers not caught up: ${seqs.map((q, s) => `s${s} ${q}/${tracker.lastSeq[s]}`).join(', ')}`);
        await sleep(100);
      }
      run.archivedMs = Date.now() - r.t0;
      run.archiverClicksPerSec = (w.sent * 1000) / run.archivedMs;
      ctx.progress.set({ phase: `${phase}: counting the archive with DuckDB`, note: undefined });
      run.count = await countArchive(dir);
      run.exactlyOnce = run.count.rows === w.sent && run.count.distinctKeys === run.count.rows && run.count.tmpFiles === 0;
      ctx.progress.log(
        `${phase}: archive caught up ${ms(run.archivedMs)} after the first publish (${rate(run.archiverClicksPerSec)} clicks/s); ` +
          `rows ${int(run.count.rows)} (shard subjects ${int(run.count.shardRows)}, hot ${int(run.count.hotRows)}) vs published ${int(w.sent)}, ` +
          `distinct keys ${int(run.count.distinctKeys)}, ${run.count.files} files, ${(run.count.bytes / Math.max(1, run.count.rows)).toFixed(1)} B/click, exactly once: ${run.exactlyOnce}`,
      );
      if (alone) run.alone = await archiverAloneRun(ctx, topo.clicksStream, topo.clickSubjects, w.sent);
    }
    run.failures = actorFailures(svc).restarts + actorFailures(svc).fatal;
    ctx.progress.log(
      `${phase}: ${rate(run.eventsPerSec)} events/s (${int(run.events)} events in ${ms(run.durationMs)}), RSS steady ${mib(run.rssSteady)}, ` +
        `cores service ${run.cores.service.toFixed(2)} others ${run.cores.others.toFixed(2)}, actor failures ${run.failures}`,
    );
    await svc.stop();
    return run;
  } finally {
    await svc.kill();
    await clearRun(servers, topo);
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * One archiver alone, in this process, over every click subject of a stream already written:
 * ordered consumer, decode, DuckDB append, flush by size (zstd Parquet + fsync), fenced Redis step,
 * renames. Stopped right after its last size-triggered flush (the stop flushes what it has read, as
 * bench/archiver-throughput.ts): clicks archived / time.
 */
export async function archiverAloneRun(ctx: Ctx, stream: string, filter: string, total: number): Promise<ArchiverAlone> {
  const { servers } = ctx;
  const fileClicks = Math.min(1_000_000, Math.max(1, Math.floor(total / 2)));
  // After its last size-triggered flush, fewer than fileClicks rows are left: stop there (the stop flushes what it read).
  const target = total - fileClicks + 1;
  const keys = new RedisKeys(freshPrefix('ha'));
  const root = await mkdtemp(path.join(os.tmpdir(), 'adagg-bench-archive-alone-'));
  ctx.progress.set({ phase: `archiver alone (in-process, one archiver over ${int(total)} clicks, files of ${int(fileClicks)})`, sent: total, done: 0, note: undefined });
  const a = new Archiver({ unit: 's0', stream, filter }, { nc: servers.nc, redis: servers.rd, keys, clock: systemClock, log: silentLogger, events: new RuntimeEvents(), root, flushMs: 600_000, fileClicks });
  const ac = new AbortController();
  const t0 = performance.now();
  const running = a.run(ac.signal);
  let failed: unknown;
  running.catch((err: unknown) => void (failed = err));
  try {
    const deadline = Date.now() + 10 * 60_000;
    for (;;) {
      if (failed) throw failed;
      const done = Number((await servers.rd.hget(keys.archive('a-s0'), 'clicks')) ?? 0);
      ctx.progress.set({ done });
      if (done >= target) break;
      if (Date.now() > deadline) throw new Error(`archiver alone: ${done} of ${target} clicks after 10 min`);
      await sleep(20);
    }
    ac.abort();
    await running;
    const t1 = performance.now();
    const h = await servers.rd.hgetall(keys.archive('a-s0'));
    const out: ArchiverAlone = { clicks: Number(h.clicks), files: Number(h.files), ms: t1 - t0, clicksPerSec: (Number(h.clicks) * 1000) / (t1 - t0), fileClicks };
    ctx.progress.log(`archiver alone: ${int(out.clicks)} clicks, ${out.files} files in ${ms(out.ms)} = ${rate(out.clicksPerSec)} clicks/s`);
    return out;
  } finally {
    ac.abort();
    await running.catch(() => undefined);
    await rm(root, { recursive: true, force: true });
  }
}
