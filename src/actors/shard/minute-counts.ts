import type { Click } from '../../model/click.ts';
import { dimensionValue } from '../../model/click.ts';

import type { FlatCounts } from '../../runtime/shard-store.ts';

export type { FlatCounts };

/**
 * Clicks of one minute: per ad, and per ad × value of each configured dimension.
 * Used for open windows (complete) and for corrections of closed minutes (only the touched fields,
 * holding absolute values loaded from the store plus the late clicks).
 */
export class MinuteCounts {
  readonly totals = new Map<string, number>();
  /** dim → value → ad → count */
  readonly dims = new Map<string, Map<string, Map<string, number>>>();

  add(click: Click, dimensions: readonly string[]): void {
    this.totals.set(click.ad_id, (this.totals.get(click.ad_id) ?? 0) + 1);
    for (const d of dimensions) {
      const v = dimensionValue(click, d);
      if (v === undefined) continue;
      const byAd = this.dimMap(d, v);
      byAd.set(click.ad_id, (byAd.get(click.ad_id) ?? 0) + 1);
    }
  }

  /** Count of an ad, optionally restricted to one dimension value; undefined when the field is not held. */
  get(adId: string, dim?: string, value?: string): number | undefined {
    if (dim === undefined || value === undefined) return this.totals.get(adId);
    return this.dims.get(dim)?.get(value)?.get(adId);
  }

  set(adId: string, n: number, dim?: string, value?: string): void {
    if (dim === undefined || value === undefined) this.totals.set(adId, n);
    else this.dimMap(dim, value).set(adId, n);
  }

  /** The map of ad → count for a filter (totals when no filter). */
  view(dim?: string, value?: string): ReadonlyMap<string, number> | undefined {
    if (dim === undefined || value === undefined) return this.totals;
    return this.dims.get(dim)?.get(value);
  }

  dimMap(dim: string, value: string): Map<string, number> {
    let byValue = this.dims.get(dim);
    if (!byValue) this.dims.set(dim, (byValue = new Map()));
    let byAd = byValue.get(value);
    if (!byAd) byValue.set(value, (byAd = new Map()));
    return byAd;
  }

  /** `[flatTotals, [[dim, value, flat], ...]]` */
  encode(): [FlatCounts, Array<[string, string, FlatCounts]>] {
    const dims: Array<[string, string, FlatCounts]> = [];
    for (const [d, byValue] of this.dims) for (const [v, byAd] of byValue) dims.push([d, v, flatten(byAd)]);
    return [flatten(this.totals), dims];
  }

  /** Rebuilds full minutes from stored count writes (after a restart). */
  static fromWrites(writes: ReadonlyArray<{ minute: number; dim: string | null; value: string | null; counts: FlatCounts }>): Map<number, MinuteCounts> {
    const out = new Map<number, MinuteCounts>();
    for (const w of writes) {
      let mc = out.get(w.minute);
      if (!mc) out.set(w.minute, (mc = new MinuteCounts()));
      unflattenInto(w.counts, w.dim === null || w.value === null ? mc.totals : mc.dimMap(w.dim, w.value));
    }
    return out;
  }

  static decode(enc: unknown): MinuteCounts {
    const mc = new MinuteCounts();
    const [totals, dims] = enc as [FlatCounts, Array<[string, string, FlatCounts]>];
    unflattenInto(totals, mc.totals);
    for (const [d, v, flat] of dims) unflattenInto(flat, mc.dimMap(d, v));
    return mc;
  }
}

export function flatten(m: ReadonlyMap<string, number>): FlatCounts {
  const out: FlatCounts = new Array(m.size * 2);
  let i = 0;
  for (const [k, n] of m) {
    out[i++] = k;
    out[i++] = n;
  }
  return out;
}

function unflattenInto(flat: FlatCounts, into: Map<string, number>): void {
  for (let i = 0; i + 1 < flat.length; i += 2) into.set(flat[i] as string, flat[i + 1] as number);
}
