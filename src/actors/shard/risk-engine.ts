import { AdaggError, ErrorCode } from '../../errors.ts';
import { encodeBatch } from '../../model/batch-codec.ts';
import type { Click } from '../../model/click.ts';
import type { PresenceMessage, RiskOut, VerdictMessage } from '../../model/risk-messages.ts';
import type { CompiledRiskRules, RiskRule } from '../../model/risk-rules.ts';
import { riskPartition } from '../../model/risk-rules.ts';
import type { StateOp, StateReader } from '../../model/shard-state.ts';
import { MINUTE_MS, minuteOf } from '../../model/time.ts';
import { frame, unframe } from './hot-parts.ts';
import { Cascade } from './risk/cascade.ts';
import { offenders, type Offender } from './risk/offenders.ts';
import {
  clicksPart, decodeSpreadState, encodeRiskHead, encodeSpreadState, parseRiskHead, SPREAD_PART,
} from './risk/persist.ts';
import type { PresenceChange } from './risk/presence.ts';
import { ClickRec, expiryCut, spreadKey, windowLengths, type SpreadState } from './risk/records.ts';
import { RiskRole, rolePart } from './risk/risk-role.ts';
import { SpreadStates } from './risk/spread-states.ts';

export type { Offender } from './risk/offenders.ts';

/** A click's verdict moved: `before` undefined for a new click; null = valid, else the rule name. */
export interface VerdictChange {
  click: Click;
  before: string | null | undefined;
  after: string | null;
}

export interface RiskPlace {
  unit: number;
  partitions: number;
}

/**
 * Invalid-click verdicts of one shard actor (issue 14, docs/risk.md), pure: no I/O, no clock.
 *
 * Ad role: holds every fresh click inside the horizon, evaluates the rule cascade incrementally
 * (risk/cascade.ts) and reports each spread group's distinct values (presence) to the group's
 * risk partition whenever they change; spread bits come only from that partition's verdicts.
 * Risk role (risk/risk-role.ts): partition `unit` of spread groups.
 *
 * Verdicts are a function of the held clicks, the rules and the spread bits, so a restore
 * re-evaluates instead of storing them, and finds the presence it last sent (the host publishes
 * the outbox before it commits).
 */
export class RiskEngine {
  private cascade: Cascade;
  private readonly states = new SpreadStates();
  private readonly role: RiskRole;
  private readonly windows = new Map<string, number>();
  private readonly minutes = new Map<number, ClickRec[]>();
  private held = 0;
  private cut = -Infinity;
  private out: RiskOut[] = [];
  private outSeq = -1;
  private outK = 0;
  private readonly newRows = new Map<number, Click[]>();
  private droppedMinutes: number[] = [];
  private readonly statesChanged = new Map<string, SpreadState>();
  private readonly statesRemoved = new Set<string>();

  constructor(rules: CompiledRiskRules, private readonly place: RiskPlace) {
    this.cascade = new Cascade(rules, this.states);
    this.learn(rules);
    this.role = new RiskRole((id) => this.windows.get(id));
  }

  get rules(): CompiledRiskRules {
    return this.cascade.rules;
  }

  /** Clicks held. */
  get size(): number {
    return this.held;
  }

  /**
   * The earliest minute of a click held (undefined: none). Verdicts change held clicks only, so
   * no rule can change a minute before it: the actor's sealing bound (windows.ts).
   */
  oldestHeldMinute(): number | undefined {
    let oldest: number | undefined;
    for (const m of this.minutes.keys()) if (oldest === undefined || m < oldest) oldest = m;
    return oldest;
  }

  /** Risk-role groups held (diagnostics). */
  get riskGroups(): number {
    return this.role.size;
  }

  add(clicks: readonly Click[], seq: number): VerdictChange[] {
    const cascade = this.cascade;
    cascade.begin();
    for (const c of clicks) {
      const rec = new ClickRec(c);
      const minute = minuteOf(c.ts);
      const list = this.minutes.get(minute);
      if (list === undefined) this.minutes.set(minute, [rec]);
      else list.push(rec);
      const rows = this.newRows.get(minute);
      if (rows === undefined) this.newRows.set(minute, [c]);
      else rows.push(c);
      cascade.insert(rec);
    }
    this.held += clicks.length;
    cascade.run();
    this.presence(seq, true);
    return this.changes();
  }

