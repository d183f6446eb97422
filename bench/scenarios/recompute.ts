/**
 * Scenario `recompute` (issue 10): Kappa recompute of one generated day, timed.
 * The day of the `history` scenario (≥ 20 M clicks full, 2 M quick; bench/lib/history-day.ts) is
 * written into the archive layout with its true counts in Redis; 3 stored counts are then broken
 * (+1, −5, deleted). `recompute` (what `adagg recompute` runs: the archive re-aggregated by private
 * shard actors — the live dedupe and window code — and compared with every stored field) runs in a
 * child process (bench/lib/history-recompute-child.ts) and must find exactly those 3 fields;
 * `applyRecompute` writes them back (one Lua step per shard, audit record) and the child reads them
 * back. Writes bench/results/recompute.md and recompute.json.
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { freshPrefix, type Ctx, type Row } from '../lib/context.ts';
import { generateDay, injectMismatches, type GeneratedDay, type InjectedMismatch } from '../lib/history-day.ts';
import { runBenchChild, type ChildRun } from '../lib/history-reconcile.ts';
import { markdownTable } from '../lib/report.ts';
import { int, mib, ms, rate } from '../lib/stats.ts';
import { BIG_HEAP_MB, HISTORY_DAY } from './history.ts';

const DAY_MS = 86_400_000;
/** The live actors' dedupe reach with the default options (horizon 1 h + max future + lateness + idle). */
const MARGIN_MS = 3_600_000 + 300_000 + 5_000 + 10_000;

export interface RecomputeChildRun extends ChildRun {
  applyMs?: number;
  clicks?: number;
  rawFiles?: number;
  summary?: { fields: number; minutes_changed: number; ad_minutes_changed: number; clicks_added: number; clicks_removed: number };
  changes?: Array<{ shard: number; ad_id: string; minute: number; dim: string | null; value: string | null; old: number; new: number }>;
  applied?: number;
  auditId?: string | null;
  readBack?: Array<{ ad_id: string; minute: number; want: number; stored: number }>;
}

export interface RecomputeResult {
  day?: GeneratedDay;
  injected: InjectedMismatch[];
  run?: RecomputeChildRun;
  /** The run found exactly the injected fields, with the true values, and the apply restored them. */
  foundExactly?: boolean;
  restored?: boolean;
}

export async function runRecompute(ctx: Ctx): Promise<RecomputeResult> {
  const { cfg, servers } = ctx;
  const result: RecomputeResult = { injected: [] };
  const root = await mkdtemp(path.join(os.tmpdir(), 'adagg-bench-recompute-'));
  const prefix = freshPrefix('rc');
  try {
    const day = await generateDay(ctx, { clicks: cfg.historyDayClicks, ads: cfg.historyAds, dupFraction: 0.01, day: HISTORY_DAY, prefix, shards: cfg.shards, root });
    result.day = day;
    result.injected.push(...(await injectMismatches(servers.rd, prefix, day)));
    const fromMs = Date.parse(`${HISTORY_DAY}T00:00:00.000Z`);
    const input = { redisUrl: servers.redisUrl, prefix, shards: cfg.shards, archiveDir: root, fromMs, toMs: fromMs + DAY_MS, marginMs: MARGIN_MS };
    // The day is held whole by the private actors (all its click ids and counts): a big heap.
    const run = await runBenchChild<RecomputeChildRun>(ctx, {
      script: 'bench/lib/history-recompute-child.ts',
      envName: 'HISTORY_RECOMPUTE',
      input,
      heapMb: BIG_HEAP_MB,
      phase: `recompute: one day of ${int(day.rows)} clicks`,
      linePrefix: 'recompute child:',
    });
    result.run = run;
    if (run.ok) {
      const want = new Set(result.injected.map((m) => `${m.ad_id}@${Date.parse(m.minute) / 60_000}@${m.stored}@${m.archive}`));
      const got = new Set((run.changes ?? []).map((c) => `${c.ad_id}@${c.minute}@${c.old}@${c.new}`));
      result.foundExactly = run.summary?.fields === result.injected.length && [...want].every((k) => got.has(k));
      result.restored = (run.readBack ?? []).length === result.injected.length && (run.readBack ?? []).every((r) => r.stored === r.want);
      ctx.progress.log(
        `recompute: ${ms(run.ms)} for ${int(run.clicks ?? 0)} clicks (${rate(((run.clicks ?? 0) * 1000) / run.ms)} clicks/s), peak RSS ${mib(run.peakRss)}; ` +
          `${run.summary?.fields} fields differ, exactly the injected: ${result.foundExactly}; apply ${ms(run.applyMs ?? 0)}, restored: ${result.restored}`,
      );
    } else ctx.progress.log(`recompute FAILED after ${ms(run.ms)}, peak RSS ${mib(run.peakRss)}: ${run.error}`);
  } finally {
    await rm(root, { recursive: true, force: true });
    await servers.rd.flushall();
  }
  return result;
}

