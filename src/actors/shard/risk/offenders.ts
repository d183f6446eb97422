import type { CompiledRiskRules } from '../../../model/risk-rules.ts';
import { clickField } from '../../../model/risk-rules.ts';
import { MINUTE_MS } from '../../../model/time.ts';
import type { ClickRec } from './records.ts';

export interface Offender {
  key: Record<string, string>;
  invalid: number;
}

/**
 * Held clicks charged to rule `rule` (by name, under the current rules) with ts in [fromMs, toMs),
 * counted by the rule's key tuple (ip_block: the ip), largest first (ties by key), at most `limit`.
 */
export function offenders(
  rules: CompiledRiskRules,
  minutes: ReadonlyMap<number, readonly ClickRec[]>,
  rule: string,
  fromMs: number,
  toMs: number,
  limit: number,
): Offender[] {
  const r = rules.rules.findIndex((x) => x.rule.name === rule);
  if (r < 0 || limit <= 0) return [];
  const def = rules.rules[r]!.rule;
  const fields = def.kind === 'ip_block' ? ['ip'] : def.key;
  const counts = new Map<string, Offender>();
  for (const [minute, recs] of minutes) {
    if ((minute + 1) * MINUTE_MS <= fromMs || minute * MINUTE_MS >= toMs) continue;
    for (const rec of recs) {
      if (rec.v !== r || rec.c.ts < fromMs || rec.c.ts >= toMs) continue;
      const values = fields.map((f) => clickField(rec.c, f) ?? '');
      const k = values.join('\u001f');
      const e = counts.get(k);
      if (e !== undefined) e.invalid++;
      else counts.set(k, { key: Object.fromEntries(fields.map((f, i) => [f, values[i]!])), invalid: 1 });
    }
  }
  return [...counts.entries()]
    .sort((a, b) => b[1].invalid - a[1].invalid || (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))
    .slice(0, limit)
    .map(([, e]) => e);
}
