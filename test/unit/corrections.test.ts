import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ShardActor } from '../../src/actors/shard-actor.ts';
import { ShardRankings } from '../../src/actors/shard/rankings.ts';
import { ShardWindows } from '../../src/actors/shard/windows.ts';
import type { Click } from '../../src/model/click.ts';
import { INVALID_DIM } from '../../src/model/risk-fields.ts';
import type { RiskRule } from '../../src/model/risk-rules.ts';
import type { ShardActorConfig } from '../../src/model/shard-config.ts';
import type { CountRead, ShardCommit } from '../../src/model/shard-state.ts';
import { MINUTE_MS, minuteOf } from '../../src/model/time.ts';
import { ManualClock } from '../../src/runtime/clock.ts';
import { correctionMsgId, correctionRecords, type CorrectionRecord } from '../../src/runtime/corrections-outbox.ts';
import { RuntimeEvents } from '../../src/runtime/events.ts';
import { createMetrics } from '../../src/runtime/metrics.ts';
import { rng } from '../helpers/click-stream.ts';
import { MemoryState } from '../helpers/memory-state.ts';

/**
 * The corrections a commit carries (ShardCommit.corrections, published on the corrections feed)
 * and the minutes an actor calls sealed, checked against an in-memory store applied as Redis
 * applies a commit: `old` is the stored value before the commit, `new` the value it writes, every
 * change to a closed, committed minute has one, and no commit changes a minute that was sealed.
 * Crashes between publishing and committing are simulated as the runtime handles them
 * (shard-incarnation.ts): the latest record per field always ends equal to the stored value.
 */

const T0 = Date.UTC(2024, 6, 9, 0, 0, 0);
const M0 = minuteOf(T0);
const key = (m: number, dim: string | null, value: string | null, ad: string): string => `${m}|${dim ?? ''}|${value ?? ''}|${ad}`;

const CONFIG: ShardActorConfig = { shard: 0, shards: 1, dimensions: ['country'], allowedLatenessMs: 10_000, idleTimeoutMs: 5_000, retentionMs: 5 * MINUTE_MS };

