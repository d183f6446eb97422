import { describe, expect, it } from 'vitest';
import { ShardActor } from '../../src/actors/shard-actor.ts';
import { INVALID_DIM } from '../../src/model/risk-fields.ts';
import type { Click } from '../../src/model/click.ts';
import { shardOf } from '../../src/model/partition.ts';
import { decodeRiskMessage, type RiskMessage } from '../../src/model/risk-messages.ts';
import type { RiskRule } from '../../src/model/risk-rules.ts';
import type { ShardActorConfig } from '../../src/model/shard-config.ts';
import { MINUTE_MS, minuteOf } from '../../src/model/time.ts';
import { ManualClock } from '../../src/runtime/clock.ts';
import { riskBatches } from '../../src/runtime/risk-outbox.ts';
import { rng } from '../helpers/click-stream.ts';
import { MemoryState } from '../helpers/memory-state.ts';
import { riskTruth, truthCounts } from '../helpers/risk-truth.ts';

/**
 * Invalid-click rules through real ShardActors (docs/risk.md): N shards, each with its own stream
 * (clicks, the rules message, presence reports and verdicts, in arrival order) and an in-memory
 * store applied as Redis applies a commit. Outboxes are published at commit, every message
 * delivered again now and then (as after a crash outside JetStream's duplicate window), actors
 * crash at random and are restored from their last commit and replay. Once every message is
 * applied and every minute closed, the stored valid and invalid counts equal the oracle computed
 * from the contract over the whole set of clicks (test/helpers/risk-truth.ts).
 */

const SHARDS = 3;
const T0 = Date.UTC(2024, 6, 9, 0, 0, 0);
const CONFIG = (shard: number): ShardActorConfig => ({
  shard,
  shards: SHARDS,
  dimensions: ['country'],
  allowedLatenessMs: 10_000,
  idleTimeoutMs: 5_000,
  retentionMs: 3 * 60 * MINUTE_MS,
});

type Msg = { kind: 'batch'; clicks: Click[] } | { kind: 'risk'; msg: RiskMessage };

class Node {
  readonly stream: Msg[] = [];
  readonly store = new MemoryState();
  actor: ShardActor;
  constructor(
    readonly shard: number,
    private readonly clock: ManualClock,
  ) {
    this.actor = new ShardActor(CONFIG(shard), this.ports());
  }
  ports() {
    return { clock: this.clock, readClosed: this.store.readClosed };
  }
  get pending(): number {
    return this.stream.length - this.actor.lastSeq;
  }
  async step(): Promise<void> {
    const seq = this.actor.lastSeq + 1;
    const m = this.stream[seq - 1]!;
    if (m.kind === 'batch') await this.actor.applyBatch(seq, m.clicks);
    else await this.actor.applyRisk(seq, m.msg);
  }
  /** Like the shard host: publish the outbox, then persist, then tell the actor. */
  commit(nodes: Node[], redeliver: () => boolean, force = false): void {
    const c = this.actor.prepareCommit(this.store.seq, force);
    if (!c) return;
    // As the runtime publishes an outbox: one batch message per addressed shard.
    for (const b of riskBatches(c.outbox ?? [])) {
      const msg = decodeRiskMessage(b.bytes);
      nodes[b.to]!.stream.push({ kind: 'risk', msg });
      if (redeliver()) nodes[b.to]!.stream.push({ kind: 'risk', msg });
    }
    this.store.apply(c);
    this.actor.committed(c);
  }
  async crash(): Promise<void> {
    this.actor = this.store.head
      ? await ShardActor.restore(this.store.head, this.store.reader(), CONFIG(this.shard), this.ports())
      : new ShardActor(CONFIG(this.shard), this.ports());
  }
}

const RULES: RiskRule[] = [
  { name: 'blocked', kind: 'ip_block', cidrs: ['203.0.113.0/24', '2001:db8::/32'] },
  { name: 'ip-ad', kind: 'frequency', key: ['ip', 'ad_id'], max: 2, window_seconds: 60 },
  { name: 'user-ad', kind: 'frequency', key: ['user_id', 'ad_id'], max: 3, window_seconds: 120 },
  { name: 'spread', kind: 'spread', key: ['ip'], distinct: 'ad_id', max: 3, window_seconds: 300 },
];

function stream(seed: number, n: number): Click[] {
  const r = rng(seed);
  // A few busy addresses (over the caps and spreading), a blocked v4 and v6 one, many quiet ones.
  const ips = ['10.0.0.1', '10.0.0.2', '203.0.113.9', '2001:db8::7', ...Array.from({ length: 40 }, (_, i) => `10.1.0.${i}`)];
  const out: Click[] = [];
  for (let i = 0; i < n; i++) {
    const dup = out.length > 0 && r() < 0.08;
    if (dup) {
      out.push(out[Math.floor(r() * out.length)]!);
      continue;
    }
    const c: Click = {
      click_id: `c${seed}-${i}`,
      ad_id: `ad${Math.floor(r() * 9)}`,
      ts: T0 + Math.floor(r() * 6 * MINUTE_MS),
      ip: ips[r() < 0.5 ? Math.floor(r() * 4) : Math.floor(r() * ips.length)]!,
      country: r() < 0.5 ? 'US' : 'FR',
    };
    if (r() < 0.85) c.user_id = `u${Math.floor(r() * 5)}`;
    out.push(c);
  }
  return out;
}

