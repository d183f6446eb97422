import { rng } from '../helpers/click-stream.ts';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { RiskEngine, type VerdictChange } from '../../src/actors/shard/risk-engine.ts';
import type { Click } from '../../src/model/click.ts';
import { decode, encode } from '../../src/model/msgpack.ts';
import { shardOf } from '../../src/model/partition.ts';
import type { RiskOut } from '../../src/model/risk-messages.ts';
import { compileRiskRules, parseRiskRules, type CompiledRiskRules, type RiskRule } from '../../src/model/risk-rules.ts';
import { MemoryState } from '../helpers/memory-state.ts';
import { riskTruth, truthCounts } from '../helpers/risk-truth.ts';

const BASE = 1_700_000_040_000; // a minute boundary, not a boundary of 90 s or 120 s windows
const ADS = ['a1', 'a2', 'a3', 'a4', 'a5'];
const IPS = ['10.0.0.1', '10.0.0.2', '10.0.0.3', '203.0.113.7', '::ffff:203.0.113.8', '2001:db8::5', '2001:db9::1'];
const USERS = ['u1', 'u2', 'u3'];
const COUNTRIES = ['US', 'DE', 'FR'];

const compile = (rules: RiskRule[]): CompiledRiskRules => compileRiskRules(parseRiskRules(JSON.stringify({ rules }), 'test'));

const clickArb = (ids: number, spanMs: number): fc.Arbitrary<Click> =>
  fc
    .record({
      id: fc.nat(ids),
      ad: fc.constantFrom(...ADS),
      // Coarse times: ties on ts are common, so the click_id order matters.
      t: fc.nat(Math.floor(spanMs / 5000)),
      ip: fc.option(fc.constantFrom(...IPS), { freq: 6 }),
      user: fc.option(fc.constantFrom(...USERS), { freq: 4 }),
      country: fc.option(fc.constantFrom(...COUNTRIES), { freq: 4 }),
    })
    .map(({ id, ad, t, ip, user, country }) => {
      const c: Click = { click_id: `c${id}`, ad_id: ad, ts: BASE + t * 5000 };
      if (ip !== null) c.ip = ip;
      if (user !== null) c.user_id = user;
      if (country !== null) c.country = country;
      return c;
    });

const windowArb = fc.constantFrom(60, 90, 120);
const ruleArb: fc.Arbitrary<Omit<RiskRule, 'name'>> = fc.oneof(
  fc.record({ kind: fc.constant('ip_block' as const), cidrs: fc.constantFrom(['203.0.113.0/24'], ['2001:db8::/32'], ['10.0.0.2/32', '2001:db8::/32']) }),
  fc.record({
    kind: fc.constant('frequency' as const),
    key: fc.constantFrom(['ad_id'], ['ip', 'ad_id'], ['user_id', 'ad_id'], ['ad_id', 'country']),
    max: fc.nat(3),
    window_seconds: windowArb,
  }),
  fc.record({
    kind: fc.constant('spread' as const),
    key: fc.constantFrom(['ip'], ['user_id'], ['country'], ['ip', 'country']),
    distinct: fc.constant('ad_id'),
    max: fc.nat(3),
    window_seconds: windowArb,
  }),
  fc.record({
    kind: fc.constant('spread' as const),
    key: fc.constantFrom(['ad_id'], ['user_id']),
    distinct: fc.constant('ip'),
    max: fc.nat(2),
    window_seconds: windowArb,
  }),
);
const rulesArb = fc.array(ruleArb, { minLength: 1, maxLength: 5 }).map((rs) => rs.map((r, i) => ({ ...r, name: `r${i}` }) as RiskRule));

function dedupe(clicks: readonly Click[]): Click[] {
  const seen = new Set<string>();
  return clicks.filter((c) => !seen.has(c.click_id) && (seen.add(c.click_id), true));
}

/** Applies verdict changes to a tracked map, checking each `before` against what was tracked. */
function track(verdicts: Map<string, string | null>, changes: readonly VerdictChange[]): void {
  for (const ch of changes) {
    const cur = verdicts.get(ch.click.click_id);
    expect(ch.before).toBe(cur);
    expect(ch.after).not.toBe(ch.before);
    verdicts.set(ch.click.click_id, ch.after);
  }
}

const mulberry = rng;

type Input =
  | { kind: 'clicks'; clicks: Click[] }
  | { kind: 'msg'; out: RiskOut }
  | { kind: 'rules'; rules: CompiledRiskRules }
  | { kind: 'expire'; oldestTs: number; horizonMs: number };

