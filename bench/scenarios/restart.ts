/**
 * Scenario `restart` (`npm run bench -- restart --ids 40000000`): how long a shard set holding a
 * large state takes to come back. The service consumes N events whose event time lies inside the
 * correction horizon, so it ends up tracking ~N click ids (dedupe state) plus the open and closed
 * minutes; then it is SIGKILLed, a backlog (--backlog, default 100,000 events: 10 s of the specified
 * 10k/s average load) is published while it is down, and it is restarted.
 * Measured: spawn → ready, spawn → every shard restored (its state read back from the head, the
 * count hashes and the dedupe blocks), → every shard caught up (committed sequence = stream end);
 * then exactness of every ad's count against the load generator's truth.
 */
import path from 'node:path';
import { compileOptions } from '../../src/options.ts';
import { ensureStreams } from '../../src/runtime/streams.ts';
import { topology } from '../../src/runtime/topology.ts';
import { freshPrefix, spreadSpec, type Ctx } from '../lib/context.ts';
import { AckTracker, publishAll, TrackingProducer } from '../lib/publisher.ts';
import { checkExactness, minuteRange, readMetas, type Exactness } from '../lib/redis-state.ts';
import { deleteStream } from '../lib/servers.ts';
import { metric, rssOf, stallGuard, startService, type Service } from '../lib/service.ts';
import { int, mib, ms, rate, sleep, until } from '../lib/stats.ts';
import { Workload } from '../lib/workload.ts';

/** One SIGKILL → backlog → restart → caught-up cycle. */
export interface RestartRun {
  /** Tracked ids and state size at this kill. */
  trackedIds: number;
  rssBeforeKill: number;
  redisUsedMemory: number;
  /** Bytes of the state parts Redis holds for the shards (heads + dedupe blocks), at the kill. */
  stateBytes: number;
  backlog: number;
  spawnToReadyMs: number;
  spawnToRestoredMs: number;
  bootMs: number;
  restoreMs: number;
  restoreMaxShardMs: number;
  /** Slowest shard's time reading its parts from Redis, and rebuilding its dedupe table (service log). */
  readMaxMs: number;
  dedupMaxMs: number;
  replayEvents: number;
  replayMs: number;
  replayPerSec: number;
  /** Spawn → every shard's committed sequence at the stream end. */
  totalMs: number;
}

export interface RestartResult {
  shards: number;
  events: number;
  buildPerSec: number;
  runs: RestartRun[];
  /** The run with the median `totalMs`. */
  median: RestartRun;
  exact: Exactness;
}

/** Per shard: first 'lifecycle transition' to running and 'shard actor restored' (the service's info log). */
function restoreTimes(
  svc: Service,
  shards: number,
): { firstStart: number; lastRestored: number; maxPerShard: number; readMaxMs: number; dedupMaxMs: number } | null {
  const start = new Map<number, number>();
  const done = new Map<number, number>();
  let readMaxMs = 0;
  let dedupMaxMs = 0;
  for (const l of svc.logs) {
    if (l.msg === 'lifecycle transition' && l.to === 'running' && typeof l.actor === 'string' && l.actor.startsWith('shard-')) {
      const s = Number(l.actor.slice(6));
      if (!start.has(s)) start.set(s, l.time);
    }
    if (l.msg === 'shard actor restored' && typeof l.shard === 'number' && !done.has(l.shard)) {
      done.set(l.shard, l.time);
      if (typeof l.readMs === 'number') readMaxMs = Math.max(readMaxMs, l.readMs);
      if (typeof l.dedupMs === 'number') dedupMaxMs = Math.max(dedupMaxMs, l.dedupMs);
    }
  }
  if (done.size < shards) return null;
  let maxPerShard = 0;
  for (const [s, t] of done) maxPerShard = Math.max(maxPerShard, t - (start.get(s) ?? t));
  return { firstStart: Math.min(...start.values()), lastRestored: Math.max(...done.values()), maxPerShard, readMaxMs, dedupMaxMs };
}

