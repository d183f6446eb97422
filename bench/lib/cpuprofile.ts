/** Summarises a V8 .cpuprofile: self time per function (name + file:line), top N. */
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';

interface CpuNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
}
interface CpuProfile {
  nodes: CpuNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

export interface SelfTime {
  fn: string;
  where: string;
  ms: number;
  /** Share of busy time (all samples except '(idle)'). */
  pct: number;
}

export interface ProfileSummary {
  file: string;
  totalMs: number;
  idleMs: number;
  rows: SelfTime[];
  /** Self time summed per source file (package name for node_modules). */
  byFile: Array<{ where: string; ms: number; pct: number }>;
}

export async function summariseProfiles(dir: string, top = 20): Promise<ProfileSummary | null> {
  const files = (await readdir(dir).catch(() => [] as string[])).filter((f) => f.endsWith('.cpuprofile'));
  if (files.length === 0) return null;
  // The service is one process: take the largest profile.
  let best = '';
  let bestSize = -1;
  for (const f of files) {
    const size = (await readFile(path.join(dir, f))).byteLength;
    if (size > bestSize) {
      best = f;
      bestSize = size;
    }
  }
  const prof = JSON.parse(await readFile(path.join(dir, best), 'utf8')) as CpuProfile;
  const byId = new Map(prof.nodes.map((n) => [n.id, n]));
  const self = new Map<string, number>();
  const byFile = new Map<string, number>();
  let total = 0;
  let idle = 0;
  for (let i = 0; i < prof.samples.length; i++) {
    const node = byId.get(prof.samples[i]!);
    const dt = (prof.timeDeltas[i] ?? 0) / 1000;
    total += dt;
    if (!node) continue;
    const cf = node.callFrame;
    const root = path.resolve(import.meta.dirname, '../..');
    const url = cf.url.replace(/^file:\/\//, '').replace(root + '/', '');
    const key = `${cf.functionName || '(anonymous)'}\u0000${url ? `${url}:${cf.lineNumber + 1}` : ''}`;
    self.set(key, (self.get(key) ?? 0) + dt);
    if (cf.functionName === '(idle)') idle += dt;
    const nm = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
    const fileKey = nm ? `node_modules/${nm[1]}` : url || `(${cf.functionName || 'native'})`;
    byFile.set(fileKey, (byFile.get(fileKey) ?? 0) + dt);
  }
  const busy = Math.max(1, total - idle);
  const rows = [...self.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, top)
    .map(([k, v]) => {
      const [fn, where] = k.split('\u0000') as [string, string];
      return { fn, where, ms: v, pct: (100 * v) / busy };
    });
  const fileRows = [...byFile.entries()]
    .filter(([k]) => k !== '((idle))')
    .sort((a, b) => b[1] - a[1])
    .slice(0, 12)
    .map(([where, ms]) => ({ where, ms, pct: (100 * ms) / busy }));
  return { file: path.join(dir, best), totalMs: total, idleMs: idle, rows: rows.filter((r) => r.fn !== '(idle)'), byFile: fileRows };
}