/**
 * One shard actor around an engine: inputs at increasing sequences, commits every few inputs
 * (outbox published first, then the ops and head into a MemoryState), crashes that restore from
 * the last commit and replay the inputs since (each at its sequence), as the host does.
 */
class SimShard {
  engine: RiskEngine;
  seq = 0;
  private readonly store = new MemoryState();
  private log: Array<{ seq: number; input: Input }> = [];
  private committed = new Map<string, string | null>();
  verdicts = new Map<string, string | null>();

  constructor(
    rules: CompiledRiskRules,
    readonly unit: number,
    readonly partitions: number,
    private readonly publish: (out: RiskOut) => void,
  ) {
    this.initial = rules;
    this.engine = new RiskEngine(rules, { unit, partitions });
  }

  private readonly initial: CompiledRiskRules;

  input(input: Input, seq = input.kind === 'expire' ? this.seq : ++this.seq): void {
    this.log.push({ seq, input });
    const e = this.engine;
    if (input.kind === 'clicks') track(this.verdicts, e.add(input.clicks, seq));
    else if (input.kind === 'rules') track(this.verdicts, e.setRules(input.rules, seq));
    else if (input.kind === 'expire') e.expire(input.oldestTs, input.horizonMs);
    else if (input.out.msg.kind === 'presence') e.applyPresence(input.out.msg, seq);
    else if (input.out.msg.kind === 'verdict') track(this.verdicts, e.applyVerdict(input.out.msg, seq));
  }

  commit(): void {
    for (const out of this.engine.outbox()) this.publish(out);
    this.engine.outboxSent();
    const ops = this.engine.takeOps();
    this.store.apply({ seq: this.seq, watermark: 0, closedThrough: 0, head: encode(this.engine.head()), writes: [], ops });
    this.log = [];
    this.committed = new Map(this.verdicts);
  }

  async crash(): Promise<void> {
    const log = this.log;
    this.log = [];
    this.verdicts = new Map(this.committed);
    const place = { unit: this.unit, partitions: this.partitions };
    this.engine = this.store.head
      ? await RiskEngine.restore(decode(this.store.head), this.store.reader(), (version, rules) => compileRiskRules({ version, rules }), place)
      : new RiskEngine(this.initial, place);
    for (const { seq, input } of log) this.input(input, seq);
  }
}

interface Scenario {
  clicks: Click[];
  rules: RiskRule[];
  next: RiskRule[] | null;
  shards: number;
  seed: number;
  batches: number;
  /** Clicks arrive nearly in time order and every shard expires what no later click can reach. */
  expire?: boolean;
}

/** Clicks still held by the shards at the end of each simulation (expiry checks). */
const held: number[] = [];

