/** Writes bench/results/restart.{md,json} for the `restart` scenario (bench/scenarios/restart.ts). */
import { execFileSync } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { RestartResult, RestartRun } from '../scenarios/restart.ts';
import type { Versions } from './servers.ts';
import { serviceRoot } from './service.ts';
import { int, mib, ms, rate } from './stats.ts';

const TARGET_MS = 5000;

function commitOf(dir: string): string {
  try {
    return execFileSync('git', ['-C', dir, 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim();
  } catch {
    return 'unknown';
  }
}

export async function writeRestartReport(
  outDir: string,
  r: RestartResult,
  meta: { command: string; versions: Versions; serviceEnv: Record<string, string> },
): Promise<string[]> {
  await mkdir(outDir, { recursive: true });
  const root = serviceRoot();
  const at = new Date().toISOString();
  const x = r.median;
  const met = x.totalMs <= TARGET_MS && r.exact.exact;
  const runs = r.runs;
  const col = (f: (run: RestartRun) => string): string => runs.map(f).join(' | ');
  const md = [
    '# adagg restart benchmark',
    '',
    `**${met ? 'MET' : 'MISSED'}: a shard set holding ${int(x.trackedIds)} tracked click ids, SIGKILLed, was caught up ${ms(x.totalMs)} after its restart ` +
      `(median of ${runs.length}: ${runs.map((run) => ms(run.totalMs)).join(', ')}; target ≤ ${ms(TARGET_MS)}), exact = ${r.exact.exact}.** ` +
      `In the median run, restore (every shard's head, open minutes and dedupe blocks read back and rebuilt) took ${ms(x.restoreMs)} ` +
      `after the process had booted in ${ms(x.bootMs)}; then ${int(x.replayEvents)} events of backlog were replayed at ${rate(x.replayPerSec)} events/s.`,
    '',
    `- command: \`${meta.command}\``,
    `- date: ${at}; service from \`${root}\` at ${commitOf(root)}`,
    `- versions: node ${meta.versions.node}, nats-server ${meta.versions.natsServer}, redis-server ${meta.versions.redisServer}; ${os.cpus().length} cores; load average at the end ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}`,
    `- config: ${r.shards} shards, default service options (1 h correction horizon)${Object.keys(meta.serviceEnv).length ? `, plus ${Object.entries(meta.serviceEnv).map(([k, v]) => `${k}=${v}`).join(' ')}` : ''}; ` +
      'events spread over the 30 minutes before the run (all inside the horizon), Zipf over 2,000,000 ads, 1% duplicates, 1% late',
    `- the state is built once (${int(r.events - runs.reduce((a, run) => a + run.backlog, 0))} events at ${rate(r.buildPerSec)} events/s, publish → all committed); ` +
      'then each cycle SIGKILLs the service, publishes the backlog while it is down, restarts it and waits until it is caught up. ' +
      "Before each kill and each restart the bench waits for its Redis to finish any AOF rewrite (a fork copying the dataset, which on this 2-core machine would take a core from the restore).",
    '',
    `| figure | ${runs.map((_, i) => `run ${i + 1}`).join(' | ')} |`,
    `|---|${runs.map(() => '---:').join('|')}|`,
    `| tracked click ids at the kill (\`adagg_tracked_ids\`) | ${col((run) => int(run.trackedIds))} |`,
    `| service RSS at the kill | ${col((run) => mib(run.rssBeforeKill))} |`,
    `| Redis used memory at the kill | ${col((run) => mib(run.redisUsedMemory))} |`,
    `| state parts in Redis (heads + dedupe blocks + hot parts) | ${col((run) => mib(run.stateBytes))} |`,
    `| backlog published while the service was down | ${col((run) => int(run.backlog))} |`,
    `| restart → /readyz | ${col((run) => ms(run.spawnToReadyMs))} |`,
    `| restart → first actor starts (process boot, connections, workers) | ${col((run) => ms(run.bootMs))} |`,
    `| first actor start → every shard restored | ${col((run) => ms(run.restoreMs))} |`,
    `| ↳ slowest shard: restore / reading its parts / rebuilding its dedupe table | ${col((run) => `${ms(run.restoreMaxShardMs)} / ${ms(run.readMaxMs)} / ${ms(run.dedupMaxMs)}`)} |`,
    `| restart → every shard restored | ${col((run) => ms(run.spawnToRestoredMs))} |`,
    `| replay after restore | ${col((run) => `${int(run.replayEvents)} in ${ms(run.replayMs)}, ${rate(run.replayPerSec)}/s`)} |`,
    `| **restart → caught up** (every shard's committed sequence at the stream end) | ${col((run) => `**${ms(run.totalMs)}**`)} |`,
    '',
    `Exact after the last cycle (every ad's count, sample + per-country checks): ${r.exact.exact} (${int(r.exact.totalCounted)} counted, truth ${int(r.exact.totalTruth)}, ${int(r.exact.fullAdsCompared)} ads compared).`,
    '',
  ].join('\n');
  const mdFile = path.join(outDir, 'restart.md');
  const jsonFile = path.join(outDir, 'restart.json');
  await writeFile(mdFile, md);
  await writeFile(jsonFile, `${JSON.stringify({ command: meta.command, date: at, versions: meta.versions, serviceRoot: root, result: r }, null, 2)}\n`);
  return [mdFile, jsonFile];
}
