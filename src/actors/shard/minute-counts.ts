import type { Click } from '../../model/click.ts';
import { dimensionValue } from '../../model/click.ts';
import type { CountWrite, FlatCounts } from '../../model/shard-state.ts';

type ByAd = Map<string, number>;

/** The counts of one dimension value, and (tracked windows) the ads whose count changed. */
interface ValueCounts {
  readonly dim: string;
  readonly value: string;
  readonly byAd: ByAd;
  readonly dirty: Set<string> | undefined;
}

/**
 * Clicks of one minute: per ad, and per ad × value of each configured dimension.
 * Used for open windows (complete), for corrections of closed minutes (only the touched fields,
 * holding absolute values loaded from the store plus the late clicks) and for the rankings' copies.
 *
 * A window created with `tracked` remembers which fields changed since the last `clearDirty()`, so
 * a commit writes those fields only: the cost of persisting an open minute follows the clicks it
 * received since the previous commit, not the number of ads it holds.
 */
export class MinuteCounts {
  readonly #totals: ByAd = new Map();
  /** dim → value → ad → count */
  readonly #dims = new Map<string, Map<string, ValueCounts>>();
  readonly #tracked: boolean;
  readonly #dirtyTotals: Set<string> | undefined;
  /** Dimension values with changed ads (so a commit never walks every value of a big dimension). */
  #dirtyValues: ValueCounts[] = [];
  /** The per-value maps of the dimensions `add` was last called with, in their order (fewer lookups per click). */
  #dimList: Array<Map<string, ValueCounts>> = [];
  #dimListFor: readonly string[] | undefined;

  constructor(tracked = false) {
    this.#tracked = tracked;
    if (tracked) this.#dirtyTotals = new Set();
  }

  get size(): number {
    return this.#totals.size;
  }

  add(click: Click, dimensions: readonly string[]): void {
    const ad = click.ad_id;
    const n = this.#totals.get(ad);
    this.#totals.set(ad, n === undefined ? 1 : n + 1);
    this.#dirtyTotals?.add(ad);
    if (dimensions.length === 0) return;
    if (dimensions !== this.#dimListFor) {
      this.#dimListFor = dimensions;
      this.#dimList = dimensions.map((d) => this.#byValue(d));
    }
    for (let i = 0; i < dimensions.length; i++) {
      const v = dimensionValue(click, dimensions[i]!);
      if (v === undefined) continue;
      const byValue = this.#dimList[i]!;
      let vc = byValue.get(v);
      if (!vc) byValue.set(v, (vc = this.#valueCounts(dimensions[i]!, v)));
      const k = vc.byAd.get(ad);
      vc.byAd.set(ad, k === undefined ? 1 : k + 1);
      if (vc.dirty) this.#markDirty(vc, ad);
    }
  }

  #markDirty(vc: ValueCounts, ad: string): void {
    if (vc.dirty!.size === 0) this.#dirtyValues.push(vc);
    vc.dirty!.add(ad);
  }

  /** Count of an ad, optionally restricted to one dimension value; undefined when the field is not held. */
  get(adId: string, dim?: string, value?: string): number | undefined {
    if (dim === undefined || value === undefined) return this.#totals.get(adId);
    return this.#dims.get(dim)?.get(value)?.byAd.get(adId);
  }

  set(adId: string, n: number, dim?: string, value?: string): void {
    if (dim === undefined || value === undefined) {
      this.#totals.set(adId, n);
      this.#dirtyTotals?.add(adId);
      return;
    }
    const vc = this.#valueOf(dim, value);
    vc.byAd.set(adId, n);
    if (vc.dirty) this.#markDirty(vc, adId);
  }

  /** The map of ad → count for a filter (totals when no filter). */
  view(dim?: string, value?: string): ReadonlyMap<string, number> | undefined {
    if (dim === undefined || value === undefined) return this.#totals;
    return this.#dims.get(dim)?.get(value)?.byAd;
  }

  #byValue(dim: string): Map<string, ValueCounts> {
    let byValue = this.#dims.get(dim);
    if (!byValue) this.#dims.set(dim, (byValue = new Map()));
    return byValue;
  }