  setRules(rules: CompiledRiskRules, seq: number): VerdictChange[] {
    const old = this.cascade;
    const recs: ClickRec[] = [];
    const before: Array<string | null> = [];
    for (const list of this.minutes.values()) {
      for (const rec of list) {
        recs.push(rec);
        before.push(old.name(rec.v));
      }
    }
    this.learn(rules);
    this.cascade = this.evaluate(rules, recs);
    // A rule kept (same id) keeps what its groups last reported; a removed rule's reports no longer count.
    this.cascade.checkAllPresence(old);
    this.presence(seq, true);
    const out: VerdictChange[] = [];
    for (let i = 0; i < recs.length; i++) {
      const rec = recs[i]!;
      const after = this.cascade.name(rec.v);
      if (after !== before[i]) out.push({ click: rec.c, before: before[i], after });
    }
    return out;
  }

  applyPresence(msg: PresenceMessage, seq: number): void {
    this.applyPresences([msg], seq);
  }

  /** The presence reports of one stream message (a batch): each touched group decided once. */
  applyPresences(msgs: readonly PresenceMessage[], seq: number): void {
    for (const v of this.role.applyAll(msgs, seq)) this.queue(v.to, v.msg, seq);
  }

  applyVerdict(msg: VerdictMessage, seq: number): VerdictChange[] {
    return this.applyVerdicts([msg], seq);
  }

  /** The verdicts of one stream message (a batch), evaluated in one pass. */
  applyVerdicts(msgs: readonly VerdictMessage[], seq: number): VerdictChange[] {
    const cascade = this.cascade;
    cascade.begin();
    let moved = false;
    for (const msg of msgs) moved = this.takeVerdict(msg) || moved;
    if (!moved) return [];
    cascade.run();
    this.presence(seq, true);
    return this.changes();
  }

  /** Records one verdict; true when it flipped a spread bit (its group is then marked for the pass). */
  private takeVerdict(msg: VerdictMessage): boolean {
    const cascade = this.cascade;
    const r = cascade.rules.rules.findIndex((x) => x.id === msg.rule && x.rule.kind === 'spread');
    if (r < 0) return false;
    const rule = cascade.rules.rules[r]!.rule;
    if (rule.kind !== 'spread') return false;
    let s = this.states.get(msg.rule, msg.window, msg.key);
    if (s === undefined) {
      s = { spreading: false, vseq: -1, end: (msg.window + 1) * rule.window_seconds * 1000 };
      this.states.set(msg.rule, msg.window, msg.key, s);
    }
    if (msg.seq <= s.vseq) return false;
    const k = spreadKey(msg.rule, msg.window, msg.key);
    s.vseq = msg.seq;
    this.statesChanged.set(k, s);
    this.statesRemoved.delete(k);
    if (s.spreading === msg.spreading) return false;
    s.spreading = msg.spreading;
    cascade.spreadChanged(r, msg.window, msg.key);
    return true;
  }

  /**
   * Drops held clicks that no change can reach any more, and risk-role groups whose window ended
   * at or before `oldestTs - horizonMs`. The caller promises that no click older than `oldestTs`
   * will be added, and that no verdict for a dropped click is still on its way: the spread round
   * trip (presence to the partition, verdict back) must fit in the lag behind which it expires.
   * Clicks go in whole minutes before the latest common boundary of every rule window and of
   * minutes at or before `oldestTs` (expiryCut), so no group is ever cut in two and a restore
   * rebuilds exactly the groups the live engine has. `horizonMs` must cover that boundary's
   * distance from `oldestTs` and the lag of the slowest shard, or a late presence finds its
   * group gone.
   */
  expire(oldestTs: number, horizonMs: number): void {
    const cut = expiryCut(oldestTs, windowLengths(this.rules));
    if (cut !== null && cut > this.cut) {
      this.cut = cut;
      this.cascade.expire(cut);
      for (const [minute, recs] of this.minutes) {
        if ((minute + 1) * MINUTE_MS > cut) continue;
        this.held -= recs.length;
        this.minutes.delete(minute);
        this.newRows.delete(minute);
        this.droppedMinutes.push(minute);
      }
      this.states.expire(cut, (k, s) => {
        this.statesChanged.delete(k);
        if (s.vseq >= 0) this.statesRemoved.add(k);
      });
    }
    this.role.expire(oldestTs - horizonMs);
  }

  outbox(): readonly RiskOut[] {
    return this.out;
  }

  outboxSent(): void {
    this.out = [];
  }

  offenders(rule: string, fromMs: number, toMs: number, limit: number): Offender[] {
    return offenders(this.rules, this.minutes, rule, fromMs, toMs, limit);
  }