async function simulate(s: Scenario): Promise<Map<string, string | null>> {
  const rand = mulberry(s.seed);
  const inflight: RiskOut[] = [];
  const published = new Map<string, RiskOut>();
  const delivered: RiskOut[] = [];
  const publish = (out: RiskOut): void => {
    const prev = published.get(out.id);
    if (prev !== undefined) {
      // A replay re-creates the same message under the same id (the stream drops the copy).
      expect(out).toEqual(prev);
      return;
    }
    published.set(out.id, out);
    inflight.push(out);
  };
  const first = compile(s.rules);
  const shards = Array.from({ length: s.shards }, (_, i) => new SimShard(first, i, s.shards, publish));
  // Arrival order and batch splits.
  const order = dedupe(s.clicks);
  for (let i = order.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [order[i], order[j]] = [order[j]!, order[i]!];
  }
  if (s.expire === true) {
    order.sort((x, y) => x.ts - y.ts);
    for (let i = 0; i + 1 < order.length; i++) if (rand() < 0.3) [order[i], order[i + 1]] = [order[i + 1]!, order[i]!];
  }
  const batches: Click[][] = [];
  for (let i = 0; i < order.length; ) {
    const n = 1 + Math.floor(rand() * Math.max(1, Math.ceil(order.length / s.batches)));
    batches.push(order.slice(i, i + n));
    i += n;
  }
  const rulesAt = s.next === null ? -1 : Math.floor(rand() * (batches.length + 1));
  const nextRules = s.next === null ? null : compile(s.next);
  const pendingRules = new Set<number>();
  let rulesQueued = false;
  let b = 0;
  for (let step = 0; ; step++) {
    if (step > 200_000) throw new Error('no quiescence');
    if (b === rulesAt && !rulesQueued) {
      rulesQueued = true;
      for (const sh of shards) pendingRules.add(sh.unit);
    }
    const choices: Array<() => Promise<void> | void> = [];
    // Expiry assumes no risk message that could still change a dropped click is in flight (the
    // host expires behind a lag that covers the round trip): batches wait until all is delivered.
    if (s.expire === true && b < batches.length && inflight.length === 0) for (const sh of shards) sh.commit();
    if (b < batches.length && (s.expire !== true || inflight.length === 0)) {
      choices.push(() => {
        if (s.expire === true) {
          let oldestTs = Infinity;
          for (let i = b; i < batches.length; i++) for (const c of batches[i]!) oldestTs = Math.min(oldestTs, c.ts);
          for (const sh of shards) sh.input({ kind: 'expire', oldestTs, horizonMs: 600_000 });
        }
        const byShard = new Map<number, Click[]>();
        for (const c of batches[b++]!) {
          const k = shardOf(c.ad_id, s.shards);
          byShard.set(k, [...(byShard.get(k) ?? []), c]);
        }
        for (const [k, cs] of byShard) shards[k]!.input({ kind: 'clicks', clicks: cs });
      });
    }
    if (inflight.length > 0) {
      choices.push(() => {
        const out = inflight.splice(Math.floor(rand() * inflight.length), 1)[0]!;
        delivered.push(out);
        shards[out.to]!.input({ kind: 'msg', out });
      });
    }
    if (pendingRules.size > 0) {
      choices.push(() => {
        const unit = [...pendingRules][Math.floor(rand() * pendingRules.size)]!;
        pendingRules.delete(unit);
        shards[unit]!.input({ kind: 'rules', rules: nextRules! });
      });
    }
    if (delivered.length > 0 && rand() < 0.1) {
      choices.push(() => {
        const out = delivered[Math.floor(rand() * delivered.length)]!;
        shards[out.to]!.input({ kind: 'msg', out });
      });
    }
    if (rand() < 0.03) choices.push(() => shards[Math.floor(rand() * shards.length)]!.crash());
    if (choices.length === 0) {
      // Quiet unless something is still held back by an uncommitted outbox.
      for (const sh of shards) sh.commit();
      if (inflight.length === 0) break;
      continue;
    }
    await choices[Math.floor(rand() * choices.length)]!();
    if (rand() < 0.3) shards[Math.floor(rand() * shards.length)]!.commit();
  }
  const verdicts = new Map<string, string | null>();
  for (const sh of shards) for (const [k, v] of sh.verdicts) verdicts.set(k, v);
  held.push(shards.reduce((n, sh) => n + sh.engine.size, 0));
  return verdicts;
}

const scenarioArb = (next: boolean): fc.Arbitrary<Scenario> =>
  fc.record({
    clicks: fc.array(clickArb(60, 300_000), { maxLength: 70 }),
    rules: rulesArb,
    next: next ? rulesArb.map((r): RiskRule[] | null => r) : fc.constant(null),
    shards: fc.integer({ min: 1, max: 4 }),
    seed: fc.integer(),
    batches: fc.integer({ min: 1, max: 12 }),
  });

describe('RiskEngine against the independent truth', () => {
  it('multi-shard, random arrival, batches, message interleavings, duplicates and crashes: verdicts equal the truth', async () => {
    await fc.assert(
      fc.asyncProperty(scenarioArb(false), async (s) => {
        const verdicts = await simulate(s);
        expect(verdicts).toEqual(riskTruth(s.clicks, s.rules));
      }),
      { numRuns: 300 },
    );
  });

  it('a rules change mid-stream gives the truth under the new rules', async () => {
    await fc.assert(
      fc.asyncProperty(scenarioArb(true), async (s) => {
        const verdicts = await simulate(s);
        expect(verdicts).toEqual(riskTruth(s.clicks, s.next!));
      }),
      { numRuns: 200 },
    );
  });

  it('expiry drops clicks no later click can reach and keeps what later verdicts need', async () => {
    held.length = 0;
    let total = 0;
    await fc.assert(
      fc.asyncProperty(scenarioArb(false), async (s) => {
        const verdicts = await simulate({ ...s, clicks: s.clicks.map((c, i) => ({ ...c, ts: c.ts + i * 60_000 })), expire: true });
        total += new Set(s.clicks.map((c) => c.click_id)).size;
        expect(verdicts).toEqual(riskTruth(s.clicks.map((c, i) => ({ ...c, ts: c.ts + i * 60_000 })), s.rules));
      }),
      { numRuns: 200 },
    );
    // Something was dropped: the clicks are spread over up to 75 minutes. Without expiry every click
    // stays held (ratio 1); with it, 0.46–0.53 of them over 11 runs of 200 random scenarios, so the
    // bound sits far from both (0.5 failed about one run in ten).
    expect(held.reduce((a, b) => a + b, 0)).toBeLessThan(total * 0.75);
  });
});

