/**
 * `aggregated_count` at `granularity=hour|day`: an ad's counts per UTC hour or day over ranges of
 * up to {@link MAX_BUCKET_RANGE_DAYS} days. The archived part is summed per bucket by DuckDB from
 * the hour or day rollups (tiered-reads.ts); the rest comes minute by minute from the shard actor
 * and Redis (the query service's series) and is summed here, so each minute is read from one tier.
 */
import { isoOf, minuteStartMs } from '../model/time.ts';
import { invalidField, type ByRule } from './risk-fields.ts';
import { isArchived, redisFloor, splitRange, UNIT_MINUTES, type ArchivedRange, type ArchiveTier } from './tiered-reads.ts';

/** Longest range of an hour or day query. */
export const MAX_BUCKET_RANGE_DAYS = 400;

/** A count field: the ad's total (no filter) or one dimension value. */
export interface CountFilter {
  dim: string;
  value: string;
}

/** One count field of an ad per minute of a range, and the owner's progress (query-service.ts). */
export interface SeriesResult {
  values: number[];
  closedThrough: number;
  sealedThrough: number;
  watermark: number;
}

/** The query service's per-minute read of [from, to): minutes in `archived` come from the archive tier. */
export type SeriesOf = (adId: string, from: number, to: number, field: CountFilter | undefined, archived: ArchivedRange | undefined) => Promise<SeriesResult>;

/** One bucket of an hour or day answer. */
export interface BucketCount {
  /** ISO start of the UTC hour or day. */
  start: string;
  count: number;
  invalid: number;
  invalid_by_rule: ByRule;
  /** The least final state of the bucket's minutes: sealed, closed or open. */
  state: 'open' | 'closed' | 'sealed';
}

/** `aggregated_count` with `granularity=hour|day`. */
export interface AdBucketsResult {
  ad_id: string;
  granularity: 'hour' | 'day';
  from: string;
  to: string;
  count: number;
  invalid: number;
  invalid_by_rule: ByRule;
  buckets: BucketCount[];
  watermark: string | null;
  sealed_through: string | null;
}

export interface BucketDeps {
  series: SeriesOf;
  archive: ArchiveTier | undefined;
  rules: readonly string[];
  /** ADAGG_COUNT_TTL_MS in minutes (tiered-reads.ts redisFloor). */
  ttlMinutes: number;
}

/** One field summed per bucket over [from, to) (bucket-aligned), and the owner's progress. */
async function fieldBuckets(d: BucketDeps, adId: string, from: number, to: number, field: CountFilter | undefined, unit: 60 | 1440, arch: ArchivedRange | undefined): Promise<{ sums: Map<number, number>; progress: SeriesResult }> {
  const { before, archived, after } = splitRange(from, to, arch);
  const beforeFrom = Math.min(Math.max(before[0], redisFloor(from, to, arch, d.ttlMinutes)), before[1]);
  const agg = { dim: field?.dim ?? null, value: field?.value ?? null };
  const [archSums, old, recent] = await Promise.all([
    d.archive && archived[1] > archived[0] ? d.archive.adBuckets(adId, agg, archived[0], archived[1], unit) : Promise.resolve(new Map<number, number>()),
    before[1] > beforeFrom ? d.series(adId, beforeFrom, before[1], field, arch) : Promise.resolve(undefined),
    d.series(adId, after[0], after[1], field, arch),
  ]);
  const sums = new Map(archSums);
  const add = (start: number, values: readonly number[]): void =>
    values.forEach((v, i) => {
      if (v === 0) return;
      const b = Math.floor((start + i) / unit) * unit;
      sums.set(b, (sums.get(b) ?? 0) + v);
    });
  if (old) add(beforeFrom, old.values);
  add(after[0], recent.values);
  return { sums, progress: recent };
}

/**
 * An ad's valid count and each rule's invalid count per bucket over [from, to) (epoch minutes,
 * aligned to the granularity by the caller).
 */
export async function adBuckets(d: BucketDeps, adId: string, from: number, to: number, filter: CountFilter | undefined, granularity: 'hour' | 'day'): Promise<AdBucketsResult> {
  const unit = UNIT_MINUTES[granularity] as 60 | 1440;
  const arch = d.archive ? await d.archive.range() : undefined;
  const [valid, ...byRule] = await Promise.all([
    fieldBuckets(d, adId, from, to, filter, unit, arch),
    ...d.rules.map((r) => fieldBuckets(d, adId, from, to, invalidField(r, filter), unit, arch)),
  ]);
  const p = valid!.progress;
  const buckets: BucketCount[] = [];
  const invalid_by_rule: ByRule = {};
  d.rules.forEach((r) => (invalid_by_rule[r] = 0));
  let count = 0;
  for (let b = from; b < to; b += unit) {
    const perRule: ByRule = {};
    let invalid = 0;
    d.rules.forEach((r, k) => {
      const n = byRule[k]!.sums.get(b) ?? 0;
      perRule[r] = n;
      invalid += n;
      invalid_by_rule[r]! += n;
    });
    const c = valid!.sums.get(b) ?? 0;
    count += c;
    const last = b + unit - 1;
    const state = isArchived(last, arch) || last <= Math.min(p.sealedThrough, p.closedThrough) ? 'sealed' : last <= p.closedThrough ? 'closed' : 'open';
    buckets.push({ start: isoOf(minuteStartMs(b)), count: c, invalid, invalid_by_rule: perRule, state });
  }
  return {
    ad_id: adId,
    granularity,
    from: isoOf(minuteStartMs(from)),
    to: isoOf(minuteStartMs(to)),
    count,
    invalid: Object.values(invalid_by_rule).reduce((a, n) => a + n, 0),
    invalid_by_rule,
    buckets,
    watermark: p.watermark >= 0 ? isoOf(p.watermark) : null,
    sealed_through: p.sealedThrough >= 0 ? isoOf(minuteStartMs(p.sealedThrough)) : null,
  };
}
