/**
 * Scenario 1 (pipeline) and 7 (memory): sustained exactly-once throughput of the adagg service
 * running as a child process, measured from the first publish until every shard's committed
 * sequence in Redis reaches the last stream sequence of its subject; then exactness against the
 * truth once the minutes are closed. RSS of the service is sampled throughout.
 */
import { copyFile, mkdir, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { topology } from '../../src/runtime/topology.ts';
import { freshPrefix, spreadSpec, type Ctx } from '../lib/context.ts';
import { summariseProfiles, type ProfileSummary } from '../lib/cpuprofile.ts';
import { CpuMeter } from '../lib/cpu.ts';
import { drive, type Sample } from '../lib/drive.ts';
import { AckTracker, TrackingProducer } from '../lib/publisher.ts';
import { checkExactness, minuteRange, readMetas, type Exactness } from '../lib/redis-state.ts';
import { deleteStream } from '../lib/servers.ts';
import { actorFailures, committedProbe, metric, rssOf, serviceStatus, stallGuard, startBenchService } from '../lib/service.ts';
import { int, max, median, mib, ms, rate, sleep, until } from '../lib/stats.ts';
import { Workload } from '../lib/workload.ts';

export interface PipelineRun {
  prefix: string;
  events: number;
  distinct: number;
  duplicates: number;
  late: number;
  adsTouched: number;
  messages: number;
  messagesPerShard: number[];
  eventsPerSec: number;
  publishPerSec: number;
  durationMs: number;
  /** From the last publish ack until everything committed. */
  drainMs: number;
  closeWaitMs: number;
  exact: Exactness;
  rss: { baseline: number; steady: number; peak: number; end: number };
  trackedIds: number;
  rssPerMillionIds: number;
  /** Cores used during the run; `others` = every other process on the machine (noise). */
  cores: { service: number; bench: number; nats: number; redis: number; others: number };
  snapshotBytes: number;
  commits: number;
  commitMeanMs: number;
  /** Shard actor failures the service logged during the run (a healthy run has none). */
  failures: { restarts: number; fatal: number; first: string | null };
  spanMinutes: number;
  samples: Sample[];
  profile?: ProfileSummary | null;
}

export async function pipelineRun(ctx: Ctx, index: number, events: number): Promise<PipelineRun> {
  const { cfg, servers } = ctx;
  const prefix = freshPrefix('p');
  const profDir = cfg.cpuProf && index === 0 ? await mkdtemp(path.join(os.tmpdir(), 'adagg-bench-prof-')) : undefined;
  ctx.progress.set({ phase: `pipeline run ${index + 1}/${cfg.pipelineRuns}: starting service`, sent: 0, done: 0 });
  const svc = await startBenchService(ctx, prefix, {}, profDir ? { cpuProfDir: profDir } : {});
  try {
    await sleep(500);
    const baseline = rssOf(svc.pid);
    const w = new Workload(spreadSpec(cfg, events, cfg.seed + index, `k${index}${prefix.slice(-4)}`));
    const tracker = new AckTracker(cfg.shards);
    const producer = new TrackingProducer(servers.nc, topology(prefix), cfg.shards, cfg.maxBatch, tracker);
    const meter = new CpuMeter({ service: svc.pid, nats: servers.nats.pid, redis: servers.redis.pid });
    const r = await drive(ctx, `pipeline run ${index + 1}/${cfg.pipelineRuns}`, w, producer, committedProbe(servers.rd, prefix, cfg.shards, tracker, svc.pid), 12 * 60_000, stallGuard(svc));
    const cpu = meter.read();
    const cores = {
      service: cpu.cores.service!,
      bench: cpu.cores.bench!,
      nats: cpu.cores.nats!,
      redis: cpu.cores.redis!,
      others: cpu.others,
    };
    const end = rssOf(svc.pid);
    const status = await serviceStatus(svc.url);
    const trackedIds = status.reduce((a, s) => a + (s.tracked_ids ?? 0), 0);
    const snapBytes = await metric(svc.url, 'adagg_snapshot_bytes');
    const commitSum = await metric(svc.url, 'adagg_snapshot_seconds_sum');
    const commitCount = await metric(svc.url, 'adagg_snapshot_seconds_count');
    const commits = [...commitCount.values()].reduce((a, b) => a + b, 0);
    const commitMeanMs = (1000 * [...commitSum.values()].reduce((a, b) => a + b, 0)) / Math.max(1, commits);

    // Exactness: every minute of the run must be closed (final) on every shard first.
    const [, lastMinute] = minuteRange(w);
    ctx.progress.set({ phase: `pipeline run ${index + 1}: waiting for minutes to close`, note: undefined });
    const tc = Date.now();
    await until(
      'all minutes closed',
      async () => (await readMetas(servers.rd, prefix, cfg.shards)).every((m) => m.closedThrough >= lastMinute),
      150_000,
      100,
    );
    const closeWaitMs = Date.now() - tc;
    const exact = await checkExactness(servers.rd, prefix, cfg.shards, w);
    const rssSamples = r.samples.map((s) => s.rss ?? NaN).filter(Number.isFinite);
    const mid = rssSamples.slice(Math.floor(rssSamples.length / 4), Math.ceil((rssSamples.length * 3) / 4));
    const run: PipelineRun = {
      prefix,
      events: w.sent,
      distinct: w.distinct,
      duplicates: w.duplicates,
      late: w.late,
      adsTouched: w.adsTouched,
      messages: tracker.ackedMessages,
      messagesPerShard: [...Array(cfg.shards).keys()].map((s) => tracker.messagesOf(s)),
      eventsPerSec: r.eventsPerSec,
      publishPerSec: r.publishPerSec,
      durationMs: r.tDone - r.t0,
      drainMs: r.tDone - r.tPublished,
      closeWaitMs,
      exact,
      rss: { baseline, steady: median(mid.length ? mid : rssSamples), peak: max(rssSamples), end },
      trackedIds,
      rssPerMillionIds: trackedIds > 0 ? ((end - baseline) / trackedIds) * 1e6 : NaN,
      cores,
      snapshotBytes: [...snapBytes.values()].reduce((a, b) => a + b, 0),
      commits,
      commitMeanMs,
      failures: actorFailures(svc),
      spanMinutes: cfg.spanMinutes,
      samples: r.samples,
    };
    ctx.progress.log(
      `pipeline run ${index + 1}: ${rate(run.eventsPerSec)} events/s (${int(run.events)} events in ${ms(run.durationMs)}, ` +
        `drain ${ms(run.drainMs)}), exact=${exact.exact}, RSS steady ${mib(run.rss.steady)} peak ${mib(run.rss.peak)}, ` +
        `cores service ${cores.service.toFixed(2)} bench ${cores.bench.toFixed(2)} nats ${cores.nats.toFixed(2)} redis ${cores.redis.toFixed(2)} others ${cores.others.toFixed(2)}`,
    );
    if (!exact.exact) ctx.progress.log(`  NOT EXACT: ${JSON.stringify(exact)}`);
    await svc.stop();
    if (profDir) {
      run.profile = await summariseProfiles(profDir, 25);
      if (run.profile) {
        // Keep the raw profile beside the results (*.cpuprofile is git-ignored).
        await mkdir(cfg.outDir, { recursive: true });
        const kept = path.join(cfg.outDir, 'pipeline-service.cpuprofile');
        await copyFile(run.profile.file, kept);
        run.profile.file = kept;
      }
      await rm(profDir, { recursive: true, force: true });
    }
    return run;
  } finally {
    await svc.kill();
    await deleteStream(servers.nc, topology(prefix).clicksStream);
    await deleteStream(servers.nc, topology(prefix).deadLetterStream);
    await servers.rd.flushall();
  }
}

export async function runPipeline(ctx: Ctx): Promise<PipelineRun[]> {
  const runs: PipelineRun[] = [];
  for (let i = 0; i < ctx.cfg.pipelineRuns; i++) runs.push(await pipelineRun(ctx, i, ctx.cfg.pipelineEvents));
  return runs;
}