/** One engine that is its own risk partition: runs its outbox to itself until quiet. */
function solo(rules: CompiledRiskRules): { engine: RiskEngine; seq: { n: number }; verdicts: Map<string, string | null>; add(cs: Click[]): VerdictChange[] } {
  const engine = new RiskEngine(rules, { unit: 0, partitions: 1 });
  const seq = { n: 0 };
  const verdicts = new Map<string, string | null>();
  const pump = (e: RiskEngine, changes: VerdictChange[]): VerdictChange[] => {
    for (let guard = 0; e.outbox().length > 0; guard++) {
      if (guard > 10_000) throw new Error('no quiescence');
      const outs = [...e.outbox()];
      e.outboxSent();
      for (const o of outs) {
        if (o.msg.kind === 'presence') e.applyPresence(o.msg, ++seq.n);
        else if (o.msg.kind === 'verdict') changes.push(...e.applyVerdict(o.msg, ++seq.n));
      }
    }
    return changes;
  };
  return {
    engine,
    seq,
    verdicts,
    add(cs) {
      const changes = pump(this.engine, this.engine.add(cs, ++seq.n));
      track(verdicts, changes);
      return changes;
    },
  };
}

function truthOffenders(clicks: Click[], rules: RiskRule[], rule: RiskRule): Array<{ key: Record<string, string>; invalid: number }> {
  const truth = riskTruth(clicks, rules);
  const fields = rule.kind === 'ip_block' ? ['ip'] : rule.key;
  const counts = new Map<string, { key: Record<string, string>; invalid: number }>();
  for (const c of dedupe(clicks)) {
    if (truth.get(c.click_id) !== rule.name) continue;
    const key = Object.fromEntries(fields.map((f) => [f, String((c as unknown as Record<string, unknown>)[f] ?? c.attrs?.[f])]));
    const k = JSON.stringify(key);
    const e = counts.get(k);
    if (e) e.invalid++;
    else counts.set(k, { key, invalid: 1 });
  }
  return [...counts.values()].sort((a, b) => b.invalid - a.invalid);
}

const sortChanges = (cs: VerdictChange[]): VerdictChange[] =>
  [...cs].sort((x, y) => (x.click.click_id < y.click.click_id ? -1 : x.click.click_id > y.click.click_id ? 1 : 0));

const byCount = (list: Array<{ key: Record<string, string>; invalid: number }>): string[] =>
  list.map((o) => `${o.invalid}:${JSON.stringify(o.key)}`).sort();

