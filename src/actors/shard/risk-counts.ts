import type { Click } from '../../model/click.ts';
import { dimensionValue } from '../../model/click.ts';
import type { RiskTally } from '../../model/apply-results.ts';
import { INVALID_DIM, invalidDim } from '../../model/risk-fields.ts';
import type { CorrectionCause } from '../../model/shard-state.ts';
import { minuteOf } from '../../model/time.ts';
import type { ReportDelta } from './hot-parts.ts';
import type { ShardWindows } from './windows.ts';

/** Field layout: src/model/risk-fields.ts. A click's verdict changed: `before` undefined for a click new to the rules, null = valid, else the rule's name. */
export interface CountedChange {
  click: Click;
  before: string | null | undefined;
  after: string | null;
}

/** A field delta and what caused it (a late click, or a verdict that changed: the corrections feed). */
type CausedDelta = ReportDelta & { cause: CorrectionCause };

/** Pushes ±1 for every field a click with this verdict counts in. */
function pushFields<D extends ReportDelta>(out: D[], click: Click, verdict: string | null, dims: readonly string[], delta: number, extra: Omit<D, keyof ReportDelta>): void {
  const minute = minuteOf(click.ts);
  if (verdict === null) {
    out.push({ minute, dim: null, value: null, delta, ...extra } as D);
    for (const d of dims) {
      const v = dimensionValue(click, d);
      if (v !== undefined) out.push({ minute, dim: d, value: v, delta, ...extra } as D);
    }
    return;
  }
  out.push({ minute, dim: INVALID_DIM, value: verdict, delta, ...extra } as D);
  for (const d of dims) {
    const v = dimensionValue(click, d);
    if (v !== undefined) out.push({ minute, dim: invalidDim(verdict, d), value: v, delta, ...extra } as D);
  }
}

/**
 * Moves each changed click's contribution between field sets, as late changes are applied: the
 * stored values of touched closed-minute fields are read first (corrections), then every delta is
 * added (open minutes in place, closed ones as corrections, the live rankings follow). Returns
 * how many new clicks were late and what moved between rules.
 */
export async function applyVerdictChanges(windows: ShardWindows, dims: readonly string[], changes: readonly CountedChange[]): Promise<{ late: number; tally: RiskTally }> {
  const byAd = new Map<string, CausedDelta[]>();
  const tally: RiskTally = { taken: {}, released: {} };
  /** New clicks of open minutes (most of them): counted directly, no field deltas to merge. */
  const fresh: CountedChange[] = [];
  let late = 0;
  for (const ch of changes) {
    if (ch.before === ch.after) continue;
    if (ch.after !== null) tally.taken[ch.after] = (tally.taken[ch.after] ?? 0) + 1;
    if (ch.before === undefined && minuteOf(ch.click.ts) > windows.closedThrough) {
      fresh.push(ch);
      continue;
    }
    let list = byAd.get(ch.click.ad_id);
    if (!list) byAd.set(ch.click.ad_id, (list = []));
    // A click new to the rules is a late one (its minute closed); a known one changed verdict.
    const cause: CorrectionCause = ch.before === undefined ? 'late_click' : 'risk_verdict';
    if (ch.before !== undefined) pushFields(list, ch.click, ch.before, dims, -1, { cause });
    else if (minuteOf(ch.click.ts) <= windows.closedThrough) late++;
    pushFields(list, ch.click, ch.after, dims, 1, { cause });
    if (ch.before) tally.released[ch.before] = (tally.released[ch.before] ?? 0) + 1;
  }
  for (const [ad, deltas] of byAd) await windows.loadDeltaFields(ad, deltas);
  for (const [ad, deltas] of byAd) for (const d of merge(deltas)) windows.addDelta(ad, d, d.cause);
  const one: ReportDelta[] = [];
  for (const ch of fresh) {
    if (ch.after === null) windows.addClick(ch.click);
    else {
      one.length = 0;
      pushFields(one, ch.click, ch.after, dims, 1, {});
      // An open minute (`fresh`): no correction, the cause is never recorded.
      for (const d of one) windows.addDelta(ch.click.ad_id, d, 'late_click');
    }
  }
  return { late, tally };
}

/**
 * Sums deltas of the same field and cause (a click moved out and back in, many clicks of one
 * minute); a field changed by both causes gets one delta per cause, the verdicts' last.
 */
function merge(deltas: readonly CausedDelta[]): CausedDelta[] {
  const m = new Map<string, CausedDelta>();
  const ordered = [...deltas.filter((d) => d.cause === 'late_click'), ...deltas.filter((d) => d.cause !== 'late_click')];
  for (const d of ordered) {
    const k = `${d.cause}\u0000${d.minute}\u0000${d.dim ?? ''}\u0000${d.value ?? ''}`;
    const have = m.get(k);
    if (have) have.delta += d.delta;
    else m.set(k, { ...d });
  }
  return [...m.values()].filter((d) => d.delta !== 0);
}
