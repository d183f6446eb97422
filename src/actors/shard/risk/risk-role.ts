import type { PresenceMessage, VerdictMessage } from '../../../model/risk-messages.ts';
import type { StateOp } from '../../../model/shard-state.ts';
import { decodeRoleGroup, encodeRoleGroup, valueCount, valueList, type RoleGroup, type Values } from './role-codec.ts';
import { spreadKey } from './records.ts';

/** Hash part of one rule window's groups (field = key tuple, value: role-codec.ts). */
export const rolePart = (id: string, window: number): string => `rp:${window}:${id}`;

/** A rule window held, as the state head names it: rule id, window, end (-1: unknown). */
export type RoleWindowRef = [id: string, window: number, end: number];

/**
 * The groups of one rule window, each kept in its stored form (role-codec.ts): a group is read
 * only when a report for it comes, and the string a commit writes is the one held, so a group
 * costs one short string rather than a graph of objects.
 */
interface RoleWindow {
  readonly id: string;
  readonly window: number;
  /** End of the window (ms), -1 while the rule is unknown here. */
  end: number;
  readonly groups: Map<string, string>;
}

type Out = Array<{ to: number; msg: VerdictMessage }>;
type Touched = { w: RoleWindow; key: string; g: RoleGroup };

/**
 * The risk role of a shard actor (issue 14): risk partition p of spread groups, hosted by shard
 * actor p. Rule-agnostic: a presence report carries the rule's `max`. Per group (rule id, window,
 * key): the latest presence per reporting shard (a report with a sequence at or below the stored
 * one is ignored), spreading = |union of values| > max, and the last verdict told to each shard
 * (never told = not spreading). Every shard whose latest presence is non-empty and was last told
 * otherwise is told again. Groups are nested by rule id and window (a window expires whole).
 */
export class RiskRole {
  private readonly rules = new Map<string, Map<number, RoleWindow>>();
  private count = 0;
  /** Groups changed, and parts of windows removed, since the last takeOps (persistence). */
  private changed = new Map<RoleWindow, Set<string>>();
  private removed = new Set<string>();

  /** `windowOf(ruleId)`: the window length (ms) of a rule known here, or undefined. */
  constructor(private readonly windowOf: (ruleId: string) => number | undefined) {}

  get size(): number {
    return this.count;
  }

  /** Applies a presence report; returns the verdicts to send (`to` = shard). */
  apply(msg: PresenceMessage, seq: number): Out {
    return this.applyAll([msg], seq);
  }

  /**
   * Applies the presence reports of one stream message (a batch), then decides each touched group
   * once, so a group gets at most one verdict per shard and sequence.
   */
  applyAll(msgs: readonly PresenceMessage[], seq: number): Out {
    const touched: Touched[] = [];
    const byWindow = new Map<RoleWindow, Map<string, Touched>>();
    for (const msg of msgs) {
      const w = this.windowFor(msg.rule, msg.window);
      if (w.end < 0) w.end = this.endOf(msg.rule, msg.window);
      let seen = byWindow.get(w);
      if (seen === undefined) byWindow.set(w, (seen = new Map()));
      let t = seen.get(msg.key);
      if (t === undefined) {
        const held = w.groups.get(msg.key);
        const g = held === undefined ? null : decodeRoleGroup(held);
        if (held !== undefined && g === null) throw new Error(`risk group ${spreadKey(w.id, w.window, msg.key)}`);
        if (g === null) {
          // Created even for an empty report: it must shadow an older report that arrives later.
          t = { w, key: msg.key, g: { max: msg.max, reports: [{ shard: msg.from, seq: msg.seq, values: kept(msg.values), told: false }] } };
          this.count++;
        } else {
          if (!update(g, msg)) continue;
          t = { w, key: msg.key, g };
        }
        seen.set(msg.key, t);
        touched.push(t);
      } else update(t.g, msg);
    }
    const out: Out = [];
    for (const t of touched) {
      decide(t, seq, out);
      t.w.groups.set(t.key, encodeRoleGroup(t.g.max, t.g.reports));
      let keys = this.changed.get(t.w);
      if (keys === undefined) this.changed.set(t.w, (keys = new Set()));
      keys.add(t.key);
    }
    return out;
  }