describe('RiskEngine persistence and queries', () => {
  it('restore from its ops and head gives the same verdicts, offenders and future behaviour', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(clickArb(80, 300_000), { maxLength: 80 }), rulesArb, fc.nat(80), async (clicks, rules, at) => {
        const unique = dedupe(clicks);
        const compiled = compile(rules);
        const a = solo(compiled);
        const store = new MemoryState();
        const commit = (): void =>
          store.apply({ seq: a.seq.n, watermark: 0, closedThrough: 0, head: encode(a.engine.head()), writes: [], ops: a.engine.takeOps() });
        const cutAt = Math.min(at, unique.length);
        for (let i = 0; i < cutAt; i += 7) {
          a.add(unique.slice(i, Math.min(i + 7, cutAt)));
          commit();
        }
        commit();
        const restored = await RiskEngine.restore(decode(store.head!), store.reader(), (version, rs) => compileRiskRules({ version, rules: rs }), { unit: 0, partitions: 1 });
        expect(restored.size).toBe(a.engine.size);
        expect(restored.outbox()).toEqual([]);
        for (const r of rules) expect(restored.offenders(r.name, 0, Infinity, 1000)).toEqual(a.engine.offenders(r.name, 0, Infinity, 1000));
        // The rest of the stream on both: the same changes and messages.
        const b = solo(compiled);
        b.engine = restored;
        b.seq.n = a.seq.n;
        for (const [k, v] of a.verdicts) b.verdicts.set(k, v);
        for (let i = cutAt; i < unique.length; i += 5) {
          const batch = unique.slice(i, i + 5);
          const ca = a.engine.add(batch, ++a.seq.n);
          const cb = b.engine.add(batch, ++b.seq.n);
          // The same changes (their order follows arrival, which a restore does not keep).
          expect(sortChanges(cb)).toEqual(sortChanges(ca));
          expect(b.engine.outbox()).toEqual(a.engine.outbox());
          track(a.verdicts, ca);
          track(b.verdicts, cb);
          // Then each runs its messages to itself.
          expect(sortChanges(b.add([]))).toEqual(sortChanges(a.add([])));
        }
        expect(b.verdicts).toEqual(riskTruth(clicks, rules));
        // Offenders equal the truth's, by key.
        for (const r of rules) expect(byCount(b.engine.offenders(r.name, 0, Infinity, 1000))).toEqual(byCount(truthOffenders(clicks, rules, r)));
        // Dropping every rule lists every invalid click with its verdict: the same on both.
        const none = compile([]);
        const key = (cs: VerdictChange[]): string[] => cs.map((c) => `${c.click.click_id}:${c.before}`).sort();
        expect(key(b.engine.setRules(none, ++b.seq.n))).toEqual(key(a.engine.setRules(none, ++a.seq.n)));
      }),
      { numRuns: 150 },
    );
  });

  it('the contract example: a blocked network, an IP over its cap, a user over its cap, an IP spreading over ads', () => {
    const rules: RiskRule[] = [
      { name: 'blocked', kind: 'ip_block', cidrs: ['203.0.113.0/24', '2001:db8::/32'] },
      { name: 'ip-ad-cap', kind: 'frequency', key: ['ip', 'ad_id'], max: 2, window_seconds: 60 },
      { name: 'user-ad-cap', kind: 'frequency', key: ['user_id', 'ad_id'], max: 3, window_seconds: 3600 },
      { name: 'ip-spread', kind: 'spread', key: ['ip'], distinct: 'ad_id', max: 3, window_seconds: 600 },
    ];
    const t = BASE;
    const clicks: Click[] = [
      { click_id: 'b1', ad_id: 'a1', ts: t, ip: '203.0.113.9' },
      { click_id: 'b2', ad_id: 'a1', ts: t + 1, ip: '::ffff:203.0.113.10' },
      ...[0, 1, 2, 3].map((i) => ({ click_id: `h${i}`, ad_id: 'a2', ts: t + 1000 * (4 - i), ip: '10.1.1.1' })),
      ...[0, 1, 2, 3, 4].map((i) => ({ click_id: `u${i}`, ad_id: 'a3', ts: t + 60_000 * i, user_id: 'greedy', ip: `10.2.0.${i}` })),
      ...[0, 1, 2, 3].map((i) => ({ click_id: `s${i}`, ad_id: `x${i}`, ts: t + 5000 * i, ip: '10.9.9.9' })),
      { click_id: 'n1', ad_id: 'a1', ts: t, ip: '10.0.0.7', country: 'US' },
      { click_id: 'h1', ad_id: 'a2', ts: t, ip: '10.1.1.1' }, // duplicate: never counted
    ];
    const s = solo(compile(rules));
    // Late click first, in two batches.
    const unique = dedupe(clicks);
    s.add(unique.slice(6, 15));
    s.add([...unique.slice(0, 6), ...unique.slice(15)]);
    const truth = riskTruth(clicks, rules);
    expect(s.verdicts).toEqual(truth);
    expect(Object.fromEntries(truth)).toEqual({
      b1: 'blocked', b2: 'blocked',
      h3: null, h2: null, h1: 'ip-ad-cap', h0: 'ip-ad-cap',
      u0: null, u1: null, u2: null, u3: 'user-ad-cap', u4: 'user-ad-cap',
      s0: 'ip-spread', s1: 'ip-spread', s2: 'ip-spread', s3: 'ip-spread',
      n1: null,
    });
    const counts = truthCounts(clicks, truth);
    expect(counts.byAdMinute.get(`a2|${t / 60_000}`)).toEqual({ valid: 2, invalid: 2, byRule: { 'ip-ad-cap': 2 } });
    expect(counts.byAdMinuteCountry.get(`a1|${t / 60_000}|US`)).toEqual({ valid: 1, invalid: 0, byRule: {} });
    expect(s.engine.offenders('ip-ad-cap', t, t + 60_000, 10)).toEqual([{ key: { ip: '10.1.1.1', ad_id: 'a2' }, invalid: 2 }]);
    expect(s.engine.offenders('ip-spread', t, t + 60_000, 1)).toEqual([{ key: { ip: '10.9.9.9' }, invalid: 4 }]);
    expect(s.engine.offenders('blocked', t + 1, t + 2, 10)).toEqual([{ key: { ip: '::ffff:203.0.113.10' }, invalid: 1 }]);
  });
});
