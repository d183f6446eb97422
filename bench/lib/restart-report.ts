/** Writes bench/results/restart.{md,json} for the `restart` scenario (bench/scenarios/restart.ts). */
import { execFileSync } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { RestartResult } from '../scenarios/restart.ts';
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
  const met = r.restart.totalMs <= TARGET_MS && r.exact.exact;
  const x = r.restart;
  const md = [
    '# adagg restart benchmark',
    '',
    `**${met ? 'MET' : 'MISSED'}: a shard set holding ${int(r.trackedIds)} tracked click ids, SIGKILLed, was caught up ${ms(x.totalMs)} after its restart ` +
      `(target ≤ ${ms(TARGET_MS)}), exact = ${r.exact.exact}.** Restore (every shard's head, open minutes and dedupe blocks read back and ` +
      `rebuilt) took ${ms(x.restoreMs)} after the process had booted in ${ms(x.bootMs)}; then ${int(x.replayEvents)} events of backlog ` +
      `were replayed at ${rate(x.replayPerSec)} events/s.`,
    '',
    `- command: \`${meta.command}\``,
    `- date: ${at}; service from \`${root}\` at ${commitOf(root)}`,
    `- versions: node ${meta.versions.node}, nats-server ${meta.versions.natsServer}, redis-server ${meta.versions.redisServer}; ${os.cpus().length} cores; load average at the end ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}`,
    `- config: ${r.shards} shards, default service options (1 h correction horizon)${Object.keys(meta.serviceEnv).length ? `, plus ${Object.entries(meta.serviceEnv).map(([k, v]) => `${k}=${v}`).join(' ')}` : ''}; ` +
      'events spread over the 30 minutes before the run (all inside the horizon), Zipf over 2,000,000 ads, 1% duplicates, 1% late',
    '',
    '| figure | value |',
    '|---|---:|',
    `| events consumed before the kill | ${int(r.events - r.backlog)} (at ${rate(r.buildPerSec)} events/s, publish → all committed) |`,
    `| tracked click ids at the kill (\`adagg_tracked_ids\`) | ${int(r.trackedIds)} |`,
    `| service RSS at the kill | ${mib(r.rssBeforeKill)} |`,
    `| Redis used memory at the kill | ${mib(r.redisUsedMemory)} |`,
    `| state parts in Redis (heads + dedupe blocks + hot parts) | ${mib(r.stateBytes)} |`,
    `| backlog published while the service was down | ${int(r.backlog)} events |`,
    `| restart → /readyz | ${ms(x.spawnToReadyMs)} |`,
    `| restart → first actor starts (process boot, connections, workers) | ${ms(x.bootMs)} |`,
    `| first actor start → every shard restored | ${ms(x.restoreMs)} (slowest shard ${ms(x.restoreMaxShardMs)}) |`,
    `| restart → every shard restored | ${ms(x.spawnToRestoredMs)} |`,
    `| replay after restore | ${int(x.replayEvents)} events in ${ms(x.replayMs)}, ${rate(x.replayPerSec)} events/s |`,
    `| **restart → caught up** (every shard's committed sequence at the stream end) | **${ms(x.totalMs)}** |`,
    `| exact (every ad's count, sample + per-country checks) | ${r.exact.exact} (${int(r.exact.totalCounted)} counted, truth ${int(r.exact.totalTruth)}, ${int(r.exact.fullAdsCompared)} ads compared) |`,
    '',
  ].join('\n');
  const mdFile = path.join(outDir, 'restart.md');
  const jsonFile = path.join(outDir, 'restart.json');
  await writeFile(mdFile, md);
  await writeFile(jsonFile, `${JSON.stringify({ command: meta.command, date: at, versions: meta.versions, serviceRoot: root, result: r }, null, 2)}\n`);
  return [mdFile, jsonFile];
}