/** Waits while the bench's Redis rewrites its AOF (a fork copying GBs), so a restart is not timed against it. */
async function redisQuiet(rd: Ctx['servers']['rd']): Promise<void> {
  await until('Redis AOF rewrite finished', async () => /aof_rewrite_in_progress:0/.test(await rd.info('persistence')), 600_000, 250);
}

export async function runRestart(ctx: Ctx, ids: number): Promise<RestartResult> {
  const { cfg, servers } = ctx;
  const shards = cfg.restartShards;
  const prefix = freshPrefix('k');
  const topo = topology(prefix);
  await ensureStreams(servers.nc, topo, compileOptions({ prefix, shards }));
  const backlog = cfg.restartBacklog;
  const w = new Workload(
    spreadSpec(cfg, ids + (backlog + 1) * cfg.restartRuns, cfg.seed + 900, `k${prefix.slice(-4)}`, {
      spanMinutes: cfg.restartSpanMinutes,
      shards,
    }),
  );
  const tracker = new AckTracker(shards);
  const producer = new TrackingProducer(servers.nc, topo, shards, cfg.maxBatch, tracker);
  const svcOpts = {
    natsUrl: servers.natsUrl,
    redisUrl: servers.redisUrl,
    prefix,
    shards,
    logLevel: 'info',
    logFile: path.join(servers.logDir, `service-${prefix}.log`),
    env: cfg.serviceEnv,
    readyTimeoutMs: 120_000,
  };
  const committed = async (): Promise<number> => tracker.eventsThrough((await readMetas(servers.rd, prefix, shards)).map((m) => m.seq));
  const caughtUp = async (): Promise<boolean> => (await readMetas(servers.rd, prefix, shards)).every((m, s) => m.seq >= tracker.lastSeq[s]!);
  let svc: Service | undefined;
  try {
    ctx.progress.set({ phase: `restart: building a state of ${int(ids)} events`, sent: 0, done: 0 });
    svc = await startService(svcOpts);
    const s1 = svc;
    const tb = Date.now();
    let lastDoneCheck = 0;
    await publishAll(w, producer, cfg.window, { count: ids, onAck: () => {
      ctx.progress.set({ sent: tracker.ackedEvents });
      if (Date.now() - lastDoneCheck > 1000) {
        lastDoneCheck = Date.now();
        void committed().then((d) => ctx.progress.set({ done: d }));
      }
    } });
    const guard = stallGuard(s1);
    await until('state built (every shard caught up)', async () => {
      const d = await committed();
      ctx.progress.set({ done: d });
      const why = guard(d);
      if (why) throw new Error(`restart (build): ${why}`);
      return caughtUp();
    }, 30 * 60_000, 250);
    const buildPerSec = (tracker.ackedEvents * 1000) / (Date.now() - tb);
    const builtEvents = tracker.ackedEvents;
    ctx.progress.log(`restart: state built from ${int(builtEvents)} events at ${rate(buildPerSec)}/s`);
    const runs: RestartRun[] = [];
    for (let i = 1; i <= cfg.restartRuns; i++) {
      const live = svc;
      // Let a tick pass so the tracked-ids gauge is current.
      await sleep(1500);
      await redisQuiet(servers.rd);
      const trackedIds = [...(await metric(live.url, 'adagg_tracked_ids')).values()].reduce((a, b) => a + b, 0);
      const rssBeforeKill = rssOf(live.pid);
      await live.kill();
      const info = await servers.rd.info('memory');
      const redisUsedMemory = Number(/used_memory:(\d+)/.exec(info)?.[1] ?? NaN);
      let stateBytes = 0;
      for (let s = 0; s < shards; s++) {
        const base = `${prefix}:{s${s}}`;
        stateBytes += await servers.rd.strlen(`${base}:snap`);
        for (const k of await servers.rd.smembers(`${base}:parts`)) stateBytes += await servers.rd.strlen(k);
      }
      ctx.progress.log(
        `restart ${i}/${cfg.restartRuns}: tracked ids ${int(trackedIds)}, service RSS ${mib(rssBeforeKill)}, Redis ${mib(redisUsedMemory)}, ` +
          `state parts ${mib(stateBytes)}; SIGKILL`,
      );

      ctx.progress.set({ phase: `restart ${i}/${cfg.restartRuns}: publishing a ${int(backlog)}-event backlog while the service is down` });
      const before = tracker.ackedEvents;
      await publishAll(w, producer, cfg.window, { count: backlog + 1, onAck: () => ctx.progress.set({ sent: tracker.ackedEvents }) });
      const committedAtKill = await committed();
      await redisQuiet(servers.rd);

      ctx.progress.set({ phase: `restart ${i}/${cfg.restartRuns}: restarting after SIGKILL`, done: committedAtKill });
      svc = await startService(svcOpts);
      const s2 = svc;
      await until('every shard restored', () => restoreTimes(s2, shards) !== null, 120_000, 10);
      const rt = restoreTimes(s2, shards)!;
      const guard2 = stallGuard(s2);
      await until('caught up after the restart', async () => {
        const d = await committed();
        ctx.progress.set({ done: d });
        const why = guard2(d);
        if (why) throw new Error(`restart (replay): ${why}`);
        return caughtUp();
      }, 10 * 60_000, 20);
      const tCaughtUp = Date.now();
      const replayEvents = tracker.ackedEvents - committedAtKill;
      const run: RestartRun = {
        trackedIds,
        rssBeforeKill,
        redisUsedMemory,
        stateBytes,
        backlog: tracker.ackedEvents - before,
        spawnToReadyMs: s2.readyAt - s2.spawnedAt,
        spawnToRestoredMs: rt.lastRestored - s2.spawnedAt,
        bootMs: rt.firstStart - s2.spawnedAt,
        restoreMs: rt.lastRestored - rt.firstStart,
        restoreMaxShardMs: rt.maxPerShard,
        readMaxMs: rt.readMaxMs,
        dedupMaxMs: rt.dedupMaxMs,
        replayEvents,
        replayMs: tCaughtUp - rt.lastRestored,
        replayPerSec: (replayEvents * 1000) / Math.max(1, tCaughtUp - rt.lastRestored),
        totalMs: tCaughtUp - s2.spawnedAt,
      };
      runs.push(run);
      ctx.progress.log(
        `restart ${i}/${cfg.restartRuns}: spawn→ready ${ms(run.spawnToReadyMs)}, spawn→restored ${ms(run.spawnToRestoredMs)} (boot ${ms(run.bootMs)}, ` +
          `restore ${ms(run.restoreMs)}, slowest shard ${ms(run.restoreMaxShardMs)}: read ${ms(run.readMaxMs)}, dedupe ${ms(run.dedupMaxMs)}), ` +
          `replay ${int(replayEvents)} events (${int(run.backlog)} published while down) in ${ms(run.replayMs)}, caught up ${ms(run.totalMs)} after spawn`,
      );
    }
    const [, lastMinute] = minuteRange(w);
    ctx.progress.set({ phase: 'restart: waiting for minutes to close', note: undefined });
    await until('minutes closed', async () => (await readMetas(servers.rd, prefix, shards)).every((m) => m.closedThrough >= lastMinute), 300_000, 200);
    ctx.progress.set({ phase: 'restart: checking every count' });
    const exact = await checkExactness(servers.rd, prefix, shards, w);
    ctx.progress.log(`restart: exact=${exact.exact} (${int(exact.totalCounted)} counted, truth ${int(exact.totalTruth)})`);
    if (!exact.exact) ctx.progress.log(`  NOT EXACT: ${JSON.stringify(exact)}`);
    await svc.stop();
    const median = [...runs].sort((a, b) => a.totalMs - b.totalMs)[Math.floor((runs.length - 1) / 2)]!;
    return { shards, events: tracker.ackedEvents, buildPerSec, runs, median, exact };
  } finally {
    await svc?.kill();
    await deleteStream(servers.nc, topo.clicksStream);
    await deleteStream(servers.nc, topo.deadLetterStream);
    await servers.rd.flushall();
  }
}
