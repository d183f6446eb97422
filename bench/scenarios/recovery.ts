/**
 * Scenario 6 (recovery): a backlog in the stream while the service is stopped; start the service,
 * SIGKILL it once half the backlog is processed, restart it and measure: restart → /readyz, restart →
 * every shard restored from its snapshot ('shard actor restored' log line), replay until the
 * committed sequence reaches the stream end; then exactness as in the pipeline scenario.
 */
import path from 'node:path';
import { compileOptions } from '../../src/options.ts';
import { RedisKeys } from '../../src/runtime/redis-keys.ts';
import { ensureStreams } from '../../src/runtime/streams.ts';
import { topology } from '../../src/runtime/topology.ts';
import { freshPrefix, spreadSpec, type Ctx } from '../lib/context.ts';
import { AckTracker, publishAll, TrackingProducer } from '../lib/publisher.ts';
import { checkExactness, minuteRange, readMetas, type Exactness } from '../lib/redis-state.ts';
import { deleteStream } from '../lib/servers.ts';
import { metric, stallGuard, startService, type Service } from '../lib/service.ts';
import { int, mib, ms, rate, sleep, until } from '../lib/stats.ts';
import { Workload } from '../lib/workload.ts';

export interface RecoveryResult {
  backlog: number;
  backlogPublishPerSec: number;
  /** catchUpPerSec: events processed per second from ready to the kill. */
  cold: { spawnToReadyMs: number; spawnToRestoredMs: number; restoreSpanMs: number; catchUpPerSec: number };
  /** Events processed by the actors (applied, not necessarily committed) when the SIGKILL was sent. */
  killedAtProcessed: number;
  killedAtCommitted: number;
  snapshotBytes: number;
  restart: {
    spawnToReadyMs: number;
    /** Spawn → last shard's 'shard actor restored' (process boot + connect + snapshot load/decode). */
    spawnToRestoredMs: number;
    /** Spawn → first shard actor incarnation starts (node + tsx boot, connections, streams). */
    bootMs: number;
    /** First actor start → last shard restored: ownership, snapshot GET and decode of all shards (one event loop). */
    snapshotRestoreMs: number;
    /** Longest single shard's start → restored. */
    snapshotRestoreMaxShardMs: number;
    replayEvents: number;
    /** Last shard restored → committed seq reaches the stream end on every shard. */
    replayMs: number;
    replayPerSec: number;
    /** Restart → caught up. */
    totalMs: number;
  };
  closeWaitMs: number;
  exact: Exactness;
}

function restoredAt(svc: Service, shards: number): number | null {
  return restoreTimes(svc, shards)?.lastRestored ?? null;
}

/**
 * From the service's info log: per shard, the supervisor's 'lifecycle transition' to running (the
 * incarnation starts: take ownership, load the snapshot, decode it) and 'shard actor restored'.
 */
function restoreTimes(svc: Service, shards: number): { firstStart: number; lastRestored: number; maxPerShard: number } | null {
  const start = new Map<number, number>();
  const done = new Map<number, number>();
  for (const l of svc.logs) {
    if (l.msg === 'lifecycle transition' && l.to === 'running' && typeof l.actor === 'string' && l.actor.startsWith('shard-')) {
      const s = Number(l.actor.slice(6));
      if (!start.has(s)) start.set(s, l.time);
    }
    if (l.msg === 'shard actor restored' && typeof l.shard === 'number' && !done.has(l.shard)) done.set(l.shard, l.time);
  }
  if (done.size < shards) return null;
  const firstStart = start.size ? Math.min(...start.values()) : NaN;
  let maxPerShard = 0;
  for (const [s, t] of done) maxPerShard = Math.max(maxPerShard, t - (start.get(s) ?? NaN));
  return { firstStart, lastRestored: Math.max(...done.values()), maxPerShard };
}

