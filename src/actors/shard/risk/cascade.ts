import type { CompiledRiskRules } from '../../../model/risk-rules.ts';
import { clickField } from '../../../model/risk-rules.ts';
import { PresenceTracker, type PresenceChange } from './presence.ts';
import { GroupIndex, headOf, keyOf, type Entry } from './group-index.ts';
import { type ClickRec, insertSorted, RuleGroup, UNTOUCHED } from './records.ts';
import type { SpreadStates } from './spread-states.ts';

const IP = 0;
const FREQUENCY = 1;
const SPREAD = 2;

/**
 * The ad role's cascade (issue 14): rules in order, rule i over the clicks earlier rules left valid
 * (V_{i-1}), evaluated incrementally. Every held click carries its verdict index `v` (the rule that
 * took it, or R = valid). A pass walks the rules in increasing order and re-evaluates only what is
 * dirty at each rule: new clicks, groups whose V_{i-1} membership changed, groups whose spread bit
 * changed. When a click's index moves from a to b, its membership in V_{j-1} flips for every rule j
 * in (min, max], all later than the rule being evaluated, so one pass reaches the fixpoint, which
 * equals a full evaluation of the set:
 * - ip_block: a click in V_{i-1} with a matching ip is taken;
 * - frequency: members of V_{i-1} sorted by (ts, click_id), the first `max` kept, the rest taken;
 * - spread: every member of V_{i-1} taken iff the group's bit (from the risk partition) is set.
 * It also tracks the distinct values of each spread group's V_{i-1} members, for presence.
 * A record does not point at its groups: the rare click whose verdict moves finds them by key.
 */
export class Cascade {
  readonly rules: CompiledRiskRules;
  readonly size: number;
  private readonly presence: PresenceTracker;
  private readonly kinds: number[] = [];
  /** Per stateful rule: its groups by window and key tuple. */
  private readonly groups: Array<GroupIndex | null> = [];
  /** Per rule: groups and single-click groups to evaluate (a single one may be listed twice: harmless). */
  private readonly dirty: Entry[][] = [];
  /** Per rule: single-click groups that gained a member in this epoch (their listing is stale). */
  private readonly promoted: Array<Set<ClickRec> | null> = [];
  private readonly dirtyClicks: ClickRec[][] = [];
  private readonly windowMs: number[] = [];
  private readonly max: number[] = [];
  private readonly keys: Array<readonly string[]> = [];
  private readonly distinct: string[] = [];
  private readonly ids: string[] = [];
  /** Records whose verdict may have changed in the current epoch (or that are new in it). */
  touched: ClickRec[] = [];

  /** `states`: spread bits, shared with the engine (they outlive a rules change). */
  constructor(rules: CompiledRiskRules, private readonly states: SpreadStates) {
    this.rules = rules;
    this.size = rules.rules.length;
    for (const cr of rules.rules) {
      const r = cr.rule;
      this.ids.push(cr.id);
      this.kinds.push(r.kind === 'ip_block' ? IP : r.kind === 'frequency' ? FREQUENCY : SPREAD);
      this.groups.push(r.kind === 'ip_block' ? null : new GroupIndex(r.key));
      this.dirty.push([]);
      this.promoted.push(null);
      this.dirtyClicks.push([]);
      this.windowMs.push(r.kind === 'ip_block' ? 0 : r.window_seconds * 1000);
      this.max.push(r.kind === 'ip_block' ? 0 : r.max);
      this.keys.push(r.kind === 'ip_block' ? [] : r.key);
      this.distinct.push(r.kind === 'spread' ? r.distinct : '');
    }
    this.presence = new PresenceTracker(this.kinds.map((k) => k === SPREAD), (r, rec) => this.soloGroup(r, rec));
  }

  /** Starts a new epoch: `touched` collects the records whose verdict may change in it (the last epoch's are reset). */
  begin(): void {
    this.end();
  }

  /** Ends the epoch: the records it touched are untouched again. */
  end(): void {
    for (const rec of this.touched) rec.before = UNTOUCHED;
    this.touched = [];
  }

  /** The rule name of a verdict index (null: valid). */
  name(v: number): string | null {
    return v >= this.size ? null : this.rules.rules[v]!.rule.name;
  }

