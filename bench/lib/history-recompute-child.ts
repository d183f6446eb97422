/**
 * Child process of the `history` scenario, part 3: runs `recompute` (the code `adagg recompute`
 * runs: the archive re-aggregated by private shard actors, compared with Redis) over the generated
 * day, then `applyRecompute` of what it found, then reads the changed fields back. Prints one JSON
 * line on stdout: the summary, the changes (at most 100), the durations, the fields read back and
 * this process's peak RSS (VmHWM). Progress lines go to stderr.
 * Input: env HISTORY_RECOMPUTE = JSON {redisUrl, prefix, shards, archiveDir, fromMs, toMs, marginMs, archiveDirAudit}.
 */
import { readFileSync } from 'node:fs';
import { getHeapStatistics } from 'node:v8';
import { Redis } from 'ioredis';
import { actorRegistry } from '../../src/actors/index.ts';
import { recompute } from '../../src/runtime/archive/recompute.ts';
import { applyRecompute } from '../../src/runtime/archive/recompute-commit.ts';
import { RedisKeys } from '../../src/runtime/redis-keys.ts';

interface Input {
  redisUrl: string;
  prefix: string;
  shards: number;
  archiveDir: string;
  fromMs: number;
  toMs: number;
  marginMs: number;
}

const input = JSON.parse(process.env.HISTORY_RECOMPUTE ?? '{}') as Input;
const redis = new Redis(input.redisUrl, { maxRetriesPerRequest: 3 });
const keys = new RedisKeys(input.prefix);
const hwm = (): number => Number(/VmHWM:\s+(\d+)\s+kB/.exec(readFileSync('/proc/self/status', 'utf8'))?.[1] ?? NaN) * 1024;
const phases: Array<{ phase: string; atMs: number }> = [];
const t0 = performance.now();
let lastLine = 0;
const say = (s: string): void => void process.stderr.write(`recompute child: ${s} at ${Math.round(performance.now() - t0)} ms, RSS peak ${Math.round(hwm() / 2 ** 20)} MiB\n`);
try {
  const run = await recompute({
    redis,
    keys,
    prefix: input.prefix,
    shards: input.shards,
    archiveDir: input.archiveDir,
    fromMs: input.fromMs,
    toMs: input.toMs,
    dimensions: [],
    marginMs: input.marginMs,
    actors: actorRegistry.shardActors,
    // The generated day is over: every minute of it is sealed.
    sealedThrough: async () => Math.floor(input.toMs / 60_000) - 1,
    onProgress: (p) => {
      const now = performance.now();
      if (p.phase !== 'feed' && p.phase !== 'stored') {
        phases.push({ phase: p.phase, atMs: Math.round(now - t0) });
        say(p.phase);
      } else if (p.phase === 'stored' && p.shard === 0) {
        phases.push({ phase: 'stored', atMs: Math.round(now - t0) });
        say('stored');
      } else if (now - lastLine >= 5000) {
        lastLine = now;
        say(p.phase === 'feed' ? `${p.clicks} clicks fed` : `stored counts of shard ${p.shard + 1}/${p.shards}`);
      }
    },
  });
  const recomputeMs = performance.now() - t0;
  say('applying');
  const t1 = performance.now();
  const applied = await applyRecompute({
    redis,
    keys,
    archiveDir: input.archiveDir,
    countTtlMs: 30 * 86_400_000,
    run,
    cause: 'recompute',
    by: 'bench',
    reason: 'bench: restore the injected mismatches',
    command: 'bench history recompute',
  });
  const applyMs = performance.now() - t1;
  const readBack = await Promise.all(
    run.changes.slice(0, 100).map(async (c) => ({ ad_id: c.ad_id, minute: c.minute, want: c.new, stored: Number((await redis.hget(keys.counts(c.shard, c.minute, c.dim, c.value), c.ad_id)) ?? 0) })),
  );
  const out = {
    ok: true,
    ms: recomputeMs,
    applyMs,
    peakRss: hwm(),
    heapLimit: getHeapStatistics().heap_size_limit,
    phases,
    clicks: run.clicks,
    rawFiles: run.rawFiles,
    summary: run.summary,
    changes: run.changes.slice(0, 100),
    applied: applied.applied.length,
    auditId: applied.audit?.id ?? null,
    readBack,
  };
  process.stdout.write(`${JSON.stringify(out)}\n`);
} finally {
  redis.disconnect();
}