/** A shard actor with its store and its corrections feed, committed and crashed like the runtime does. */
class Sim {
  readonly store = new MemoryState();
  readonly feed: CorrectionRecord[] = [];
  actor: ShardActor;
  replayUntil = 0;
  /** The highest sealedThrough ever reported. */
  sealedSeen = -1;
  /** What a query answered for each field of a minute when the minute was first reported sealed. */
  readonly atSeal = new Map<string, number>();
  /** Fields a query may ask for (ads × filters), for the sealed snapshots. */
  fields: Array<[string, string | null, string | null]> = [];
  /** Value of each closed field when its minute was first committed closed. */
  readonly atClose = new Map<string, number>();
  readonly problems: string[] = [];
  constructor(
    readonly clock: ManualClock,
    readonly config: ShardActorConfig = CONFIG,
  ) {
    this.actor = new ShardActor(config, this.ports());
  }
  ports() {
    return { clock: this.clock, readClosed: this.store.readClosed };
  }
  /** Snapshots what a query answers for minutes newly reported sealed (from = the oldest minute of interest). */
  noteSealed(from = M0 - 10): void {
    const st = this.actor.status();
    // Sealing is honest only if no live change ever reaches a sealed minute (refused changes lose clicks).
    if (st.sealedRefusals) this.problems.push(`${st.sealedRefusals} changes refused for sealed minutes`);
    const s = st.sealedThrough!;
    for (let m = Math.max(this.sealedSeen + 1, from); m <= s; m++) {
      for (const [ad, dim, value] of this.fields) this.atSeal.set(key(m, dim, value, ad), this.view(m, ad, dim, value));
    }
    this.sealedSeen = Math.max(this.sealedSeen, s);
  }
  /** What the query service answers for one field of one minute: the actor's, else the store's. */
  view(m: number, ad: string, dim: string | null, value: string | null): number {
    const r = this.actor.queryAd({ adId: ad, fromMinute: m, toMinute: m + 1, dim: dim ?? undefined, value: value ?? undefined });
    const held = r.minutes[0]?.[1] ?? r.corrections[0]?.[1];
    return held ?? this.store.fields.get(key(m, dim, value, ad)) ?? 0;
  }
  /** Sealed minutes whose answer changed since they were reported sealed. */
  sealedProblems(): string[] {
    const out: string[] = [];
    for (const [k, n] of this.atSeal) if ((this.store.fields.get(k) ?? 0) !== n) out.push(`${k}: sealed at ${n}, now ${this.store.fields.get(k) ?? 0}`);
    return out;
  }
  /** Prepares a commit and publishes its corrections; `crash`: dies before writing it. */
  async commit(force: boolean, crash = false): Promise<ShardCommit | null> {
    this.noteSealed();
    const c = this.actor.prepareCommit(this.store.seq, force);
    if (!c) return null;
    const all = this.store.seq < this.replayUntil;
    this.feed.push(...correctionRecords(this.config.shard, c.seq, c.corrections ?? [], 0, all));
    if (crash) {
      await this.restore();
      return null;
    }
    this.check(c);
    const closedBefore = this.store.closedThrough;
    this.store.apply(c);
    // The stored value of each field of a minute this commit closed (its corrections included).
    for (const [k, n] of this.store.fields) {
      const m = Number(k.split('|')[0]);
      if (m > closedBefore && m <= c.closedThrough && !this.atClose.has(k)) this.atClose.set(k, n);
    }
    this.actor.committed(c);
    return c;
  }
  async restore(): Promise<void> {
    this.noteSealed();
    this.actor = this.store.head ? await ShardActor.restore(this.store.head, this.store.reader(), this.config, this.ports()) : new ShardActor(this.config, this.ports());
    this.replayUntil = Math.max(0, ...this.feed.map((r) => r.seq));
  }
  private check(c: ShardCommit): void {
    const closedBefore = this.store.closedThrough;
    const corr = new Map((c.corrections ?? []).map((x) => [key(x.minute, x.dim, x.value, x.adId), x]));
    const written = new Map<string, number>();
    for (const w of c.writes) for (let i = 0; i + 1 < w.counts.length; i += 2) written.set(key(w.minute, w.dim, w.value, w.counts[i] as string), w.counts[i + 1] as number);
    for (const [k, x] of corr) {
      const stored = this.store.fields.get(k) ?? 0;
      // A minute closed while it held no click is not pending: a late click corrects it at once
      // (its stored value, 0), in the commit that also closes it.
      if (x.minute > c.closedThrough) this.problems.push(`${k}: correction of an open minute`);
      if (x.old !== stored) this.problems.push(`${k}: old ${x.old} but stored ${stored}`);
      if (written.get(k) !== x.new) this.problems.push(`${k}: new ${x.new} but written ${written.get(k)}`);
    }
    for (const w of c.writes) {
      for (let i = 0; i + 1 < w.counts.length; i += 2) {
        const k = key(w.minute, w.dim, w.value, w.counts[i] as string);
        const n = w.counts[i + 1] as number;
        const stored = this.store.fields.get(k) ?? 0;
        if (w.minute <= closedBefore && n !== stored && !corr.has(k)) this.problems.push(`${k}: closed minute changed ${stored} -> ${n} without a correction`);
      }
    }
  }
  /** Per field of a closed minute: the latest record equals the stored value; a changed field has one. */
  feedProblems(): string[] {
    const last = new Map<string, CorrectionRecord>();
    for (const r of this.feed) last.set(key(minuteOf(Date.parse(r.minute)), r.dim, r.value, r.ad_id), r);
    const out: string[] = [];
    for (const [k, r] of last) if ((this.store.fields.get(k) ?? 0) !== r.new) out.push(`${k}: last record ${r.new}, stored ${this.store.fields.get(k) ?? 0}`);
    for (const [k, n] of this.store.fields) {
      const m = Number(k.split('|')[0]);
      if (m > this.store.closedThrough || last.has(k)) continue;
      if ((this.atClose.get(k) ?? 0) !== n) out.push(`${k}: changed ${this.atClose.get(k) ?? 0} -> ${n} after closing, no record`);
    }
    return out;
  }
}

