/** Rows, the storage projection and the report files (bench/results/history.md, history.json) of the `history` scenario. */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { HistoryResult } from '../scenarios/history.ts';
import type { Row } from './context.ts';
import { HISTORY_FLUSH_MS } from './history-archiver.ts';
import { markdownTable } from './report.ts';
import { int, mib, ms, rate } from './stats.ts';

const S = 'history';
const GiB = 2 ** 30;

/**
 * Expected ad-minutes with at least one click per day, for `clicksPerDay` spread evenly over the
 * minutes and Zipf(s) popularity over `ads` ads (Poisson per ad-minute): 1440 · Σ_k (1 − e^(−n·p_k)).
 * s = 0 is uniform, the upper bound.
 */
export function adMinutesPerDay(clicksPerDay: number, ads: number, s: number): number {
  const n = clicksPerDay / 1440;
  let h = 0;
  for (let k = 1; k <= ads; k++) h += k ** -s;
  let distinct = 0;
  for (let k = 1; k <= ads; k++) distinct += 1 - Math.exp((-n * k ** -s) / h);
  return distinct * 1440;
}

export interface Projection {
  clicksPerDay: number;
  ads: number;
  adMinutesZipf: number;
  adMinutesUniform: number;
  rawBytesPerClick: number;
  aggregateBytesPerAdMinute: number;
  redisBytesPerAdMinute: number;
  /** reconcileDay in one process: peak RSS per ad-minute compared and ms per click, on the generated day. */
  reconcileRssPerAdMinute: number;
  reconcileMsPerMillionClicks: number;
}

export function projection(r: HistoryResult): Projection | undefined {
  const d = r.day;
  if (!d) return undefined;
  const ok = r.reconcile.find((x) => x.ok);
  return {
    clicksPerDay: 1e9,
    ads: 2_000_000,
    adMinutesZipf: adMinutesPerDay(1e9, 2_000_000, 1),
    adMinutesUniform: adMinutesPerDay(1e9, 2_000_000, 0),
    rawBytesPerClick: d.parquetBytes / d.rows,
    aggregateBytesPerAdMinute: d.aggregateBytes / d.adMinutes,
    redisBytesPerAdMinute: (d.redisAfter - d.redisBefore) / d.adMinutes,
    reconcileRssPerAdMinute: ok ? ok.peakRss / d.adMinutes : NaN,
    reconcileMsPerMillionClicks: ok ? (ok.ms / ok.summary!.clicks) * 1e6 : NaN,
  };
}

const gib = (b: number): string => (b >= 1024 * GiB ? `${(b / (1024 * GiB)).toFixed(1)} TiB` : `${(b / GiB).toFixed(1)} GiB`);

function projectionTable(p: Projection): string[] {
  const line = (what: string, perDay: number): string => `| ${what} | ${gib(perDay)} | ${gib(perDay * 30)} | ${gib(perDay * 395)} |`;
  return [
    '| storage at 1 billion clicks a day | per day | 30 days | 13 months (395 days) |',
    '|---|---:|---:|---:|',
    line(`raw archive, Parquet (${p.rawBytesPerClick.toFixed(1)} B/click)`, p.clicksPerDay * p.rawBytesPerClick),
    line(`minute counts in Redis, Zipf(1) (${int(p.adMinutesZipf)} ad-minutes/day × ${p.redisBytesPerAdMinute.toFixed(1)} B)`, p.adMinutesZipf * p.redisBytesPerAdMinute),
    line(`minute counts in Redis, uniform (${int(p.adMinutesUniform)} ad-minutes/day)`, p.adMinutesUniform * p.redisBytesPerAdMinute),
    line(`minute counts in Parquet, Zipf(1) (${p.aggregateBytesPerAdMinute.toFixed(1)} B/ad-minute)`, p.adMinutesZipf * p.aggregateBytesPerAdMinute),
    line('minute counts in Parquet, uniform', p.adMinutesUniform * p.aggregateBytesPerAdMinute),
    '',
    `reconcileDay of one such day as built (one process; the dedupe, the grouping and the comparison run in DuckDB,`,
    `whose working memory is the peak RSS measured, ${p.reconcileRssPerAdMinute.toFixed(0)} B per ad-minute here, under DuckDB's default limit of 80 % of RAM`,
    `and spilling to disk beyond it): at the measured ${(p.reconcileMsPerMillionClicks / 1000).toFixed(1)} s per million clicks about ${((p.reconcileMsPerMillionClicks * 1000) / 60_000).toFixed(0)} minutes for 1 B clicks;`,
    'run per shard or per hour (the SQL and the comparison partition cleanly by shard and minute) it spreads over processes.',
  ];
}