  /** Registers a new click (valid until the pass says otherwise). Call `run` afterwards. */
  insert(rec: ClickRec): void {
    rec.v = this.size;
    rec.before = -1;
    this.touched.push(rec);
    const c = rec.c;
    for (let r = 0; r < this.size; r++) {
      const kind = this.kinds[r]!;
      if (kind === IP) {
        if (c.ip !== undefined) this.dirtyClicks[r]!.push(rec);
        continue;
      }
      const head = headOf(c, this.keys[r]!);
      if (head === undefined) continue;
      let dv: string | undefined;
      if (kind === SPREAD && (dv = clickField(c, this.distinct[r]!)) === undefined) continue;
      const window = Math.floor(c.ts / this.windowMs[r]!);
      const e = this.groups[r]!.claim(window, c, head, rec);
      if (e === undefined) {
        this.dirty[r]!.push(rec);
        if (kind === SPREAD) this.presence.created(r, rec);
        continue;
      }
      const g = e instanceof RuleGroup ? e : this.promote(r, window, head, e);
      if (kind === FREQUENCY) {
        const atEnd = insertSorted(g.members, rec);
        if (atEnd && g.dirty !== 2) this.markTail(g);
        else this.markFull(g);
      } else {
        g.members.push(rec);
        this.presence.count(g, dv!, 1);
        if (g.dirty !== 2) this.markTail(g);
      }
    }
  }

  /** A spread group's bit changed (verdict): its members are re-evaluated by the next pass. */
  spreadChanged(r: number, window: number, key: string): void {
    const e = this.groups[r]?.find(window, key);
    if (e instanceof RuleGroup) this.markFull(e);
    else if (e !== undefined) this.dirty[r]!.push(e);
  }

  /** Index of the rule with this id, or -1. */
  indexOf(id: string): number {
    return this.ids.indexOf(id);
  }

  /** Sorted distinct values of a spread group's V_{r-1} members (none when the group is not held). */
  valuesOf(r: number, window: number, key: string): string[] {
    const e = this.groups[r]?.find(window, key);
    return e === undefined ? [] : this.presence.valuesOf(r, e);
  }

  /** After a rules change: every spread group is checked against what `old` last reported for it. */
  checkAllPresence(old: Cascade): void {
    this.presence.clear();
    for (let r = 0; r < this.size; r++) {
      if (this.kinds[r] !== SPREAD) continue;
      const rOld = old.indexOf(this.ids[r]!);
      for (const [window, key, e] of this.groups[r]!.entries()) this.presence.check(r, e, rOld < 0 ? [] : old.valuesOf(rOld, window, key));
    }
  }

  /** Presence changes since the last call, in canonical order. */
  takePresence(): PresenceChange[] {
    return this.presence.take();
  }

  /** Drops the groups whose window ended at or before `cut` (their clicks are dropped: see expiryCut). */
  expire(cut: number): void {
    for (let r = 0; r < this.size; r++) {
      const ms = this.windowMs[r]!;
      this.groups[r]?.expire((window) => (window + 1) * ms <= cut);
    }
  }

  /** Evaluates everything dirty, rule by rule. */
  run(): void {
    for (let r = 0; r < this.size; r++) {
      if (this.kinds[r] === IP) {
        const list = this.dirtyClicks[r]!;
        if (list.length === 0) continue;
        const m = this.rules.rules[r]!;
        for (let i = 0; i < list.length; i++) {
          const rec = list[i]!;
          if (rec.v <= r) continue;
          const ip = rec.c.ip;
          if (ip !== undefined && m.matchesIp !== undefined && m.matchesIp(ip)) this.setV(rec, r);
        }
        list.length = 0;
        continue;
      }
      const list = this.dirty[r]!;
      if (list.length === 0) continue;
      const frequency = this.kinds[r] === FREQUENCY;
      const promoted = this.promoted[r] ?? null;
      for (let i = 0; i < list.length; i++) {
        const e = list[i]!;
        if (e instanceof RuleGroup) {
          if (frequency) this.frequency(e, r);
          else this.spread(e, r, this.spreadOn(r, e.window, e.key));
          e.dirty = 0;
        } else if (e.v >= r && (promoted === null || !promoted.has(e))) {
          if (frequency) this.setV(e, this.max[r]! > 0 ? (e.v === r ? this.size : e.v) : r);
          else this.setV(e, this.soloSpreadOn(r, e) ? r : e.v === r ? this.size : e.v);
        }
      }
      list.length = 0;
      this.promoted[r] = null;
    }
  }

  /** The bit of a single-click spread group (its key built only when its window has bits). */
  private soloSpreadOn(r: number, rec: ClickRec): boolean {
    if (this.states.size === 0) return false;
    const bits = this.states.window(this.ids[r]!, Math.floor(rec.c.ts / this.windowMs[r]!));
    return bits === undefined ? false : (bits.get(keyOf(rec.c, this.keys[r]!)!)?.spreading ?? false);
  }

