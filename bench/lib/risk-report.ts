/** Rows and the report file (bench/results/risk.md, risk.json) of the `risk` scenario. */
import { mkdir, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { RiskResult, RiskServiceRun } from '../scenarios/risk.ts';
import type { Row } from './context.ts';
import { markdownTable } from './report.ts';
import { int, max, median, mib, rate } from './stats.ts';

const S = 'risk';
const totalInvalid = (r: Record<string, number>): number => Object.values(r).reduce((a, b) => a + b, 0);
const same = (a: Record<string, number>, b: Record<string, number>): boolean => Object.keys({ ...a, ...b }).every((k) => (a[k] ?? 0) === (b[k] ?? 0));

/** Whether the rules-on run matched the truth, the one-actor run and the metrics, per rule. */
function checks(r: RiskResult, on: RiskServiceRun): { ok: boolean; note: string } {
  const truth = same(on.invalid, r.truth) && on.valid === r.truthValid;
  const actor = r.actor.on.every((a) => same(a.invalid, r.truth));
  const metrics = same(on.metricInvalid, on.invalid);
  return {
    ok: on.exact && truth && actor && metrics,
    note: `${on.exactNote}; per rule = independent truth: ${truth}; = one-actor run: ${actor}; = metrics (taken − released): ${metrics}`,
  };
}

export function riskRows(r: RiskResult): Row[] {
  const offs = r.pairs.map((p) => p.off);
  const ons = r.pairs.map((p) => p.on);
  if (offs.length === 0) return [];
  const off = median(offs.map((x) => x.eventsPerSec));
  const on = median(ons.map((x) => x.eventsPerSec));
  const settled = median(ons.map((x) => x.settledPerSec));
  const aOff = max(r.actor.off.map((a) => a.clicksPerSec));
  const aOn = max(r.actor.on.map((a) => a.clicksPerSec));
  const last = r.pairs[r.pairs.length - 1]!;
  const c = checks(r, last.on);
  const inv = totalInvalid(r.truth);
  const held = last.on.distinct;
  const heap = (xs: typeof r.actor.on): number => median(xs.map((a) => a.heapBytes));
  return [
    {
      scenario: S,
      figure: `pipeline events/s, rules off → on (${r.pairs.length === 1 ? '1 pair' : `median of ${r.pairs.length} pairs`})`,
      value: `${rate(off)} → ${rate(on)} (${((100 * on) / off).toFixed(0)} %)`,
      note: `first publish → every click committed; with every risk message applied too: ${rate(settled)}; ${r.rulesFile} (${r.version}); ${int(r.events)} events per run; runs: ${r.pairs.map((p) => `${rate(p.off.eventsPerSec)}/${rate(p.on.eventsPerSec)}`).join(', ')}`,
    },
    {
      scenario: S,
      figure: 'actor path on one core, clicks/s, rules off → on',
      value: `${rate(aOff)} → ${rate(aOn)} (${((100 * aOn) / aOff).toFixed(0)} %)`,
      note: `ShardActor.applyBatch in-process, ${int(r.actor.clicks)} clicks as one shard's 500-click batches, country dimension, commits every 200 batches, risk messages fed back; best of ${r.actor.on.length}; risk messages ${int(r.actor.on[0]?.riskMessages ?? 0)}`,
    },
    {
      scenario: S,
      figure: 'actor path, each rule alone: clicks/s, JS heap per held click',
      value: r.actor.alone.map((a) => `${a.rule} ${rate(a.clicksPerSec)}, ${((a.heapBytes - heap(r.actor.off)) / r.actor.clicks).toFixed(0)} B`).join('; '),
      note: `the same clicks with one rule in effect; risk messages: ${r.actor.alone.map((a) => `${a.rule} ${int(a.riskMessages)}`).join(', ')}`,
    },
    {
      scenario: S,
      figure: 'invalid clicks',
      value: `${int(inv)} (${((100 * inv) / (inv + r.truthValid)).toFixed(2)} %)`,
      note: `${Object.entries(r.truth).map(([k, v]) => `${k} ${int(v)}`).join(', ')}; injected originals: blocked ${int(r.abuse.blocked)}, hammering ${JSON.stringify(r.abuse.hammer)}, spreading ${JSON.stringify(r.abuse.spread)}`,
    },
    { scenario: S, figure: 'exact (rules off: counts = truth; on: see note)', value: String(offs.every((x) => x.exact) && c.ok), note: c.note },
    {
      scenario: S,
      figure: 'memory per held click (rules on − off)',
      value: `${((last.on.rssEnd - last.off.rssEnd) / held).toFixed(0)} B RSS, ${((heap(r.actor.on) - heap(r.actor.off)) / r.actor.clicks).toFixed(0)} B JS heap`,
      note: `service RSS at the end ${mib(last.off.rssEnd)} → ${mib(last.on.rssEnd)} over ${int(held)} held clicks (every distinct click: the rules' windows and the 1 h horizon hold all of them); JS heap of the one actor after a forced GC ${mib(heap(r.actor.off))} → ${mib(heap(r.actor.on))}`,
    },
    {
      scenario: S,
      figure: 'Redis bytes per held click (rules on − off)',
      value: `${((last.on.redisUsedMemory - last.off.redisUsedMemory) / held).toFixed(0)} B`,
      note: `INFO memory used_memory after every minute closed ${mib(last.off.redisUsedMemory)} → ${mib(last.on.redisUsedMemory)}; state bytes the one actor's commits carried per click ${median(r.actor.off.map((a) => a.commitBytesPerClick)).toFixed(1)} → ${median(r.actor.on.map((a) => a.commitBytesPerClick)).toFixed(1)}`,
    },
    {
      scenario: S,
      figure: 'CPU cores, service (off / on)',
      value: `${last.off.cores.service.toFixed(2)} / ${last.on.cores.service.toFixed(2)}`,
      note: `other processes on the machine ${last.off.cores.others.toFixed(2)} / ${last.on.cores.others.toFixed(2)}; risk messages in the stream (rules on) ${int(last.on.riskMessages)}; shard actor failures ${r.pairs.reduce((a, p) => a + p.off.failures + p.on.failures, 0)}`,
    },
  ];
}

/** Writes risk.md and risk.json into `dir`; returns their paths. */
export async function writeRiskReport(dir: string, r: RiskResult, meta: { command: string; versions: Record<string, string>; shards: number }): Promise<string[]> {
  await mkdir(dir, { recursive: true });
  const rows = riskRows(r);
  const md = [
    '# Invalid-click filtering: throughput with the example rules on, next to off',
    '',
    `- command: \`${meta.command}\``,
    `- date: ${new Date().toISOString()}; ${meta.shards} shards; versions: ${Object.entries(meta.versions).map(([k, v]) => `${k} ${v}`).join(', ')}`,
    `- rules: \`${r.rulesFile}\` (version ${r.version}); load average at the end ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}`,
    '',
    markdownTable(rows),
    '',
    '## Runs',
    '',
    '| pair | rules | events/s (clicks committed) | events/s (risk messages settled) | publish events/s | risk messages | valid | invalid | exact | RSS steady | Redis used | service cores | others |',
    '|---:|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|',
    ...r.pairs.flatMap((p, i) =>
      [p.off, p.on].map(
        (x) =>
          `| ${i + 1} | ${x.rules ? 'on' : 'off'} | ${rate(x.eventsPerSec)} | ${rate(x.settledPerSec)} | ${rate(x.publishPerSec)} | ${int(x.riskMessages)} | ${int(x.valid)} | ${int(totalInvalid(x.invalid))} | ${x.exact} | ${mib(x.rssSteady)} | ${mib(x.redisUsedMemory)} | ${x.cores.service.toFixed(2)} | ${x.cores.others.toFixed(2)} |`,
      ),
    ),
    '',
    '| actor path | clicks/s | risk messages | commits | commit bytes/click | heap held |',
    '|---|---:|---:|---:|---:|---:|',
    ...[...r.actor.off, ...r.actor.on].map((a) => `| rules ${a.rules ? 'on' : 'off'} | ${rate(a.clicksPerSec)} | ${int(a.riskMessages)} | ${a.commits} | ${a.commitBytesPerClick.toFixed(1)} | ${mib(a.heapBytes)} |`),
    ...r.actor.alone.map((a) => `| ${a.rule} alone | ${rate(a.clicksPerSec)} | ${int(a.riskMessages)} | ${a.commits} | ${a.commitBytesPerClick.toFixed(1)} | ${mib(a.heapBytes)} |`),
    '',
    '## What the figures mean',
    '',
    '- **pipeline events/s**: as in `latest.md` (first publish → every shard committed the last click batch), the same',
    '  stream in both runs; each run is a fresh service, the rules-on one started with `ADAGG_RISK_RULES` (which',
    '  also turns hot-ad splitting off). *Settled* waits further until every shard committed the last message of',
    '  its subject, i.e. the presence reports and spread verdicts the clicks caused were applied too.',
    '- **workload**: the pipeline workload (Zipf over 2,000,000 ads, 1% duplicates, 1% late) with one IP per user,',
    '  plus abusive originals: clicks from the blocked ranges, a few identities hammering one ad each per',
    '  frequency rule, a few IPs clicking across many ads per spread rule (`bench/lib/risk-workload.ts`).',
    '- **exact**: rules off, the counts equal the generator\'s truth (as in `latest.md`); rules on, the valid',
    '  count fields plus the `!inv` fields of every minute equal the distinct clicks, and the invalid clicks per',
    '  rule equal those of the independent truth (`test/helpers/risk-truth.ts`) over the same clicks, of the',
    '  one-actor run, and of the metrics.',
    '- **memory per held click**: service RSS at the end of the rules-on run minus the rules-off run, divided',
    '  by the clicks the rules hold (every distinct click of the run); an estimate (heap slack and hot-ad',
    '  splitting differ between the runs). The JS heap figure is the one actor\'s heap after a forced GC, on',
    '  minus off, per click: what the engine keeps in memory.',
    '- **Redis bytes per held click**: `used_memory` after every minute closed, rules on minus off, per',
    '  held click: the clicks of the horizon in log parts, the spread groups and the `!inv` count fields.',
    '',
  ].join('\n');
  const files = [path.join(dir, 'risk.md'), path.join(dir, 'risk.json')];
  await writeFile(files[0]!, md);
  await writeFile(files[1]!, `${JSON.stringify({ ...meta, date: new Date().toISOString(), rows, result: r }, null, 2)}\n`);
  return files;
}
