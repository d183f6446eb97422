/**
 * Scenario `history`, part 2b: times `reconcileDay` on the generated day in a child process
 * (bench/lib/history-reconcile-child.ts) and reads back its report, duration and peak RSS. The
 * child runs with Node's default heap limit, as `adagg reconcile` does; `heapMb` raises it
 * (--max-old-space-size) to measure a day the default cannot hold.
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import type { Mismatch } from '../../src/runtime/archive/reconcile.ts';
import type { ReconcileReport } from '../../src/runtime/archive/reconcile-report.ts';
import type { Ctx } from './context.ts';
import { rssOf } from './service.ts';
import { sleep } from './stats.ts';

export interface ReconcileRun {
  ok: boolean;
  /** Wall time of reconcileDay in the child. */
  ms: number;
  /** VmHWM of the child (or the highest VmRSS the parent saw when it died). */
  peakRss: number;
  heapLimit: number;
  /** --max-old-space-size given, or null (Node's default). */
  heapMb: number | null;
  phases: Array<{ phase: string; atMs: number }>;
  summary?: Omit<ReconcileReport, 'rows'>;
  mismatches?: Mismatch[];
  /** Why it failed (exit code / signal and the end of stderr). */
  error?: string;
}

export interface ReconcileTarget {
  redisUrl: string;
  prefix: string;
  shards: number;
  archiveDir: string;
  day: string;
}

export function reconcileInChild(ctx: Ctx, t: ReconcileTarget, heapMb: number | null, phase: string): Promise<ReconcileRun> {
  return runBenchChild<ReconcileRun>(ctx, { script: 'bench/lib/history-reconcile-child.ts', envName: 'HISTORY_RECONCILE', input: t, heapMb, phase, linePrefix: 'reconcile child:' });
}

/** What a bench child failed with: the fields every child result has. */
export interface ChildRun {
  ok: boolean;
  ms: number;
  peakRss: number;
  heapLimit: number;
  heapMb: number | null;
  phases: Array<{ phase: string; atMs: number }>;
  error?: string;
}

/**
 * Runs a bench child script (`node --import tsx <script>`, input as JSON in env `envName`), shows
 * its `linePrefix` progress lines and its RSS while it runs, and returns the JSON of its last
 * stdout line, or on failure the exit status, the end of stderr and the highest RSS seen.
 */
export async function runBenchChild<T extends ChildRun>(
  ctx: Ctx,
  c: { script: string; envName: string; input: unknown; heapMb: number | null; phase: string; linePrefix: string },
): Promise<T> {
  ctx.progress.set({ phase: c.phase, sent: 0, done: undefined, note: c.heapMb ? `heap ${c.heapMb} MiB` : 'default heap' });
  const root = path.resolve(import.meta.dirname, '../..');
  const args = [...(c.heapMb ? [`--max-old-space-size=${c.heapMb}`] : []), '--import', 'tsx', c.script];
  const env: Record<string, string | undefined> = { ...process.env, [c.envName]: JSON.stringify(c.input) };
  delete env.NODE_OPTIONS;
  const child = spawn(process.execPath, args, { cwd: root, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => {
    err = (err + d.toString()).slice(-8000);
    for (const line of d.toString().split('\n')) if (line.startsWith(c.linePrefix)) ctx.progress.log(`  ${line}`);
  });
  const t0 = Date.now();
  let seen = 0;
  let exited = false;
  const done = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => child.once('exit', (code, signal) => r({ code, signal })));
  void done.then(() => (exited = true));
  while (!exited) {
    const rss = rssOf(child.pid ?? -1);
    if (Number.isFinite(rss) && rss > seen) seen = rss;
    ctx.progress.set({ note: `${Math.round((Date.now() - t0) / 1000)} s, RSS ${Math.round(rss / 2 ** 20)} MiB (peak seen ${Math.round(seen / 2 ** 20)} MiB)` });
    await Promise.race([done, sleep(200)]);
  }
  const { code, signal } = await done;
  const line = out.trim().split('\n').pop() ?? '';
  if (code === 0 && line.startsWith('{')) return { ...(JSON.parse(line) as Omit<T, 'heapMb'>), heapMb: c.heapMb } as T;
  const failed: ChildRun = {
    ok: false,
    ms: Date.now() - t0,
    peakRss: seen,
    heapLimit: NaN,
    heapMb: c.heapMb,
    phases: [],
    error: `exit ${code ?? signal}: ${err.split('\n').filter(Boolean).slice(-6).join(' | ').slice(-1500)}`,
  };
  return failed as T;
}
