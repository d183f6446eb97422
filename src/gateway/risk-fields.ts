import { INVALID_DIM, invalidDim } from '../model/risk-fields.ts';
import type { OffendersReply } from '../model/shard-queries.ts';

/**
 * How the gateway reads invalid-click counts (docs/risk.md). The shard actors count a click that a
 * risk rule took in pseudo-dimension fields of the same minute hashes as the valid counts
 * (src/model/risk-fields.ts), so an invalid count is read exactly like a filtered count, by the
 * same code.
 */

/** A count field besides the ad's totals: a dimension (or cube) and its value. */
export interface CountField {
  dim: string;
  value: string;
}

/** Invalid clicks by rule name: every rule ever published, 0 included. */
export type ByRule = Record<string, number>;

/** The count field holding the ad's clicks taken by `rule`, optionally within one filter. */
export function invalidField(rule: string, filter: CountField | undefined): CountField {
  return filter ? { dim: invalidDim(rule, filter.dim), value: filter.value } : { dim: INVALID_DIM, value: rule };
}

/** One offending key value and its invalid clicks. */
export interface Offender {
  key: Record<string, string>;
  invalid: number;
}

/** `GET /v1/risk/offenders`. */
export interface OffendersResult {
  rule: string;
  /** Minutes, ending with the current one. */
  window: number;
  from: string;
  to: string;
  offenders: Offender[];
}

/**
 * Sums the shards' offenders of the same key value (an IP's clicks on ads of several shards) and
 * keeps the top `limit`: invalid descending, then the key's JSON ascending.
 */
export function mergeOffenders(replies: readonly OffendersReply[], limit: number): Offender[] {
  const byKey = new Map<string, Offender>();
  for (const r of replies) {
    for (const o of r.offenders) {
      const k = JSON.stringify(o.key);
      const have = byKey.get(k);
      if (have) have.invalid += o.invalid;
      else byKey.set(k, { key: o.key, invalid: o.invalid });
    }
  }
  return [...byKey]
    .sort(([ka, a], [kb, b]) => b.invalid - a.invalid || (ka < kb ? -1 : ka > kb ? 1 : 0))
    .slice(0, limit)
    .map(([, o]) => o);
}