  #valueCounts(dim: string, value: string): ValueCounts {
    return { dim, value, byAd: new Map(), dirty: this.#tracked ? new Set() : undefined };
  }

  #valueOf(dim: string, value: string): ValueCounts {
    const byValue = this.#byValue(dim);
    let vc = byValue.get(value);
    if (!vc) byValue.set(value, (vc = this.#valueCounts(dim, value)));
    return vc;
  }

  /** Every field, as count writes of `minute` (appended to `out`, never spread: minutes can be huge). */
  writes(minute: number, out: CountWrite[] = []): CountWrite[] {
    if (this.#totals.size > 0) out.push({ minute, dim: null, value: null, counts: flatten(this.#totals) });
    for (const [dim, byValue] of this.#dims) {
      for (const [value, vc] of byValue) if (vc.byAd.size > 0) out.push({ minute, dim, value, counts: flatten(vc.byAd) });
    }
    return out;
  }

  /** The fields changed since the last `clearDirty()` (all fields of an untracked window). */
  dirtyWrites(minute: number, out: CountWrite[] = []): CountWrite[] {
    const dt = this.#dirtyTotals;
    if (!dt) return this.writes(minute, out);
    if (dt.size > 0) out.push({ minute, dim: null, value: null, counts: pick(this.#totals, dt) });
    for (const vc of this.#dirtyValues) out.push({ minute, dim: vc.dim, value: vc.value, counts: pick(vc.byAd, vc.dirty!) });
    return out;
  }

  /** The changed fields were persisted. */
  clearDirty(): void {
    this.#dirtyTotals?.clear();
    for (const vc of this.#dirtyValues) vc.dirty!.clear();
    this.#dirtyValues = [];
  }

  /** Marks every field changed (a window restored from a legacy snapshot must be written out once). */
  markAllDirty(): void {
    if (!this.#dirtyTotals) return;
    for (const ad of this.#totals.keys()) this.#dirtyTotals.add(ad);
    for (const byValue of this.#dims.values()) for (const vc of byValue.values()) for (const ad of vc.byAd.keys()) this.#markDirty(vc, ad);
  }

  /** Adds every count of `other` into this one (merging a warm-up's loaded minute with later late clicks). */
  addFrom(other: MinuteCounts): void {
    for (const [ad, n] of other.#totals) this.set(ad, (this.#totals.get(ad) ?? 0) + n);
    for (const [dim, byValue] of other.#dims) {
      for (const [value, vc] of byValue) for (const [ad, n] of vc.byAd) this.set(ad, (this.get(ad, dim, value) ?? 0) + n, dim, value);
    }
  }

  /** Rebuilds whole minutes from stored count writes (after a restart). */
  static fromWrites(writes: Iterable<CountWrite>, tracked = false): Map<number, MinuteCounts> {
    const out = new Map<number, MinuteCounts>();
    for (const w of writes) {
      let mc = out.get(w.minute);
      if (!mc) out.set(w.minute, (mc = new MinuteCounts(tracked)));
      unflattenInto(w.counts, w.dim === null || w.value === null ? mc.#totals : mc.#valueOf(w.dim, w.value).byAd);
    }
    return out;
  }

  /** Decodes the `[flatTotals, [[dim, value, flat], ...]]` form of legacy (v1/v2) snapshots. */
  static decode(enc: unknown, tracked = false): MinuteCounts {
    const mc = new MinuteCounts(tracked);
    const [totals, dims] = enc as [FlatCounts, Array<[string, string, FlatCounts]>];
    unflattenInto(totals, mc.#totals);
    for (const [d, v, flat] of dims) unflattenInto(flat, mc.#valueOf(d, v).byAd);
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

function pick(m: ReadonlyMap<string, number>, keys: ReadonlySet<string>): FlatCounts {
  const out: FlatCounts = new Array(keys.size * 2);
  let i = 0;
  for (const k of keys) {
    out[i++] = k;
    out[i++] = m.get(k) ?? 0;
  }
  return out;
}

function unflattenInto(flat: FlatCounts, into: ByAd): void {
  for (let i = 0; i + 1 < flat.length; i += 2) into.set(flat[i] as string, flat[i + 1] as number);
}
