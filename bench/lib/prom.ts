/**
 * One read of a service's Prometheus text exposition (`GET /metrics`), parsed once so a sample
 * can ask for several families: sums and maxima over labels, and histograms (_sum, _count and
 * cumulative buckets). A family the service does not export reads as null, so the same bench
 * works against older and newer versions of the service.
 */

export interface PromSeries {
  labels: Record<string, string>;
  value: number;
}

export interface PromHistogram {
  sum: number;
  count: number;
  /** Cumulative counts by upper bound, ascending; the last bound is +Inf. */
  buckets: Array<{ le: number; count: number }>;
}

export class PromText {
  private readonly series = new Map<string, PromSeries[]>();

  constructor(text: string) {
    for (const line of text.split('\n')) {
      if (line === '' || line.startsWith('#')) continue;
      const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
      if (!m) continue;
      const labels: Record<string, string> = {};
      for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!;
      const value = m[3] === '+Inf' ? Infinity : m[3] === '-Inf' ? -Infinity : Number(m[3]);
      const list = this.series.get(m[1]!) ?? [];
      list.push({ labels, value });
      this.series.set(m[1]!, list);
    }
  }

  has(name: string): boolean {
    return this.series.has(name);
  }

  /** Every series of one metric name, or [] if absent. */
  get(name: string): readonly PromSeries[] {
    return this.series.get(name) ?? [];
  }

  /** Sum over all label sets; null when the metric is absent. */
  sum(name: string): number | null {
    const s = this.series.get(name);
    return s ? s.reduce((a, x) => a + x.value, 0) : null;
  }

  /** Largest value over all label sets; null when the metric is absent. */
  max(name: string): number | null {
    const s = this.series.get(name);
    return s && s.length ? Math.max(...s.map((x) => x.value)) : null;
  }

  /** A histogram summed over its label sets (other than `le`); null when absent. */
  histogram(name: string): PromHistogram | null {
    const sum = this.sum(`${name}_sum`);
    const count = this.sum(`${name}_count`);
    if (sum === null || count === null) return null;
    const byLe = new Map<number, number>();
    for (const b of this.get(`${name}_bucket`)) {
      const le = b.labels.le === '+Inf' ? Infinity : Number(b.labels.le);
      byLe.set(le, (byLe.get(le) ?? 0) + b.value);
    }
    const buckets = [...byLe].map(([le, c]) => ({ le, count: c })).sort((a, b) => a.le - b.le);
    return { sum, count, buckets };
  }
}

/**
 * The q-quantile (0..1) of the observations made between two readings of a histogram, by linear
 * interpolation inside the bucket (as Prometheus' histogram_quantile). `capped` is true when it
 * falls in the +Inf bucket: the value is then the largest finite bound, a lower bound.
 */
export function quantileBetween(prev: PromHistogram, cur: PromHistogram, q: number): { value: number; capped: boolean } | null {
  const n = cur.count - prev.count;
  if (!(n > 0)) return null;
  const before = new Map(prev.buckets.map((b) => [b.le, b.count]));
  const rank = q * n;
  let lowerLe = 0;
  let lowerCount = 0;
  for (const b of cur.buckets) {
    const c = b.count - (before.get(b.le) ?? 0);
    if (c >= rank) {
      if (b.le === Infinity) return { value: lowerLe, capped: true };
      const inBucket = c - lowerCount;
      const frac = inBucket > 0 ? (rank - lowerCount) / inBucket : 1;
      return { value: lowerLe + (b.le - lowerLe) * frac, capped: false };
    }
    lowerLe = b.le;
    lowerCount = c;
  }
  return { value: lowerLe, capped: true };
}

/** GET a URL with a time bound; the body as text, or an Error (never throws, never hangs). */
export async function getText(url: string, timeoutMs: number): Promise<string | Error> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
    const text = await res.text();
    return res.ok ? text : new Error(`${url}: HTTP ${res.status}`);
  } catch (err) {
    return err instanceof Error ? err : new Error(String(err));
  }
}

/** Resolves to `p`'s value, or to an Error after `ms` (the promise is left to settle alone). */
export async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T | Error> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<Error>((r) => {
    timer = setTimeout(() => r(new Error(`${what}: no answer in ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([p.catch((err: unknown) => (err instanceof Error ? err : new Error(String(err)))), timeout]);
  } finally {
    clearTimeout(timer);
  }
}