/** The scenario's rows. */
export function recomputeRows(r: RecomputeResult): Row[] {
  const S = 'recompute';
  const rows: Row[] = [];
  const day = r.day;
  if (day) rows.push({ scenario: S, figure: 'generated day', value: `${int(day.rows)} clicks`, note: `${int(day.distinct)} distinct over ${int(day.adsTouched)} ads, ${int(day.adMinutes)} ad-minutes, ${day.files} Parquet files` });
  const run = r.run;
  if (!run) return rows;
  if (!run.ok) {
    rows.push({ scenario: S, figure: 'recompute of one day', value: 'FAILED', note: run.error ?? '' });
    return rows;
  }
  rows.push({
    scenario: S,
    figure: 'recompute of one day (dry run: re-aggregate + compare)',
    value: ms(run.ms),
    note: `${int(run.clicks ?? 0)} clicks from ${run.rawFiles} files (${rate(((run.clicks ?? 0) * 1000) / run.ms)} clicks/s), every stored field of ${int(day?.adMinutes ?? 0)} ad-minutes compared; peak RSS ${mib(run.peakRss)} (heap limit ${mib(run.heapLimit)})`,
  });
  rows.push({
    scenario: S,
    figure: `fields found changed (${r.injected.length} injected)`,
    value: `${run.summary?.fields}; exactly those: ${r.foundExactly}`,
    note: r.injected.map((m) => `${m.ad_id} ${m.minute.slice(11, 16)} ${m.how}`).join('; '),
  });
  rows.push({ scenario: S, figure: 'apply (one Lua step per shard, audit record)', value: ms(run.applyMs ?? 0), note: `${run.applied} fields written, read back equal to the recomputed values: ${r.restored}; audit ${run.auditId}` });
  rows.push({ scenario: S, figure: 'phases (ms from start)', value: run.phases.map((p) => `${p.phase} ${p.atMs}`).join(', ') });
  return rows;
}

/** Writes recompute.md and recompute.json into `dir`; returns their paths. */
export async function writeRecomputeReport(dir: string, r: RecomputeResult, meta: { command: string; versions: Record<string, string>; shards: number; quick: boolean }): Promise<string[]> {
  await mkdir(dir, { recursive: true });
  const rows = recomputeRows(r);
  const md = [
    '# Recompute of one generated day',
    '',
    `- command: \`${meta.command}\` (${meta.quick ? 'quick' : 'full'} mode)`,
    `- date: ${new Date().toISOString()}; ${meta.shards} shards; versions: ${Object.entries(meta.versions).map(([k, v]) => `${k} ${v}`).join(', ')}`,
    `- load average at the end ${os.loadavg().map((x) => x.toFixed(2)).join(' ')} (2 cores, shared with other work)`,
    '',
    markdownTable(rows),
    '',
    '## What the figures mean',
    '',
    '- **generated day**: as in `history.md` (`bench/lib/history-day.ts`): original clicks plus 1 % duplicate copies, written',
    '  into the archive layout, the true distinct counts per ad-minute stored in Redis (totals). Then 3 stored counts are',
    '  broken: +1, −5, deleted.',
    '- **recompute**: `src/runtime/archive/recompute.ts` in a child process (`bench/lib/history-recompute-child.ts`, heap',
    `  ${BIG_HEAP_MB} MiB): DuckDB streams the day's rows (and those of the dedupe margin around it) in stream order into`,
    '  private shard actors (the live dedupe and window code, retention long enough that no id expires), then every',
    '  stored field of the range is read and compared. It holds the whole range in memory; peak RSS is its VmHWM.',
    '- **apply**: `applyRecompute` (what `--apply` runs) writes the changed fields of sealed minutes (one Lua step per shard',
    '  that checks the old values) and appends the audit record; the child then reads the fields back.',
    '',
  ].join('\n');
  const files = [path.join(dir, 'recompute.md'), path.join(dir, 'recompute.json')];
  await writeFile(files[0]!, md);
  await writeFile(files[1]!, `${JSON.stringify({ ...meta, rows, result: r }, null, 2)}\n`);
  return files;
}
