/**
 * CPU accounting over an interval: cores used by named processes (from /proc/<pid>/stat), by this
 * process, and by everything else on the machine (from /proc/stat), so a noisy neighbour shows up.
 */
import { readFileSync } from 'node:fs';
import { cpuMsOf } from './service.ts';

/** Busy CPU time of the whole machine in ms (all cores), from /proc/stat. */
export function machineBusyMs(): number {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n')[0]!;
    const f = line.trim().split(/\s+/).slice(1).map(Number);
    // user nice system idle iowait irq softirq steal
    const busy = f[0]! + f[1]! + f[2]! + f[5]! + f[6]! + f[7]!;
    return (busy * 1000) / 100;
  } catch {
    return NaN;
  }
}

export interface CpuReading {
  /** Cores used per named process (and 'bench' = this process). */
  cores: Record<string, number>;
  /** Cores used by every other process on the machine during the interval. */
  others: number;
  machine: number;
}

export class CpuMeter {
  private readonly t0 = Date.now();
  private readonly busy0 = machineBusyMs();
  private readonly self0 = process.cpuUsage();
  private readonly p0: Record<string, number>;
  constructor(private readonly pids: Record<string, number>) {
    this.p0 = Object.fromEntries(Object.entries(pids).map(([k, pid]) => [k, cpuMsOf(pid)]));
  }
  read(): CpuReading {
    const wall = Date.now() - this.t0;
    const cores: Record<string, number> = {};
    for (const [k, pid] of Object.entries(this.pids)) cores[k] = (cpuMsOf(pid) - this.p0[k]!) / wall;
    const u = process.cpuUsage(this.self0);
    cores.bench = (u.user + u.system) / 1000 / wall;
    const machine = (machineBusyMs() - this.busy0) / wall;
    const ours = Object.values(cores).reduce((a, b) => a + b, 0);
    return { cores, others: Math.max(0, machine - ours), machine };
  }
}