  /** Drops groups whose window ended at or before `beforeMs` (unknown windows are kept). */
  expire(beforeMs: number): void {
    for (const [id, windows] of this.rules) {
      for (const [window, w] of windows) {
        if (w.end < 0) w.end = this.endOf(id, window);
        if (w.end < 0 || w.end > beforeMs) continue;
        this.changed.delete(w);
        this.removed.add(rolePart(id, window));
        this.count -= w.groups.size;
        windows.delete(window);
      }
      if (windows.size === 0) this.rules.delete(id);
    }
  }

  /** Changes since the last call: removed windows' parts deleted, then changed groups set. */
  takeOps(): StateOp[] {
    const ops: StateOp[] = [];
    for (const part of this.removed) ops.push({ kind: 'del', part });
    for (const [w, keys] of this.changed) {
      const fields: Array<string | number> = [];
      for (const key of keys) fields.push(key, w.groups.get(key)!);
      ops.push({ kind: 'hset', part: rolePart(w.id, w.window), fields });
    }
    this.changed = new Map();
    this.removed = new Set();
    return ops;
  }

  /** The windows held, for the state head. */
  windowRefs(): RoleWindowRef[] {
    const out: RoleWindowRef[] = [];
    for (const [id, windows] of this.rules) for (const [window, w] of windows) out.push([id, window, w.end]);
    return out;
  }

  /** Restores one window's groups from its hash part. Throws on a malformed value. */
  load(ref: RoleWindowRef, fields: ReadonlyMap<string, string>): void {
    const [id, window, end] = ref;
    const w = this.windowFor(id, window);
    if (end >= 0) w.end = end;
    for (const [key, v] of fields) {
      if (decodeRoleGroup(v) === null) throw new Error(`risk group ${spreadKey(id, window, key)}`);
      if (!w.groups.has(key)) this.count++;
      w.groups.set(key, v);
    }
  }

  /** The groups as [spread key, group] pairs (tests and diagnostics). */
  entries(): Array<[string, RoleGroup]> {
    const out: Array<[string, RoleGroup]> = [];
    for (const windows of this.rules.values()) for (const w of windows.values()) for (const [key, v] of w.groups) out.push([spreadKey(w.id, w.window, key), decodeRoleGroup(v)!]);
    return out;
  }

  private windowFor(id: string, window: number): RoleWindow {
    let windows = this.rules.get(id);
    if (windows === undefined) this.rules.set(id, (windows = new Map()));
    let w = windows.get(window);
    if (w === undefined) windows.set(window, (w = { id, window, end: this.endOf(id, window), groups: new Map() }));
    return w;
  }

  private endOf(ruleId: string, window: number): number {
    const ms = this.windowOf(ruleId);
    return ms === undefined ? -1 : (window + 1) * ms;
  }
}

/** Stores a report in its group; false when it is not newer than the one held for its shard. */
function update(g: RoleGroup, msg: PresenceMessage): boolean {
  const prev = g.reports.find((p) => p.shard === msg.from);
  if (prev !== undefined && msg.seq <= prev.seq) return false;
  if (prev === undefined) g.reports.push({ shard: msg.from, seq: msg.seq, values: kept(msg.values), told: false });
  else {
    prev.seq = msg.seq;
    prev.values = kept(msg.values);
  }
  g.max = msg.max;
  return true;
}

/** Tells every reporting shard whose last verdict differs whether the group spreads now. */
function decide(t: Touched, seq: number, out: Out): void {
  const reports = t.g.reports;
  let distinct: number;
  if (reports.length === 1 && valueCount(reports[0]!.values) <= 1) distinct = valueCount(reports[0]!.values);
  else {
    const union = new Set<string>();
    for (const p of reports) for (const v of valueList(p.values)) union.add(v);
    distinct = union.size;
  }
  const spreading = distinct > t.g.max;
  const order = reports.length > 1 ? [...reports].sort((a, b) => a.shard - b.shard) : reports;
  for (const p of order) {
    if (valueCount(p.values) === 0 || p.told === spreading) continue;
    p.told = spreading;
    out.push({ to: p.shard, msg: { kind: 'verdict', rule: t.w.id, window: t.w.window, key: t.key, spreading, seq } });
  }
}

/** Values as kept: one value as the string itself. */
function kept(values: readonly string[]): Values {
  if (values.length === 0) return NONE;
  return values.length === 1 ? values[0]! : values;
}

const NONE: readonly string[] = Object.freeze([]);