export async function runRecovery(ctx: Ctx): Promise<RecoveryResult> {
  const { cfg, servers } = ctx;
  const prefix = freshPrefix('r');
  const topo = topology(prefix);
  const keys = new RedisKeys(prefix);
  await ensureStreams(servers.nc, topo, compileOptions({ prefix, shards: cfg.shards }));
  const w = new Workload(spreadSpec(cfg, cfg.recoveryEvents, cfg.seed + 500, `r${prefix.slice(-4)}`));
  const tracker = new AckTracker(cfg.shards);
  const producer = new TrackingProducer(servers.nc, topo, cfg.shards, cfg.maxBatch, tracker);
  ctx.progress.set({ phase: `recovery: building a ${int(cfg.recoveryEvents)}-event backlog`, sent: 0, done: undefined });
  const tick = setInterval(() => ctx.progress.set({ sent: tracker.ackedEvents }), 250);
  const tp = Date.now();
  await publishAll(w, producer, cfg.window).finally(() => clearInterval(tick));
  const backlogPublishPerSec = (tracker.ackedEvents * 1000) / (Date.now() - tp);
  const svcOpts = {
    natsUrl: servers.natsUrl,
    redisUrl: servers.redisUrl,
    prefix,
    shards: cfg.shards,
    logLevel: 'info',
    logFile: path.join(servers.logDir, `service-${prefix}.log`),
    env: cfg.serviceEnv,
  };
  let svc: Service | undefined;
  const committed = async () => tracker.eventsThrough((await readMetas(servers.rd, prefix, cfg.shards)).map((m) => m.seq));
  try {
    ctx.progress.set({ phase: 'recovery: cold start on the backlog', sent: tracker.ackedEvents, done: 0 });
    svc = await startService(svcOpts);
    const s1 = svc;
    await until('cold start restored', () => restoredAt(s1, cfg.shards) !== null, 60_000, 20);
    const ct = restoreTimes(svc, cfg.shards)!;
    const cold = {
      spawnToReadyMs: svc.readyAt - svc.spawnedAt,
      spawnToRestoredMs: ct.lastRestored - svc.spawnedAt,
      restoreSpanMs: ct.lastRestored - ct.firstStart,
      catchUpPerSec: NaN,
    };
    // Kill once half the backlog has been *processed* by the actors (adagg_events_processed_total),
    // whatever has been committed by then: that is what a crash mid-backlog costs.
    const half = Math.floor(tracker.ackedEvents / 2);
    const guard1 = stallGuard(svc);
    const url = svc.url;
    let processed = 0;
    await until('half the backlog processed', async () => {
      processed = [...(await metric(url, 'adagg_events_processed_total')).values()].reduce((a, b) => a + b, 0);
      const c = await committed();
      ctx.progress.set({ done: c, note: `processed ${int(processed)}` });
      const why = guard1(processed);
      if (why) throw new Error(`recovery (cold start): ${why}`);
      return processed >= half;
    }, 10 * 60_000, 20);
    await svc.kill();
    const tKill = Date.now();
    const killedAtCommitted = await committed();
    cold.catchUpPerSec = (processed * 1000) / (tKill - svc.readyAt);
    const p = servers.rd.pipeline();
    for (let s = 0; s < cfg.shards; s++) p.strlen(keys.snapshot(s));
    const snapshotBytes = ((await p.exec()) ?? []).reduce((a, [, v]) => a + Number(v ?? 0), 0);
    ctx.progress.log(`recovery: SIGKILL at ${int(processed)} processed, ${int(killedAtCommitted)} committed events; snapshots ${mib(snapshotBytes)}`);

    ctx.progress.set({ phase: 'recovery: restart after SIGKILL', done: killedAtCommitted });
    await sleep(200);
    svc = await startService(svcOpts);
    const s2 = svc;
    await until('restart restored', () => restoredAt(s2, cfg.shards) !== null, 120_000, 10);
    const rt = restoreTimes(svc, cfg.shards)!;
    const restored = rt.lastRestored;
    const guard2 = stallGuard(s2);
    await until('backlog replayed', async () => {
      const metas = await readMetas(servers.rd, prefix, cfg.shards);
      const done = tracker.eventsThrough(metas.map((m) => m.seq));
      ctx.progress.set({ done });
      const why = guard2(done);
      if (why) throw new Error(`recovery (restart): ${why}`);
      return metas.every((m, s) => m.seq >= tracker.lastSeq[s]!);
    }, 10 * 60_000, 40);
    const tCaughtUp = Date.now();
    const replayEvents = tracker.ackedEvents - killedAtCommitted;
    const restart = {
      spawnToReadyMs: svc.readyAt - svc.spawnedAt,
      spawnToRestoredMs: restored - svc.spawnedAt,
      bootMs: rt.firstStart - svc.spawnedAt,
      snapshotRestoreMs: restored - rt.firstStart,
      snapshotRestoreMaxShardMs: rt.maxPerShard,
      replayEvents,
      replayMs: tCaughtUp - restored,
      replayPerSec: (replayEvents * 1000) / (tCaughtUp - restored),
      totalMs: tCaughtUp - svc.spawnedAt,
    };
    const [, lastMinute] = minuteRange(w);
    ctx.progress.set({ phase: 'recovery: waiting for minutes to close', note: undefined });
    const tc = Date.now();
    await until('minutes closed', async () => (await readMetas(servers.rd, prefix, cfg.shards)).every((m) => m.closedThrough >= lastMinute), 150_000, 100);
    const closeWaitMs = Date.now() - tc;
    const exact = await checkExactness(servers.rd, prefix, cfg.shards, w);
    const res: RecoveryResult = {
      backlog: tracker.ackedEvents,
      backlogPublishPerSec,
      cold,
      killedAtProcessed: processed,
      killedAtCommitted,
      snapshotBytes,
      restart,
      closeWaitMs,
      exact,
    };
    ctx.progress.log(
      `recovery: restart→ready ${ms(restart.spawnToReadyMs)}, restart→restored ${ms(restart.spawnToRestoredMs)} ` +
        `(boot ${ms(restart.bootMs)}, snapshots ${ms(restart.snapshotRestoreMs)}), replay ${int(replayEvents)} events in ${ms(restart.replayMs)} ` +
        `(${rate(restart.replayPerSec)}/s), exact=${exact.exact}`,
    );
    if (!exact.exact) ctx.progress.log(`  NOT EXACT: ${JSON.stringify(exact)}`);
    await svc.stop();
    return res;
  } finally {
    await svc?.kill();
    await deleteStream(servers.nc, topo.clicksStream);
    await deleteStream(servers.nc, topo.deadLetterStream);
    await servers.rd.flushall();
  }
}