  takeOps(): StateOp[] {
    const ops: StateOp[] = [];
    for (const m of this.droppedMinutes) ops.push({ kind: 'del', part: clicksPart(m) });
    this.droppedMinutes = [];
    for (const [m, rows] of this.newRows) ops.push({ kind: 'append', part: clicksPart(m), bytes: frame(encodeBatch(rows)) });
    this.newRows.clear();
    if (this.statesChanged.size > 0) {
      const fields: Array<string | number> = [];
      for (const [k, s] of this.statesChanged) fields.push(k, encodeSpreadState(s));
      ops.push({ kind: 'hset', part: SPREAD_PART, fields });
      this.statesChanged.clear();
    }
    if (this.statesRemoved.size > 0) {
      ops.push({ kind: 'hdel', part: SPREAD_PART, fields: [...this.statesRemoved] });
      this.statesRemoved.clear();
    }
    for (const op of this.role.takeOps()) ops.push(op);
    return ops;
  }

  head(): unknown {
    const rules = this.rules;
    return encodeRiskHead({
      version: rules.version,
      rules: rules.rules.map((r) => r.rule),
      cut: this.cut,
      minutes: [...this.minutes.keys()].sort((a, b) => a - b),
      roleWindows: this.role.windowRefs(),
    });
  }

  static async restore(
    head: unknown,
    reader: StateReader,
    rulesOf: (version: string, rules: RiskRule[]) => CompiledRiskRules,
    place: RiskPlace,
  ): Promise<RiskEngine> {
    const h = parseRiskHead(head);
    const engine = new RiskEngine(rulesOf(h.version, h.rules), place);
    engine.cut = h.cut;
    const [logs, hashes] = await Promise.all([reader.logs(h.minutes.map(clicksPart)), reader.hashes([SPREAD_PART, ...h.roleWindows.map(([id, w]) => rolePart(id, w))])]);
    const recs: ClickRec[] = [];
    try {
      for (const [k, v] of hashes[0] ?? []) if (!engine.states.setByKey(k, decodeSpreadState(v))) throw new Error(`risk spread key ${k}`);
      h.roleWindows.forEach((ref, i) => engine.role.load(ref, hashes[i + 1] ?? new Map()));
      h.minutes.forEach((minute, i) => {
        const list: ClickRec[] = [];
        for (const c of unframe(logs[i] ?? new Uint8Array(0))) list.push(new ClickRec(c));
        if (list.length === 0) return;
        engine.minutes.set(minute, list);
        engine.held += list.length;
        for (const rec of list) recs.push(rec);
      });
    } catch (err) {
      if (err instanceof AdaggError) throw err;
      throw new AdaggError(ErrorCode.SnapshotCorrupt, 'state: risk parts are malformed', { cause: err });
    }
    engine.cascade = engine.evaluate(engine.rules, recs);
    engine.presence(0, false);
    return engine;
  }

  /** A cascade for `rules` over `recs`, fully evaluated. */
  private evaluate(rules: CompiledRiskRules, recs: readonly ClickRec[]): Cascade {
    const cascade = new Cascade(rules, this.states);
    cascade.begin();
    for (const rec of recs) cascade.insert(rec);
    cascade.run();
    return cascade;
  }

  /** Presence of every spread group whose set of values changed since it was last reported: queued when `send`. */
  private presence(seq: number, send: boolean): void {
    const changes = this.cascade.takePresence();
    if (!send) return;
    for (const p of changes) this.queue(riskPartition(p.key, this.place.partitions), this.presenceMsg(p, seq), seq);
  }

  private presenceMsg(p: PresenceChange, seq: number): PresenceMessage {
    const cr = this.rules.rules[p.rule]!;
    const max = cr.rule.kind === 'spread' ? cr.rule.max : 0;
    return { kind: 'presence', rule: cr.id, window: p.window, key: p.key, max, from: this.place.unit, seq, values: p.values };
  }

  private queue(to: number, msg: RiskOut['msg'], seq: number): void {
    if (seq !== this.outSeq) {
      this.outSeq = seq;
      this.outK = 0;
    }
    this.out.push({ to, id: `risk-${this.place.unit}-${seq}-${this.outK++}`, msg });
  }

  private changes(): VerdictChange[] {
    const cascade = this.cascade;
    const out: VerdictChange[] = [];
    for (const rec of cascade.touched) {
      const after = cascade.name(rec.v);
      if (rec.before < 0) out.push({ click: rec.c, before: undefined, after });
      else {
        const before = cascade.name(rec.before);
        if (before !== after) out.push({ click: rec.c, before, after });
      }
    }
    cascade.end();
    return out;
  }

  private learn(rules: CompiledRiskRules): void {
    for (const r of rules.rules) if (r.rule.kind === 'spread') this.windows.set(r.id, r.rule.window_seconds * 1000);
  }
}