async function run(seed: number, rules: RiskRule[], opts: { crashes: boolean }): Promise<{ nodes: Node[]; clicks: Click[] }> {
  const r = rng(seed * 7919 + 1);
  const clock = new ManualClock(T0 + 8 * MINUTE_MS);
  const nodes = Array.from({ length: SHARDS }, (_, s) => new Node(s, clock));
  for (const n of nodes) n.stream.push({ kind: 'risk', msg: { kind: 'rules', version: 'v1', rules } });
  const clicks = stream(seed, 400);
  for (let i = 0; i < clicks.length; ) {
    const size = 1 + Math.floor(r() * 12);
    const byShard = new Map<number, Click[]>();
    for (const c of clicks.slice(i, i + size)) {
      const s = shardOf(c.ad_id, SHARDS);
      byShard.set(s, [...(byShard.get(s) ?? []), c]);
    }
    for (const [s, list] of byShard) nodes[s]!.stream.push({ kind: 'batch', clicks: list });
    i += size;
  }
  const redeliver = (): boolean => r() < 0.1;
  // Apply in a random interleaving; commit, tick and crash now and then.
  for (let guard = 0; guard < 100_000; guard++) {
    const busy = nodes.filter((n) => n.pending > 0);
    if (busy.length === 0) {
      // Quiet: flush every outbox; done when nothing new arrived.
      for (const n of nodes) n.commit(nodes, redeliver, true);
      if (nodes.every((n) => n.pending === 0)) break;
      continue;
    }
    const n = busy[Math.floor(r() * busy.length)]!;
    await n.step();
    const x = r();
    if (x < 0.15) n.commit(nodes, redeliver);
    else if (x < 0.2) {
      clock.advance(2_000);
      n.actor.tick(n.pending === 0);
    } else if (opts.crashes && x < 0.23) await n.crash();
  }
  // Close every minute and persist it.
  clock.advance(10 * MINUTE_MS);
  for (let round = 0; round < 3; round++) {
    for (const n of nodes) {
      n.actor.tick(true);
      n.commit(nodes, () => false, true);
    }
    for (const n of nodes) while (n.pending > 0) await n.step();
  }
  for (const n of nodes) n.commit(nodes, () => false, true);
  return { nodes, clicks };
}

const sorted = (o: Record<string, number>): Record<string, number> => Object.fromEntries(Object.entries(o).sort(([a], [b]) => (a < b ? -1 : 1)));

function compare(nodes: Node[], clicks: Click[], rules: RiskRule[]): string[] {
  const truth = truthCounts(clicks, riskTruth(clicks, rules));
  const bad: string[] = [];
  const ads = new Set(clicks.map((c) => c.ad_id));
  const minutes = new Set(clicks.map((c) => minuteOf(c.ts)));
  for (const ad of ads) {
    const store = nodes[shardOf(ad, SHARDS)]!.store;
    for (const m of minutes) {
      const t = truth.byAdMinute.get(`${ad}|${m}`) ?? { valid: 0, invalid: 0, byRule: {} };
      const valid = store.get(m, ad) ?? 0;
      const byRule: Record<string, number> = {};
      for (const rule of rules) {
        const v = store.get(m, ad, INVALID_DIM, rule.name) ?? 0;
        if (v !== 0) byRule[rule.name] = v;
      }
      const want = JSON.stringify({ valid: t.valid, byRule: sorted(t.byRule) });
      const got = JSON.stringify({ valid, byRule: sorted(byRule) });
      if (want !== got) bad.push(`${ad} minute ${m - minuteOf(T0)}: want ${want} got ${got}`);
      for (const country of ['US', 'FR']) {
        const tc = truth.byAdMinuteCountry.get(`${ad}|${m}|${country}`)?.valid ?? 0;
        const gc = store.get(m, ad, 'country', country) ?? 0;
        if (tc !== gc) bad.push(`${ad} minute ${m - minuteOf(T0)} ${country}: want valid ${tc} got ${gc}`);
      }
    }
  }
  return bad;
}

describe('invalid-click rules through shard actors', () => {
  for (const seed of [1, 2, 3]) {
    it(`equal the oracle with duplicates, late clicks and redelivered messages (seed ${seed})`, async () => {
      const { nodes, clicks } = await run(seed, RULES, { crashes: false });
      expect(compare(nodes, clicks, RULES).slice(0, 20)).toEqual([]);
      // The stream really exercises every rule.
      const verdicts = [...riskTruth(clicks, RULES).values()];
      for (const rule of RULES) expect(verdicts.filter((v) => v === rule.name).length, rule.name).toBeGreaterThan(0);
    });
  }

  for (const seed of [4, 5, 6]) {
    it(`equal the oracle across crashes and restores (seed ${seed})`, async () => {
      const { nodes, clicks } = await run(seed, RULES, { crashes: true });
      expect(compare(nodes, clicks, RULES).slice(0, 20)).toEqual([]);
    });
  }

  it('apply in file order: a spread rule first sees every click, a frequency rule after it only the rest', async () => {
    const rules = [RULES[3]!, RULES[1]!, RULES[0]!, RULES[2]!];
    const { nodes, clicks } = await run(7, rules, { crashes: true });
    expect(compare(nodes, clicks, rules).slice(0, 20)).toEqual([]);
  });
});
