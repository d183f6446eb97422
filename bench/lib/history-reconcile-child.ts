/**
 * Child process of the `history` scenario: runs `reconcileDay` (the code `adagg reconcile` runs)
 * once against the bench's Redis and archive, and prints one JSON line on stdout: the report
 * summary, the mismatches (at most 100), the duration and this process's peak RSS (VmHWM). A child,
 * so the peak RSS is the reconciliation's own (not the bench's DuckDB generation) and running out
 * of memory ends only this process.
 * Input: env HISTORY_RECONCILE = JSON {redisUrl, prefix, shards, archiveDir, day}.
 */
import { readFileSync } from 'node:fs';
import { getHeapStatistics } from 'node:v8';
import { Redis } from 'ioredis';
import { reconcileDay } from '../../src/runtime/archive/reconcile.ts';
import { RedisKeys } from '../../src/runtime/redis-keys.ts';

const input = JSON.parse(process.env.HISTORY_RECONCILE ?? '{}') as { redisUrl: string; prefix: string; shards: number; archiveDir: string; day: string };
const redis = new Redis(input.redisUrl, { maxRetriesPerRequest: 3 });
const hwm = (): number => Number(/VmHWM:\s+(\d+)\s+kB/.exec(readFileSync('/proc/self/status', 'utf8'))?.[1] ?? NaN) * 1024;
const phases: Array<{ phase: string; atMs: number }> = [];
const t0 = performance.now();
try {
  const report = await reconcileDay({
    redis,
    keys: new RedisKeys(input.prefix),
    prefix: input.prefix,
    shards: input.shards,
    archiveDir: input.archiveDir,
    day: input.day,
    waitMs: 5000,
    onProgress: (p) => {
      const phase = p.phase === 'stored' ? (p.shard === 0 ? 'stored' : '') : p.phase;
      if (!phase) return;
      phases.push({ phase, atMs: Math.round(performance.now() - t0) });
      process.stderr.write(`reconcile child: ${phase} at ${Math.round(performance.now() - t0)} ms, RSS peak ${Math.round(hwm() / 2 ** 20)} MiB\n`);
    },
  });
  const { all, rows: _rows, ...summary } = report;
  const out = { ok: true, ms: performance.now() - t0, peakRss: hwm(), heapLimit: getHeapStatistics().heap_size_limit, phases, summary, mismatches: all.slice(0, 100) };
  process.stdout.write(`${JSON.stringify(out)}\n`);
} finally {
  redis.disconnect();
}