export function historyRows(r: HistoryResult): Row[] {
  const rows: Row[] = [];
  const { day } = r;
  const last = r.pairs[r.pairs.length - 1];
  if (last) {
    const { on } = last;
    const off = last.off;
    const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;
    const mOff = mean(r.pairs.map((p) => p.off.eventsPerSec));
    const mOn = mean(r.pairs.map((p) => p.on.eventsPerSec));
    rows.push({
      scenario: S,
      figure: `pipeline events/s, archive off → on (${r.pairs.length === 1 ? '1 pair' : `mean of ${r.pairs.length} pairs`})`,
      value: `${rate(mOff)} → ${rate(mOn)} (${((100 * mOn) / mOff).toFixed(0)} %)`,
      note: `runs off/on: ${r.pairs.map((p) => `${rate(p.off.eventsPerSec)}/${rate(p.on.eventsPerSec)} (${((100 * p.on.eventsPerSec) / p.off.eventsPerSec).toFixed(0)} %)`).join(', ')}; first publish → every shard committed; same ${int(r.events)} events (Zipf over 2 M ads, 1% duplicates, 1% late) in both, a fresh service each; ADAGG_ARCHIVE_FLUSH_MS=${HISTORY_FLUSH_MS}; service cores ${off.cores.service.toFixed(2)} / ${on.cores.service.toFixed(2)}, other processes ${off.cores.others.toFixed(2)} / ${on.cores.others.toFixed(2)}; RSS steady ${mib(off.rssSteady)} / ${mib(on.rssSteady)}`,
    });
    const counts = r.pairs.map((p) => p.on).filter((x) => x.count);
    if (counts.length > 1) {
      rows.push({
        scenario: S,
        figure: 'archive exactly once, every "on" run',
        value: String(counts.every((x) => x.exactlyOnce)),
        note: counts.map((x) => `${int(x.count!.rows)} rows / ${int(x.events)} published, ${rate(x.archiverClicksPerSec ?? NaN)} clicks/s`).join('; '),
      });
    }
    if (on.count && on.archivedMs !== undefined) {
      rows.push({
        scenario: S,
        figure: 'archiver clicks/s (first publish → archive caught up)',
        value: rate(on.archiverClicksPerSec ?? NaN),
        note: `${int(on.count.rows)} rows in ${ms(on.archivedMs)} (pipeline committed after ${ms(on.durationMs)}${on.archivedMs - on.durationMs < 1000 ? ': the archivers had kept pace, so this is the pipeline\'s rate, a lower bound of theirs' : `; the last flush waits up to ${HISTORY_FLUSH_MS / 1000} s`}); one archiver per shard beside its actor, in the same service`,
      });
      rows.push({
        scenario: S,
        figure: 'archive exactly once (rows = events published)',
        value: String(on.exactlyOnce),
        note: `rows ${int(on.count.rows)} (shard subjects ${int(on.count.shardRows)}, hot ${int(on.count.hotRows)}) vs ${int(on.events)} published; distinct (subject, seq, pos) ${int(on.count.distinctKeys)}; stray tmp files ${on.count.tmpFiles}`,
      });
      rows.push({
        scenario: S,
        figure: 'archive bytes per click (pipeline workload)',
        value: `${(on.count.bytes / on.count.rows).toFixed(1)} B`,
        note: `${on.count.files} files, ${mib(on.count.bytes)}; short click ids (tag-base36), 1 M users, 4096 IPs, 8 countries; files of ≤ ${HISTORY_FLUSH_MS / 1000} s`,
      });
    }
    if (on.alone) {
      rows.push({
        scenario: S,
        figure: 'one archiver alone, clicks/s',
        value: rate(on.alone.clicksPerSec),
        note: `in the bench process over the run's stream (every shard subject): ordered consumer, decode, DuckDB append, ${on.alone.files} flushes of ${int(on.alone.fileClicks)} rows (zstd Parquet + fsync, fenced Redis step, renames); ${int(on.alone.clicks)} clicks in ${ms(on.alone.ms)}`,
      });
    }
  }
  if (day) {
    rows.push({
      scenario: S,
      figure: 'generated day',
      value: `${int(day.rows)} clicks`,
      note: `${day.day}: ${int(day.distinct)} distinct + ${int(day.duplicates)} duplicate copies; Zipf-ish over ${int(day.ads)} ads (top ad ${(100 * day.topAdShare).toFixed(1)} %); ${int(day.adMinutes)} ad-minutes; ${day.files} files; generated ${ms(day.generateMs)}, written ${ms(day.writeMs)}, counts into Redis ${ms(day.loadMs)}`,
    });
    for (const run of r.reconcile) {
      const heap = run.heapMb ? `--max-old-space-size=${run.heapMb}` : 'default heap';
      rows.push(
        run.ok
          ? {
              scenario: S,
              figure: `reconcileDay, clean day (${heap})`,
              value: `${ms(run.ms)}, ${rate((run.summary!.clicks * 1000) / run.ms)} clicks/s, ${run.summary!.mismatches} mismatches`,
              note: `peak RSS ${mib(run.peakRss)} (child process, heap limit ${mib(run.heapLimit)}); ${int(run.summary!.clicks)} clicks, ${int(run.summary!.checked_minutes)} ad-minutes compared, ${int(run.summary!.pending_minutes)} pending; phases ${run.phases.map((p) => `${p.phase} @${ms(p.atMs)}`).join(', ')}`,
            }
          : { scenario: S, figure: `reconcileDay, clean day (${heap})`, value: 'FAILED', note: `after ${ms(run.ms)}, peak RSS seen ${mib(run.peakRss)}: ${run.error ?? ''}`.slice(0, 600) },
      );
    }
    const inj = r.reconcileInjected;
    if (inj) {
      rows.push({
        scenario: S,
        figure: `reconcileDay, ${r.injected.length} injected mismatches`,
        value: inj.ok ? `found ${inj.summary!.mismatches}; exactly those: ${r.foundExactly}` : 'FAILED',
        note: inj.ok
          ? `${ms(inj.ms)}, peak RSS ${mib(inj.peakRss)}; injected ${r.injected.map((m) => `${m.ad_id} ${m.minute.slice(11, 16)} shard ${m.shard} ${m.how}`).join('; ')}`
          : (inj.error ?? ''),
      });
    }
    const p = projection(r)!;
    rows.push({
      scenario: S,
      figure: 'Parquet bytes: raw per click; per ad-minute',
      value: `${p.rawBytesPerClick.toFixed(1)} B; raw ${(day.parquetBytes / day.adMinutes).toFixed(1)} B, counts ${p.aggregateBytesPerAdMinute.toFixed(1)} B`,
      note: `raw: ${mib(day.parquetBytes)} in ${day.files} zstd files (16-hex click ids); counts: the day's (minute, ad_id, clicks) as one zstd Parquet file ${mib(day.aggregateBytes)}, what the aggregate archive holds per ad-minute of totals`,
    });
    rows.push({
      scenario: S,
      figure: 'Redis bytes per ad-minute (count hashes)',
      value: `${p.redisBytesPerAdMinute.toFixed(1)} B`,
      note: `INFO used_memory ${mib(day.redisBefore)} → ${mib(day.redisAfter)} for ${int(day.adMinutes)} fields in ${int(day.hashes)} hashes (${day.hashEncoding}); totals only: dimension hashes and their index come on top`,
    });
  }
  rows.push({ scenario: S, figure: 'recompute of one day', value: 'see recompute.md', note: 'its own scenario: `npm run bench -- recompute` (the same generated day)' });
  return rows;
}

