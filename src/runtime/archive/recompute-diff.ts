/**
 * The comparison step of recompute (src/runtime/archive/recompute.ts), pure: every count field of
 * the recomputed truth against the stored one, and the summary an operator reads (minutes changed,
 * clicks added and removed on the totals, the ads that changed most). A field is one value of one
 * count hash: (shard, minute, dim, value) → ad_id → count; a missing field counts as 0.
 */
import { INVALID_DIM } from '../../model/risk-fields.ts';

/** One count field: the ad's total in a minute (dim/value null), or one dimension value's count. */
export interface FieldRef {
  shard: number;
  /** Minute index (epoch ms / 60 000). */
  minute: number;
  /** null: the ad's total; otherwise a dimension (or an invalid-click pseudo dimension, risk-fields.ts). */
  dim: string | null;
  value: string | null;
  ad_id: string;
}

/** A field whose stored value (`old`) differs from the recomputed one (`new`). */
export interface FieldChange extends FieldRef {
  old: number;
  new: number;
}

/** Values of fields, keyed by {@link fieldKey}. */
export type FieldValues = Map<string, number>;

/** The map key of a field (JSON, so no separator can collide with a value). */
export function fieldKey(f: FieldRef): string {
  return JSON.stringify([f.shard, f.minute, f.dim, f.value, f.ad_id]);
}

/** The field a {@link fieldKey} names. */
export function fieldOf(key: string): FieldRef {
  const [shard, minute, dim, value, ad_id] = JSON.parse(key) as [number, number, string | null, string | null, string];
  return { shard, minute, dim, value, ad_id };
}

/** Every field whose value differs between `stored` and `truth` (missing = 0), ordered by shard, minute, ad, dim, value. */
export function diffFields(stored: FieldValues, truth: FieldValues): FieldChange[] {
  const out: FieldChange[] = [];
  const keys = new Set([...stored.keys(), ...truth.keys()]);
  for (const k of keys) {
    const old = stored.get(k) ?? 0;
    const now = truth.get(k) ?? 0;
    if (old !== now) out.push({ ...fieldOf(k), old, new: now });
  }
  return out.sort(compareFields);
}

function compareFields(a: FieldRef, b: FieldRef): number {
  return (
    a.shard - b.shard ||
    a.minute - b.minute ||
    (a.ad_id < b.ad_id ? -1 : a.ad_id > b.ad_id ? 1 : 0) ||
    String(a.dim ?? '').localeCompare(String(b.dim ?? '')) ||
    String(a.value ?? '').localeCompare(String(b.value ?? ''))
  );
}

/** Whether a field counts clicks of the ad as a whole: its total, or an invalid-click rule's count (`!inv`, rule). */
export function isClickField(f: Pick<FieldRef, 'dim'>): boolean {
  return f.dim === null || f.dim === INVALID_DIM;
}

/** One ad's change over the range (totals fields only). */
export interface AdChange {
  ad_id: string;
  /** Recomputed minus stored clicks over the changed minutes. */
  delta: number;
  /** Minutes of the ad with any changed field. */
  minutes: number;
}

/** What an operator reads first. */
export interface DiffSummary {
  /** Changed fields (every dimension value counts as one). */
  fields: number;
  /** Distinct minutes with at least one changed field. */
  minutes_changed: number;
  /** Ad-minutes with at least one changed field. */
  ad_minutes_changed: number;
  /** Clicks the recompute adds to the totals (sum of positive total differences). */
  clicks_added: number;
  /** Clicks it removes from the totals (sum of negative total differences, as a positive number). */
  clicks_removed: number;
  /** Ads with the largest total change, largest |delta| first. */
  top_ads: AdChange[];
}

/** The summary of a list of changes (`top`: how many ads to name). */
export function summarize(changes: readonly FieldChange[], top = 10): DiffSummary {
  const minutes = new Set<number>();
  const adMinutes = new Set<string>();
  const ads = new Map<string, { delta: number; minutes: Set<number> }>();
  let added = 0;
  let removed = 0;
  for (const c of changes) {
    minutes.add(c.minute);
    adMinutes.add(`${c.minute} ${c.ad_id}`);
    let a = ads.get(c.ad_id);
    if (!a) ads.set(c.ad_id, (a = { delta: 0, minutes: new Set() }));
    a.minutes.add(c.minute);
    if (!isClickField(c)) continue;
    const d = c.new - c.old;
    a.delta += d;
    if (d > 0) added += d;
    else removed -= d;
  }
  const top_ads = [...ads]
    .map(([ad_id, a]) => ({ ad_id, delta: a.delta, minutes: a.minutes.size }))
    .sort((x, y) => Math.abs(y.delta) - Math.abs(x.delta) || y.minutes - x.minutes || (x.ad_id < y.ad_id ? -1 : 1))
    .slice(0, top);
  return { fields: changes.length, minutes_changed: minutes.size, ad_minutes_changed: adMinutes.size, clicks_added: added, clicks_removed: removed, top_ads };
}