const click = (id: string, ad: string, ts: number, country?: string, extra: Partial<Click> = {}): Click => ({ click_id: id, ad_id: ad, ts, ...(country ? { country } : {}), ...extra });

describe('corrections of closed minutes', () => {
  it('names the stored value, the committed value and the cause of a late click', async () => {
    const clock = new ManualClock(T0);
    const sim = new Sim(clock);
    await sim.actor.applyBatch(1, [click('a', 'ad1', T0 + 1000, 'US'), click('b', 'ad1', T0 + 2000, 'US')]);
    await sim.actor.applyBatch(2, [click('c', 'ad2', T0 + 2 * MINUTE_MS)]); // watermark past minute 0
    const closing = await sim.commit(false);
    expect(closing?.closedThrough).toBe(M0);
    expect(closing?.corrections).toBeUndefined();
    await sim.actor.applyBatch(3, [click('d', 'ad1', T0 + 3000, 'FR'), click('e', 'ad1', T0 + 4000, 'US')]);
    const c = await sim.commit(false);
    const got = (c?.corrections ?? []).map((x) => [x.dim, x.value, x.old, x.new, x.cause]).sort();
    expect(got).toEqual(
      [
        [null, null, 2, 4, 'late_click'],
        ['country', 'FR', 0, 1, 'late_click'],
        ['country', 'US', 2, 3, 'late_click'],
      ].sort(),
    );
    const recs = correctionRecords(0, c!.seq, c!.corrections!, T0, false);
    expect(recs[0]).toMatchObject({ ad_id: 'ad1', minute: '2024-07-09T00:00:00.000Z', unit: 0, seq: 3, rule: null });
    expect(sim.problems).toEqual([]);
  });

  it('records: unchanged fields only when asked, invalid-click fields name their rule, ids ignore the time, the metric counts by cause', async () => {
    const list = [
      { minute: M0, adId: 'ad1', dim: null, value: null, old: 2, new: 2, cause: 'late_click' as const },
      { minute: M0, adId: 'ad1', dim: INVALID_DIM, value: 'ip-cap', old: 0, new: 1, cause: 'risk_verdict' as const },
      { minute: M0, adId: 'ad1', dim: `${INVALID_DIM}:ip-cap:country`, value: 'US', old: 0, new: 1, cause: 'risk_verdict' as const },
    ];
    expect(correctionRecords(2, 9, list, T0, false).map((r) => [r.dim, r.rule])).toEqual([
      [INVALID_DIM, 'ip-cap'],
      [`${INVALID_DIM}:ip-cap:country`, 'ip-cap'],
    ]);
    expect(correctionRecords(2, 9, list, T0, true)).toHaveLength(3);
    const [a1] = correctionRecords(2, 9, list, T0, true);
    const [a2] = correctionRecords(2, 9, list, T0 + 5000, true);
    expect(correctionMsgId(a1!)).toBe(correctionMsgId(a2!));
    expect(correctionMsgId(a1!)).not.toBe(correctionMsgId({ ...a1!, new: 3 }));
    const events = new RuntimeEvents();
    const registry = createMetrics(events);
    events.emit('corrections', { shard: 2, seq: 9, byCause: { risk_verdict: 2, late_click: 1 } });
    const text = await registry.metrics();
    expect(text).toContain('adagg_corrections_published_total{cause="risk_verdict"} 2');
    expect(text).toContain('adagg_corrections_published_total{cause="late_click"} 1');
  });

  it('seals a minute once no click can reach it, and the query says so', async () => {
    const clock = new ManualClock(T0);
    const sim = new Sim(clock);
    await sim.actor.applyBatch(1, [click('a', 'ad1', T0 + 1000)]);
    // The first watermark closes (and seals) every minute before any click could be accepted.
    expect(sim.actor.queryAd({ adId: 'ad1', fromMinute: M0, toMinute: M0 + 1 }).sealedThrough).toBeLessThan(M0);
    // Watermark = ts - 10 s: minute 0 ends at T0 + 60 s, sealed once wm - 5 min >= that.
    await sim.actor.applyBatch(2, [click('b', 'ad1', T0 + 6 * MINUTE_MS + 10_000)]);
    const r = sim.actor.queryAd({ adId: 'ad1', fromMinute: M0, toMinute: M0 + 1 });
    expect(r.closedThrough).toBeGreaterThanOrEqual(M0);
    expect(r.sealedThrough).toBe(M0);
    // Just inside the horizon: closed, not sealed.
    expect(sim.actor.status().sealedThrough!).toBeLessThan(M0 + 1);
    const late = await sim.actor.applyBatch(3, [click('c', 'ad1', T0 + 30_000)]);
    expect(late.tooOld.map((x) => x.click_id)).toEqual(['c']);
  });

  it('refuses a report delta for a sealed minute (a hot child behind its parent) and counts it', async () => {
    const reads: CountRead[][] = [];
    const w = new ShardWindows([], new ShardRankings(10, 5), async (r) => (reads.push([...r]), r.map(() => 7)), { closedThrough: M0 + 5, open: new Map() });
    w.sealUpTo(M0 + 2);
    await w.loadDeltaFields('ad1', [{ minute: M0 + 1, dim: null, value: null, delta: 2 }]);
    expect(reads).toEqual([]);
    expect(w.addDelta('ad1', { minute: M0 + 1, dim: null, value: null, delta: 2 }, 'hot_report')).toBe(false);
    expect(w.sealedRefusals).toBe(1);
    await w.loadDeltaFields('ad1', [{ minute: M0 + 4, dim: null, value: null, delta: 3 }]);
    expect(w.addDelta('ad1', { minute: M0 + 4, dim: null, value: null, delta: 3 }, 'hot_report')).toBe(true);
    expect(w.pendingCorrections()).toEqual([{ minute: M0 + 4, adId: 'ad1', dim: null, value: null, old: 7, new: 10, cause: 'hot_report' }]);
    // A field read but moved back to its stored value is still listed (old === new): the runtime decides.
    w.addDelta('ad1', { minute: M0 + 4, dim: null, value: null, delta: -3 }, 'risk_verdict');
    expect(w.pendingCorrections()).toEqual([{ minute: M0 + 4, adId: 'ad1', dim: null, value: null, old: 7, new: 7, cause: 'risk_verdict' }]);
    w.committed();
    expect(w.pendingCorrections()).toEqual([]);
  });

  it('random late clicks, idle ticks and crashes between publish and commit: old/new exact, sealed minutes never change, last record = stored', async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 1_000_000 }), async (seed) => {
        const r = rng(seed);
        const clock = new ManualClock(T0);
        const sim = new Sim(clock);
        const ads = ['a1', 'a2', 'a3'];
        sim.fields = ads.flatMap((a) => [[a, null, null], [a, 'country', 'US'], [a, 'country', 'FR']] as Array<[string, string | null, string | null]>);
        const sent: Click[] = [];
        const stream: Click[][] = [];
        let tMax = T0;
        for (let step = 0; step < 120; step++) {
          const batch: Click[] = [];
          for (let i = 0, n = 1 + Math.floor(r() * 5); i < n; i++) {
            if (sent.length > 0 && r() < 0.1) {
              batch.push(sent[Math.floor(r() * sent.length)]!);
              continue;
            }
            tMax += Math.floor(r() * 8000);
            // Mostly on time, some late (into closed minutes), a few past the horizon (too old).
            const lag = r() < 0.7 ? 0 : r() < 0.85 ? Math.floor(r() * 4 * MINUTE_MS) : Math.floor(r() * 9 * MINUTE_MS);
            const c = click(`c${seed}-${step}-${i}`, ads[Math.floor(r() * ads.length)]!, tMax - lag, r() < 0.5 ? 'US' : 'FR');
            sent.push(c);
            batch.push(c);
          }
          stream.push(batch);
          await sim.actor.applyBatch(stream.length, batch);
          sim.noteSealed();
          const x = r();
          if (x < 0.3) await sim.commit(false);
          else if (x < 0.35) {
            await sim.commit(false, true);
            // The stream is replayed from the committed position.
            for (let s = sim.actor.lastSeq + 1; s <= stream.length; s++) await sim.actor.applyBatch(s, stream[s - 1]!);
          } else if (x < 0.4) {
            clock.advance(6_000);
            sim.actor.tick(true);
          }
        }
        await sim.commit(true);
        expect(sim.problems.slice(0, 5)).toEqual([]);
        expect(sim.feedProblems().slice(0, 5)).toEqual([]);
        expect(sim.sealedProblems().slice(0, 5)).toEqual([]);
        expect(sim.atSeal.size).toBeGreaterThan(0);
      }),
      { numRuns: 40 },
    );
  });

  it('invalid-click rules: verdict changes are risk_verdict corrections, late clicks late_click; the feed stays exact across crashes', async () => {
    const rules: RiskRule[] = [{ name: 'ip-ad', kind: 'frequency', key: ['ip', 'ad_id'], max: 2, window_seconds: 600 }];
    const causes = new Set<string>();
    for (const seed of [1, 2, 3, 4, 5, 6, 7, 8]) {
      const r = rng(seed);
      const clock = new ManualClock(T0);
      const sim = new Sim(clock, { ...CONFIG, retentionMs: 6 * MINUTE_MS });
      sim.fields = ['ad0', 'ad1', 'ad2'].flatMap((a) => [[a, null, null], [a, 'country', 'US'], [a, INVALID_DIM, 'ip-ad']] as Array<[string, string | null, string | null]>);
      await sim.actor.applyRisk(1, { kind: 'rules', version: 'v1', rules });
      await sim.commit(true);
      // Click batches and rules reloads, by stream position (1: the first rules).
      const stream: Array<Click[] | RiskRule[]> = [rules];
      const apply = async (s: number): Promise<unknown> => {
        const m = stream[s - 1]!;
        const isRules = m.length > 0 && 'kind' in m[0]!;
        return isRules ? sim.actor.applyRisk(s, { kind: 'rules', version: `v${s}`, rules: m as RiskRule[] }) : sim.actor.applyBatch(s, m as Click[]);
      };
      let tMax = T0;
      for (let step = 0; step < 300; step++) {
        const batch: Click[] = [];
        for (let i = 0, n = 1 + Math.floor(r() * 4); i < n; i++) {
          tMax += Math.floor(r() * 6000);
          // Late up to the horizon: a late click changes verdicts of clicks up to a rule window before it.
          const lag = r() < 0.6 ? 0 : Math.floor(r() * 6 * MINUTE_MS);
          batch.push(click(`c${seed}-${step}-${i}`, `ad${Math.floor(r() * 3)}`, tMax - lag, r() < 0.5 ? 'US' : 'FR', { ip: `10.0.0.${Math.floor(r() * 4)}` }));
        }
        stream.push(batch);
        await apply(stream.length);
        if (step % 25 === 24) {
          // A rules reload re-judges every held click, old ones included: its changes are risk_verdict.
          stream.push([{ ...rules[0]!, max: step % 50 === 24 ? 1 : 6 } as RiskRule]);
          await apply(stream.length);
        }
        sim.noteSealed();
        const x = r();
        if (x < 0.3) await sim.commit(false);
        else if (x < 0.36) {
          await sim.commit(false, true);
          for (let s = sim.actor.lastSeq + 1; s <= stream.length; s++) await apply(s);
        }
        // The host ticks regularly: expiry of held clicks (what lets minutes seal) runs there.
        if (r() < 0.3) sim.actor.tick(false);
      }
      await sim.commit(true);
      expect(sim.problems.slice(0, 5)).toEqual([]);
      expect(sim.feedProblems().slice(0, 5)).toEqual([]);
      expect(sim.sealedProblems().slice(0, 5)).toEqual([]);
      expect(sim.atSeal.size).toBeGreaterThan(0);
      for (const rec of sim.feed) {
        causes.add(rec.cause);
        if (rec.dim === INVALID_DIM) expect(rec.rule).toBe(rec.value);
      }
    }
    expect([...causes].sort()).toEqual(['late_click', 'risk_verdict']);
  });
});