/** Writes history.md and history.json into `dir`; returns their paths. */
export async function writeHistoryReport(dir: string, r: HistoryResult, meta: { command: string; versions: Record<string, string>; shards: number; quick: boolean; dayClicks: number; date?: string; loadavg?: number[] }): Promise<string[]> {
  const date = meta.date ?? new Date().toISOString();
  const loadavg = meta.loadavg ?? (meta.date ? undefined : os.loadavg());
  await mkdir(dir, { recursive: true });
  const rows = historyRows(r);
  const p = projection(r);
  const md = [
    '# History: the raw archiver next to the pipeline, reconciliation of a generated day, storage',
    '',
    `- command: \`${meta.command}\` (${meta.quick ? 'quick' : 'full'} mode)`,
    `- date: ${date}; ${meta.shards} shards; versions: ${Object.entries(meta.versions).map(([k, v]) => `${k} ${v}`).join(', ')}`,
    `- load average at the end ${loadavg ? loadavg.map((x) => x.toFixed(2)).join(' ') : 'not recorded (report rebuilt from history.json)'} (2 cores, shared with other work: the ratios measured side by side are the figures to trust)`,
    '',
    markdownTable(rows),
    '',
    ...(p
      ? [
          '## Storage projection',
          '',
          `Assumptions: ${int(p.clicksPerDay)} clicks a day spread evenly over the day's minutes (${int(p.clicksPerDay / 1440)} a minute) over`,
          `${int(p.ads)} ads; ad-minutes per day = 1440 · Σ_k (1 − e^(−n·p_k)) (Poisson per ad-minute), for Zipf(1)`,
          `popularity (the bench workload's) and for uniform popularity (the upper bound: most ads clicked every minute).`,
          'Per-unit bytes as measured on the generated day above: Redis `used_memory` per stored ad-minute (the',
          'totals hash only), Parquet per raw click, Parquet per ad-minute of (minute, ad_id, clicks). Busier',
          'minutes per ad compress better, so per-unit figures at 1 B/day are estimates, not measurements.',
          `Redis: a count hash of more than 128 fields (hash-max-listpack-entries) is a hashtable, ~5× the bytes of a`,
          `listpack; this run's hashes hold ${int(r.day!.adMinutes / r.day!.hashes)} fields on average (${r.day!.hashEncoding}). At 1 B clicks/day a (shard, minute)`,
          'hash holds thousands of ads, so only a hashtable figure (full mode) applies to the projection.',
          '',
          ...projectionTable(p),
          '',
        ]
      : []),
    '## What the figures mean',
    '',
    '- **pipeline events/s, archive off → on**: two fresh services, one after the other, on the same stream of',
    '  the pipeline workload (`bench/lib/workload.ts`); the clock runs from the first publish until every shard',
    '  committed its last message (as in `latest.md`). With the archive on, each shard host also runs an archiver',
    `  (ordered consumer → DuckDB → zstd Parquet every ${HISTORY_FLUSH_MS / 1000} s, fenced Redis step, rename).`,
    '- **archiver clicks/s**: rows archived / (first publish → every `<prefix>:{a-s<n>}:archive` `seq` ≥ the last',
    '  stream sequence of shard n). Includes the wait for the last flush timer.',
    '- **exactly once**: `read_parquet` over every final file: row count = events published (duplicates a client',
    '  sent twice are raw data and stay), no `(subject, seq, pos)` twice, no stray `*.tmp-*` file.',
    '- **one archiver alone**: `Archiver.run` in the bench process over the finished stream (all shard subjects),',
    '  stopped right after its last size-triggered flush: clicks archived / elapsed (as `bench/archiver-throughput.ts`).',
    `- **generated day**: ${int(meta.dayClicks)} original clicks plus 1 % duplicate copies (same click id, a later`,
    '  stream sequence) generated with DuckDB SQL (`bench/lib/history-day.ts`), written straight into the',
    '  archive layout (one file per shard unit and hour, columns = `RAW_COLUMNS`, shard by `shardOf`); the',
    '  counts a shard actor would store (distinct click ids per ad-minute, DuckDB `GROUP BY`) are put in Redis',
    '  with pipelined `HSET` into the count hashes, with the meta and archiver progress hashes.',
    '- **reconcileDay**: `src/runtime/archive/reconcile.ts` (what `adagg reconcile` runs), in a child process',
    '  (`bench/lib/history-reconcile-child.ts`) so its peak RSS (VmHWM) is its own; first with Node\'s default',
    `  heap as the CLI runs, and only if that fails again with --max-old-space-size. It reads the raw files`,
    '  with DuckDB (dedupe by click id, GROUP BY ad-minute) into a temp table, streams the stored hashes into',
    '  another and compares them with a FULL OUTER JOIN in DuckDB. Then 3 stored counts are changed (+1, −5, deleted) and it must report',
    '  exactly those 3 ad-minutes.',
    '- **recompute**: measured by its own scenario on the same generated day (`npm run bench -- recompute`, `recompute.md`).',
    '',
  ].join('\n');
  const files = [path.join(dir, 'history.md'), path.join(dir, 'history.json')];
  await writeFile(files[0]!, md);
  await writeFile(files[1]!, `${JSON.stringify({ ...meta, date, ...(loadavg ? { loadavg } : {}), rows, projection: p, result: r }, null, 2)}\n`);
  return files;
}

// `node --import tsx bench/lib/history-report.ts [dir]`: rebuilds history.md (and the rows of history.json) from history.json, running nothing.
if (process.argv[1] && path.resolve(process.argv[1]) === path.resolve(import.meta.filename)) {
  const dir = path.resolve(process.argv[2] ?? path.join(import.meta.dirname, '../results'));
  const j = JSON.parse(await readFile(path.join(dir, 'history.json'), 'utf8')) as Parameters<typeof writeHistoryReport>[2] & { result: HistoryResult };
  const { result, ...meta } = j;
  await writeHistoryReport(dir, result, { command: meta.command, versions: meta.versions, shards: meta.shards, quick: meta.quick, dayClicks: meta.dayClicks, ...(meta.date ? { date: meta.date } : {}), ...(meta.loadavg ? { loadavg: meta.loadavg } : {}) });
  console.error(`rebuilt ${path.join(dir, 'history.md')}`);
}
