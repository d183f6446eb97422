/**
 * bench/results/soak.md, regenerated from every soak-*.json in the results directory after each
 * soak run: one verdict line per run first, then before/after side by side per rate, then per run
 * its targets, summary and 10-s samples. Run alone to rebuild it from the JSON files:
 * `node --import tsx bench/lib/soak-report.ts [dir]` (default bench/results).
 */
import { readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { evaluate, keyFigures, wmDelay, type KeyFigures, type SoakRun } from './soak-run.ts';
import { int, rate } from './stats.ts';

const na = 'n/a';
const num = (x: number | null, f: (v: number) => string): string => (x === null || !Number.isFinite(x) ? na : f(x));
const bytes = (x: number | null): string =>
  num(x, (v) => (v >= 2 ** 30 ? `${(v / 2 ** 30).toFixed(2)} GiB` : v >= 2 ** 20 ? `${(v / 2 ** 20).toFixed(1)} MiB` : v >= 1024 ? `${(v / 1024).toFixed(1)} KiB` : `${v.toFixed(0)} B`));
const mbs = (x: number | null): string => num(x, (v) => `${(v / 1e6).toFixed(2)} MB/s`);
const msec = (x: number | null): string => num(x, (v) => (v >= 1000 ? `${(v / 1000).toFixed(2)} s` : `${v.toFixed(1)} ms`));
const pct = (x: number | null): string => num(x, (v) => `${v >= 0 ? '+' : ''}${v.toFixed(1)} %`);
const times = (x: number | null): string => num(x, (v) => `${v.toFixed(2)} ×`);
const secs = (x: number | null): string => num(x, (v) => `${v.toFixed(1)} s`);
const count = (x: number | null): string => num(x, int);

/** Key figures as table rows: label, value of a run, and whether a ratio after/before means something. */
const FIGURES: Array<[string, (k: KeyFigures) => string, (k: KeyFigures) => number | null]> = [
  ['ingest, clicks/s accepted (whole run)', (k) => num(k.achievedRate, rate), (k) => k.achievedRate],
  ['processed by the shard actors ÷ accepted', (k) => num(k.processedShare, (v) => `${(v * 100).toFixed(1)} %`), (k) => k.processedShare],
  ['tracked ids at the end', (k) => count(k.trackedEnd), (k) => k.trackedEnd],
  ['tracked ids growth per 5 min', (k) => pct(k.trackedGrowthPct), () => null],
  ['bytes per commit (Redis net input / commits)', (k) => bytes(k.bytesPerCommitRedis), (k) => k.bytesPerCommitRedis],
  ['↳ growth per 5 min', (k) => pct(k.bytesPerCommitRedisGrowthPct), () => null],
  ['bytes per commit (adagg_commit_bytes)', (k) => bytes(k.bytesPerCommitMetric), (k) => k.bytesPerCommitMetric],
  ['↳ growth per 5 min', (k) => pct(k.bytesPerCommitMetricGrowthPct), () => null],
  ['commits/s (all shards)', (k) => num(k.commitsPerSec, (v) => v.toFixed(1)), (k) => k.commitsPerSec],
  ['commit time, mean', (k) => msec(k.commitMeanMs), (k) => k.commitMeanMs],
  ['↳ growth per 5 min', (k) => pct(k.commitMeanGrowthPct), () => null],
  ['commit time, largest 10-s p99', (k) => `${k.commitP99Capped ? '> ' : ''}${msec(k.commitP99MaxMs)}`, (k) => k.commitP99MaxMs],
  ['Redis write bytes/s', (k) => mbs(k.redisWriteBps), (k) => k.redisWriteBps],
  ['↳ growth per 5 min', (k) => pct(k.redisWriteGrowthPct), () => null],
  ['Redis write bytes ÷ click bytes', (k) => times(k.writeOverClicks), (k) => k.writeOverClicks],
  ['Redis used memory at the end', (k) => bytes(k.redisMemEnd), (k) => k.redisMemEnd],
  ['service RSS at the end', (k) => bytes(k.rssEnd), (k) => k.rssEnd],
  ['consumer lag, max after 30 s (messages)', (k) => count(k.lagMax), (k) => k.lagMax],
  ['watermark delay, max after 30 s', (k) => secs(k.wmDelayMax), (k) => k.wmDelayMax],
  ['service CPU, cores (whole run, mean)', (k) => num(k.serviceCoresMean, (v) => v.toFixed(2)), (k) => k.serviceCoresMean],
  ['other processes on the machine, cores (whole run, mean; noise)', (k) => num(k.othersCoresMean, (v) => v.toFixed(2)), () => null],
  ['machine load average (1 min), mean', (k) => num(k.load1Mean, (v) => v.toFixed(2)), () => null],
];

export const runFile = (label: string, r: number): string => `soak-${label}-${r}`;

export async function loadRuns(dir: string): Promise<SoakRun[]> {
  const files = (await readdir(dir)).filter((f) => /^soak-.+\.json$/.test(f));
  const runs: SoakRun[] = [];
  for (const f of files) {
    const j = JSON.parse(await readFile(path.join(dir, f), 'utf8')) as SoakRun;
    if (j.scenario === 'soak' && Array.isArray(j.samples)) runs.push(j);
  }
  const rank = (l: string): number => (l === 'before' ? 0 : l === 'after' ? 1 : 2);
  return runs.sort((a, b) => a.rate - b.rate || rank(a.label) - rank(b.label) || a.label.localeCompare(b.label));
}

function verdictLine(run: SoakRun): string {
  const t = evaluate(run);
  const ok = t.every((x) => x.pass);
  const k = keyFigures(run);
  const marks = t.map((x) => `${x.short} ${x.pass ? '✓' : '✗'}`).join(', ');
  const end = run.outcome.completed ? `${run.minutes} min` : `ended early after ${(run.outcome.durationS / 60).toFixed(1)} of ${run.minutes} min`;
  return (
    `- **${run.label}, ${int(run.rate)} clicks/s** (${end}, service ${run.service.commit}${run.service.dirty ? '+dirty' : ''}): ` +
    `**${ok ? 'PASS' : 'FAIL'}** (${marks}); tracked ids → ${count(k.trackedEnd)} (${pct(k.trackedGrowthPct)}/5 min), ` +
    `bytes/commit ${bytes(k.bytesPerCommitRedis)} (${pct(k.bytesPerCommitRedisGrowthPct)}/5 min), commit ${msec(k.commitMeanMs)} (${pct(k.commitMeanGrowthPct)}/5 min), ` +
    `Redis ${mbs(k.redisWriteBps)} = ${times(k.writeOverClicks)} the clicks, watermark delay max ${secs(k.wmDelayMax)}; ` +
    `noise: load avg ${num(k.load1Mean, (v) => v.toFixed(1))}, other processes ${num(k.othersCoresMean, (v) => v.toFixed(2))} cores ` +
    `([plot](${runFile(run.label, run.rate)}.svg))`
  );
}

function comparison(before: SoakRun, after: SoakRun): string[] {
  const kb = keyFigures(before);
  const ka = keyFigures(after);
  const out = [`## ${int(after.rate)} clicks/s: before vs after`, '', `Second half of each run unless noted. [before plot](${runFile(before.label, before.rate)}.svg), [after plot](${runFile(after.label, after.rate)}.svg).`, ''];
  out.push('| figure | before | after | after / before |', '|---|---:|---:|---:|');
  for (const [name, show, value] of FIGURES) {
    const b = value(kb);
    const a = value(ka);
    const ratio = a !== null && b !== null && b > 0 ? `${(a / b).toPrecision(3)}` : '';
    out.push(`| ${name} | ${show(kb)} | ${show(ka)} | ${ratio} |`);
  }
  const tb = evaluate(before);
  const ta = evaluate(after);
  out.push('', '| target | before | after |', '|---|---|---|');
  // Matched by name: a newer service has one more target (adagg_commit_bytes).
  const res = (t: { pass: boolean } | undefined): string => (t ? (t.pass ? 'pass' : '**FAIL**') : 'n/a');
  for (const name of [...new Set([...tb, ...ta].map((t) => t.target))]) {
    out.push(`| ${name} | ${res(tb.find((t) => t.target === name))} | ${res(ta.find((t) => t.target === name))} |`);
  }
  out.push('');
  return out;
}

function runSection(run: SoakRun): string[] {
  const k = keyFigures(run);
  const o = run.outcome;
  const s = o.sender;
  const out = [`## Run: ${run.label}, ${int(run.rate)} clicks/s, ${run.minutes} min`, ''];
  out.push(
    `- command: \`${run.command}\``,
    `- date: ${run.date}; service from \`${run.service.root}\` at ${run.service.commit}${run.service.dirty ? ' (src/ had uncommitted changes)' : ''}`,
    `- versions: ${Object.entries(run.versions).map(([a, b]) => `${a} ${b}`).join(', ')}`,
    `- config: ${run.config.shards} shards, service env ${Object.entries(run.config.serviceEnv).map(([a, b]) => `${a}=${b}`).join(' ')} (everything else the service default: 1 h correction horizon, 10 s lateness); sender ${run.config.lanes} keep-alive connections, a ${run.config.tickMs} ms tick, backlog bound ${run.config.maxBacklogSec} s; samples every ${run.config.sampleEveryS} s`,
    `- outcome: ${o.completed ? 'completed' : `**ended early after ${o.durationS.toFixed(0)} s: ${o.endedEarly ?? '?'}**`}; sender posted ${int(s.posted)}, accepted ${int(s.accepted)}, rejected ${int(s.rejected)}, in failed requests ${int(s.failed)} (${int(s.failedRequests)} of ${int(s.requests)} requests${s.firstError ? `; first error: ${s.firstError.slice(0, 200)}` : ''}), dropped (sender behind > ${run.config.maxBacklogSec} s) ${int(s.dropped)}`,
    `- shard actor failures logged: ${o.actorFailures.restarts} restarts, ${o.actorFailures.fatal} stopped for good${o.actorFailures.first ? ` (first: ${o.actorFailures.first.slice(0, 300)})` : ''}; load average at the end ${o.loadavgEnd.map((x) => x.toFixed(2)).join(' ')}`,
    '',
    `![soak ${run.label} ${run.rate}](${runFile(run.label, run.rate)}.svg)`,
    '',
    '### Targets',
    '',
    '| target | result | detail |',
    '|---|---|---|',
  );
  for (const t of evaluate(run)) out.push(`| ${t.target} | ${t.pass ? 'pass' : '**FAIL**'} | ${t.detail.replace(/\|/g, '\\|')} |`);
  out.push('', '### Summary (second half unless noted)', '', '| figure | value |', '|---|---:|');
  for (const [name, show] of FIGURES) out.push(`| ${name} | ${show(k)} |`);
  out.push(
    '',
    '### Samples (every 10 s)',
    '',
    '| t | accepted/s | processed/s | tracked ids | commits/s | B/commit (Redis) | B/commit (metric) | Redis write | Redis ÷ clicks | commit mean | commit p99 | Redis mem | RSS | lag | wm delay | load1 | svc cores | other procs cores | notes |',
    '|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|',
  );
  let lastDropped = 0;
  let lastFailed = 0;
  for (const x of run.samples) {
    const notes = [
      ...(x.serviceUp ? [] : ['service down']),
      ...(x.dropped > lastDropped ? [`dropped ${int(x.dropped - lastDropped)}`] : []),
      ...(x.failed > lastFailed ? [`failed ${int(x.failed - lastFailed)}`] : []),
      ...(x.backlogS > 1 ? [`sender behind ${x.backlogS.toFixed(1)} s`] : []),
      ...(x.trackedCarried ? [`tracked ids: ${x.trackedCarried} shards' last answer`] : []),
      ...(x.trackedShards !== null && x.trackedShards !== undefined && x.trackedIds === null ? [`tracked ids from ${x.trackedShards} shards only`] : []),
      ...x.errors.map((e) => e.slice(0, 80)),
    ];
    lastDropped = x.dropped;
    lastFailed = x.failed;
    out.push(
      `| ${x.t.toFixed(0)} | ${rate(x.ingestRate)} | ${num(x.processedRate ?? null, rate)} | ${count(x.trackedIds)} | ${num(x.commitsPerSec ?? null, (v) => v.toFixed(1))} | ${bytes(x.bytesPerCommitRedis)} | ${bytes(x.bytesPerCommitMetric)} | ${mbs(x.redisWriteBytesPerSec)} | ${times(x.redisWriteOverClickBytes)} | ${msec(x.commitMeanMs)} | ${x.commitP99Capped ? '> ' : ''}${msec(x.commitP99Ms)} | ${bytes(x.redisUsedMemory)} | ${bytes(x.rss)} | ${count(x.lag)} | ${secs(wmDelay(x))} | ${x.load1.toFixed(2)} | ${num(x.serviceCores, (v) => v.toFixed(2))} | ${num(x.cores?.others ?? null, (v) => v.toFixed(2))} | ${notes.join('; ').replace(/\|/g, '\\|')} |`,
    );
  }
  out.push('');
  return out;
}

/** Rewrites `<dir>/soak.md` from every soak-*.json in `dir`; returns its path. */
export async function writeSoakReport(dir: string): Promise<string> {
  const runs = await loadRuns(dir);
  const out = [
    '# adagg soak benchmark',
    '',
    'Live clicks (event time = now) over `POST /v1/clicks` at a fixed rate against a fresh service with the default',
    'configuration (1 h correction horizon, so every click id stays tracked for the whole run), sampled every 10 s.',
    'It shows whether the cost of committing state stays flat while the state grows. Regenerated from the',
    '`soak-*.json` files here after every soak run; how to run and read it: `bench/README.md`, section "Soak".',
    '',
    '## Verdicts',
    '',
    ...(runs.length ? runs.map(verdictLine) : ['(no soak runs yet)']),
    '',
    'Targets: 0 = the load was held and the shard actors processed ≥ 95 % of it (a service that falls behind writes less, so 2 and 3 also fail then); 1 = watermark delay ≤ allowed lateness + 5 s after 30 s; 2 = bytes per commit, commit time and',
    'Redis write bytes/s grow < 10 % per 5 min in the second half (least-squares slope ÷ mean) while tracked ids grow; 3 = Redis write',
    'bytes ≤ 3 × the clicks’ own NDJSON bytes in the second half. A run that ended early fails every target.',
    '',
  ];
  for (const r of new Set(runs.map((x) => x.rate))) {
    const b = runs.find((x) => x.rate === r && x.label === 'before');
    const a = runs.find((x) => x.rate === r && x.label === 'after');
    if (a && b) out.push(...comparison(b, a));
  }
  for (const run of runs) out.push(...runSection(run));
  const file = path.join(dir, 'soak.md');
  await writeFile(file, out.join('\n'));
  return file;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  console.log(await writeSoakReport(path.resolve(process.argv[2] ?? path.join(import.meta.dirname, '../results'))));
}
