/** The chaos suite's output: progress lines, one line per round, and the summary table. */
import { FAULT_KINDS, type FaultKind } from './faults.ts';

export interface RoundResult {
  round: number;
  seed: number;
  faults: string[];
  kinds: FaultKind[];
  /** Lines acknowledged in this round (duplicates and re-sends included). */
  lines: number;
  checked: number;
  lost: number;
  doubled: number;
  convergeMs: number;
  /** Processes that exited on their own (not by a fault) and were restarted. */
  exits: number;
  ok: boolean;
  why: string;
}

const t0 = Date.now();
const stamp = (): string => `[${((Date.now() - t0) / 1000).toFixed(1).padStart(6)}s]`;

/** A progress line, time-stamped from the start of the run. */
export function say(s: string): void {
  process.stdout.write(`${stamp()} ${s}\n`);
}

export function roundLine(r: RoundResult, rounds: number): string {
  return (
    `round ${r.round}/${rounds} seed ${r.seed}: ${r.ok ? 'OK' : 'FAILED'}  faults [${r.faults.join(', ')}]  ` +
    `+${r.lines} lines  checked ${r.checked} clicks  lost ${r.lost}  doubled ${r.doubled}  converged in ${(r.convergeMs / 1000).toFixed(1)}s` +
    (r.exits ? `  EXITS ${r.exits}` : '') +
    (r.ok ? '' : `\n  why: ${r.why}`)
  );
}

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((c, i) => c.padEnd(widths[i]!)).join('  ')).join('\n');
}

/** The end-of-run summary: totals and faults by kind. */
export function summary(results: RoundResult[], wallMs: number): string {
  const last = results.at(-1);
  const byKind = new Map<FaultKind, number>(FAULT_KINDS.map((k) => [k, 0]));
  for (const r of results) for (const k of r.kinds) byKind.set(k, byKind.get(k)! + 1);
  const failed = results.filter((r) => !r.ok);
  const conv = results.map((r) => r.convergeMs).sort((a, b) => a - b);
  const pct = (p: number): string => (conv.length ? `${(conv[Math.min(conv.length - 1, Math.floor(p * conv.length))]! / 1000).toFixed(1)}s` : '-');
  const totals = table([
    ['rounds', 'failed', 'faults', 'clicks checked', 'lines acked', 'lost', 'doubled', 'exits', 'converge p50', 'converge max', 'wall time'],
    [
      String(results.length),
      String(failed.length),
      String(results.reduce((n, r) => n + r.kinds.length, 0)),
      String(last?.checked ?? 0),
      String(results.reduce((n, r) => n + r.lines, 0)),
      // Every round checks the whole run so far: the worst round is the figure.
      String(Math.max(0, ...results.map((r) => r.lost))),
      String(Math.max(0, ...results.map((r) => r.doubled))),
      String(results.reduce((n, r) => n + r.exits, 0)),
      pct(0.5),
      pct(1),
      `${(wallMs / 60_000).toFixed(1)} min`,
    ],
  ]);
  const kinds = table([[...byKind.keys()], [...byKind.values()].map(String)]);
  const lines = ['', '=== chaos summary ===', totals, '', 'faults by kind:', kinds];
  const exited = results.filter((r) => r.exits > 0);
  if (exited.length) {
    lines.push('', `rounds where a process exited on its own and was restarted (see their EXIT lines): ${exited.map((r) => `${r.round} (seed ${r.seed})`).join(', ')}`);
  }
  if (failed.length) {
    lines.push('', 'failed rounds (replay one with: npm run chaos -- --seed <seed> --rounds 1):');
    for (const r of failed) lines.push(`  round ${r.round} seed ${r.seed}: ${r.why}`);
  }
  return lines.join('\n');
}
