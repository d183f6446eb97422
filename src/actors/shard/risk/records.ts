import type { Click } from '../../../model/click.ts';
import type { CompiledRiskRules } from '../../../model/risk-rules.ts';
import { MINUTE_MS } from '../../../model/time.ts';

/**
 * The records the ad role of the risk engine holds (risk-engine.ts): one per fresh click, with its
 * verdict index and its groups, and the groups of the stateful rules.
 */

/** `ClickRec.before` of a record the current epoch has not touched. */
export const UNTOUCHED = -2;

/** A held click. `v` is the index of the rule that took it, or the number of rules (valid). */
export class ClickRec {
  v = 0;
  /** Verdict index at the start of the cascade's current epoch (-1: new in it, UNTOUCHED: not touched in it). */
  before = UNTOUCHED;
  constructor(readonly c: Click) {}
}

/** Spread state of one group, kept apart from the group so it outlives rule changes (until its window ends). */
export interface SpreadState {
  spreading: boolean;
  /** Partition sequence of the last verdict applied (-1: none). */
  vseq: number;
  /** End of the group's window (ms): dropped once expired past it. */
  end: number;
}

/**
 * A group of a stateful rule, (window, key tuple), once it has two members or more: a group of one
 * is its click record itself (most groups are, and a group object costs far more than the click).
 */
export class RuleGroup {
  /** Frequency: every member sorted by (ts, click_id). Spread: every member in arrival order. */
  readonly members: ClickRec[] = [];
  /** 0 clean, 1 only the members from `tail` on (new clicks appended since) to evaluate, 2 full rescan. */
  dirty: 0 | 1 | 2 = 0;
  tail = 0;
  /** Frequency: members in V_{rule-1} left valid by the last scan. */
  kept = 0;
  /** Spread: count of members in V_{rule-1} per distinct value (created on first use). */
  values: Map<string, number> | null = null;
  constructor(
    readonly rule: number,
    readonly window: number,
    /** The key tuple (spread groups only: a frequency group never reports it). */
    readonly key: string,
  ) {}
}

export const NO_VALUES: readonly string[] = Object.freeze([]);

/** Key of a spread state: rule id, window and key tuple. */
export const spreadKey = (id: string, window: number, key: string): string => [id, window, key].join('\u0000');

export function splitSpreadKey(k: string): { id: string; window: number; key: string } | null {
  const a = k.indexOf('\u0000');
  const b = a < 0 ? -1 : k.indexOf('\u0000', a + 1);
  if (b < 0) return null;
  const window = Number(k.slice(a + 1, b));
  return Number.isSafeInteger(window) ? { id: k.slice(0, a), window, key: k.slice(b + 1) } : null;
}

/** Sort order of frequency members: ts, then click_id by JS string order. */
export function before(a: Click, b: Click): boolean {
  return a.ts < b.ts || (a.ts === b.ts && a.click_id < b.click_id);
}

/** Inserts a record into a sorted member list; true when it went at the end. */
export function insertSorted(list: ClickRec[], rec: ClickRec): boolean {
  const last = list[list.length - 1];
  if (last === undefined || before(last.c, rec.c)) {
    list.push(rec);
    return true;
  }
  let lo = 0;
  let hi = list.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (before(list[mid]!.c, rec.c)) lo = mid + 1;
    else hi = mid;
  }
  list.splice(lo, 0, rec);
  return false;
}

/** Window lengths (ms) of the stateful rules. */
export function windowLengths(rules: CompiledRiskRules): number[] {
  const out: number[] = [];
  for (const r of rules.rules) if (r.rule.kind !== 'ip_block') out.push(r.rule.window_seconds * 1000);
  return out;
}

/**
 * The time before which held clicks can be dropped once no click older than `oldestTs` can come:
 * the latest time at or before `oldestTs` that is a boundary of every rule's windows and of
 * minutes (so no group is cut in two, and whole minute parts go). A change can only reach groups
 * whose windows overlap a group that holds a newer click, and such windows never reach behind a
 * common boundary at or before `oldestTs`. Null when there is none within reach (keep everything).
 */
export function expiryCut(oldestTs: number, windows: readonly number[]): number | null {
  const lengths = [MINUTE_MS, ...windows];
  let cut = oldestTs;
  for (let i = 0; i < 10_000; i++) {
    let next = cut;
    for (const w of lengths) next = Math.min(next, Math.floor(next / w) * w);
    if (next === cut) return cut;
    cut = next;
  }
  return null;
}
