import { type ClickRec, NO_VALUES, RuleGroup } from './records.ts';

/** A spread group whose set of distinct values (of its V_{r-1} members) differs from the last one reported. */
export interface PresenceChange {
  rule: number;
  window: number;
  key: string;
  /** Sorted. */
  values: string[];
}

type Entry = ClickRec | RuleGroup;
type Solo = (r: number, rec: ClickRec) => { window: number; key: string; value: string };

/**
 * Presence bookkeeping of the cascade's spread groups. Between operations every group's last
 * reported set equals its current one, so nothing is kept per group: the first change of a group's
 * set in an operation records the set before it, and `take` reports the groups whose set then
 * differs. A single-click group's set is its value while the click is in V_{r-1}, else empty.
 */
export class PresenceTracker {
  private readonly before: Array<Map<Entry, readonly string[]> | null>;

  /** `spread[r]`: whether rule r is a spread rule; `solo`: window, key and value of a single-click group. */
  constructor(spread: readonly boolean[], private readonly solo: Solo) {
    this.before = spread.map((s) => (s ? new Map() : null));
  }

  /** A new single-click group (nothing was reported for it). */
  created(r: number, rec: ClickRec): void {
    this.before[r]!.set(rec, NO_VALUES);
  }

  /** A single-click group's click entered or left V_{r-1}. */
  flipped(r: number, rec: ClickRec, entering: boolean): void {
    const m = this.before[r]!;
    if (!m.has(rec)) m.set(rec, entering ? NO_VALUES : [this.solo(r, rec).value]);
  }

  /** A single-click group became `g` (its only member so far `solo`, of distinct value `value`). */
  promoted(r: number, solo: ClickRec, g: RuleGroup, value: string): void {
    const m = this.before[r]!;
    const b = m.get(solo);
    if (b !== undefined) m.delete(solo);
    m.set(g, b ?? (solo.v >= r ? [value] : NO_VALUES));
    if (solo.v >= r) g.values = new Map([[value, 1]]);
  }

  /** A member of value `value` entered (d = 1) or left (d = -1) the group's V_{r-1} members. */
  count(g: RuleGroup, value: string, d: number): void {
    const values = (g.values ??= new Map());
    const prev = values.get(value) ?? 0;
    const n = prev + d;
    if (n === 0 || prev === 0) {
      const m = this.before[g.rule]!;
      if (!m.has(g)) m.set(g, sortedKeys(values));
    }
    if (n > 0) values.set(value, n);
    else values.delete(value);
  }

  /** Records `before` as the group's last reported set (rules change). */
  check(r: number, e: Entry, before: readonly string[]): void {
    this.before[r]!.set(e, before);
  }

  /** Sorted distinct values of a group's V_{r-1} members. */
  valuesOf(r: number, e: Entry): string[] {
    if (e instanceof RuleGroup) return sortedKeys(e.values);
    return e.v >= r ? [this.solo(r, e).value] : [];
  }

  clear(): void {
    for (const m of this.before) m?.clear();
  }

  /** Groups whose set changed since the last call, ordered by rule, window and key (a replay must re-create each report in the same place). */
  take(): PresenceChange[] {
    const out: PresenceChange[] = [];
    for (let r = 0; r < this.before.length; r++) {
      const m = this.before[r];
      if (m === null || m === undefined || m.size === 0) continue;
      for (const [e, before] of m) {
        const values = this.valuesOf(r, e);
        if (sameList(values, before)) continue;
        if (e instanceof RuleGroup) out.push({ rule: r, window: e.window, key: e.key, values });
        else {
          const s = this.solo(r, e);
          out.push({ rule: r, window: s.window, key: s.key, values });
        }
      }
      m.clear();
    }
    if (out.length > 1) out.sort((x, y) => x.rule - y.rule || x.window - y.window || (x.key < y.key ? -1 : x.key > y.key ? 1 : 0));
    return out;
  }
}

function sortedKeys(values: Map<string, number> | null): string[] {
  if (values === null || values.size === 0) return [];
  const out = [...values.keys()];
  if (out.length > 1) out.sort();
  return out;
}

function sameList(a: readonly string[], b: readonly string[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