  private spreadOn(r: number, window: number, key: string): boolean {
    if (this.states.size === 0) return false;
    return this.states.window(this.ids[r]!, window)?.get(key)?.spreading ?? false;
  }

  private frequency(g: RuleGroup, r: number): void {
    const max = this.max[r]!;
    const release = this.size;
    if (g.dirty === 1) {
      // Only new clicks appended after every member: earlier ranks are unchanged.
      const members = g.members;
      for (let i = g.tail; i < members.length; i++) {
        const rec = members[i]!;
        if (rec.v < r) continue;
        if (g.kept < max) g.kept++;
        else if (rec.v !== r) this.setV(rec, r);
      }
      return;
    }
    let kept = 0;
    for (const rec of g.members) {
      if (rec.v < r) continue;
      if (kept < max) {
        kept++;
        if (rec.v === r) this.setV(rec, release);
      } else if (rec.v !== r) this.setV(rec, r);
    }
    g.kept = kept;
  }

  private spread(g: RuleGroup, r: number, on: boolean): void {
    const members = g.members;
    for (let i = g.dirty === 1 ? g.tail : 0; i < members.length; i++) {
      const rec = members[i]!;
      if (rec.v < r) continue;
      if (on) {
        if (rec.v !== r) this.setV(rec, r);
      } else if (rec.v === r) this.setV(rec, this.size);
    }
  }

  /** Moves a click's verdict index; its membership in V_{j-1} flips for every j in (min, max]. */
  private setV(rec: ClickRec, nv: number): void {
    const old = rec.v;
    if (nv === old) return;
    if (rec.before === UNTOUCHED) {
      rec.before = old;
      this.touched.push(rec);
    }
    rec.v = nv;
    const entering = nv > old;
    const lo = entering ? old : nv;
    const hi = Math.min(entering ? nv : old, this.size - 1);
    const c = rec.c;
    for (let j = lo + 1; j <= hi; j++) {
      const kind = this.kinds[j]!;
      if (kind === IP) {
        if (entering && c.ip !== undefined) this.dirtyClicks[j]!.push(rec);
        continue;
      }
      const head = headOf(c, this.keys[j]!);
      if (head === undefined) continue;
      const dv = kind === SPREAD ? clickField(c, this.distinct[j]!) : '';
      if (dv === undefined) continue;
      const e = this.groups[j]!.get(Math.floor(c.ts / this.windowMs[j]!), c, head);
      if (e === undefined) continue;
      if (!(e instanceof RuleGroup)) {
        if (kind === SPREAD) this.presence.flipped(j, rec, entering);
        if (entering) this.dirty[j]!.push(rec);
      } else if (kind === FREQUENCY) this.markFull(e);
      else {
        this.presence.count(e, dv, entering ? 1 : -1);
        if (entering) this.markFull(e);
      }
    }
  }

  /** A single-click group gains a second member: it becomes a RuleGroup, evaluated in full. */
  private promote(r: number, window: number, head: string, solo: ClickRec): RuleGroup {
    // Only a spread group reports its key.
    const g = new RuleGroup(r, window, this.kinds[r] === SPREAD ? keyOf(solo.c, this.keys[r]!)! : '');
    g.members.push(solo);
    this.groups[r]!.set(window, solo.c, head, g);
    (this.promoted[r] ??= new Set()).add(solo);
    if (this.kinds[r] === SPREAD) this.presence.promoted(r, solo, g, clickField(solo.c, this.distinct[r]!)!);
    this.markFull(g);
    return g;
  }

  /** Window, key and distinct value of a single-click spread group (presence of `rec` at rule `r`). */
  private soloGroup(r: number, rec: ClickRec): { window: number; key: string; value: string } {
    return { window: Math.floor(rec.c.ts / this.windowMs[r]!), key: keyOf(rec.c, this.keys[r]!)!, value: clickField(rec.c, this.distinct[r]!)! };
  }

  /** The member just appended is new: from the first such, only the tail needs evaluating. */
  private markTail(g: RuleGroup): void {
    if (g.dirty !== 0) return;
    g.dirty = 1;
    g.tail = g.members.length - 1;
    this.dirty[g.rule]!.push(g);
  }

  private markFull(g: RuleGroup): void {
    if (g.dirty === 0) this.dirty[g.rule]!.push(g);
    g.dirty = 2;
  }
}
