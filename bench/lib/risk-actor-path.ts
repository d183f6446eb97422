/**
 * The actor path of invalid-click filtering on one core, in-process (no servers): one ShardActor
 * (`shards: 1`, so it is also the risk partition of every spread group) applies the same
 * pre-generated batches with no rules and with the rules, the way its host would: a commit every
 * `commitEvery` batches into an in-memory store that applies commits like the Redis one, and the
 * risk messages of each commit (presence reports, verdicts) fed back in as the next stream
 * messages. Reports clicks/s, the state bytes the commits carried per click, and the JS heap the
 * actor keeps per click (after a forced GC).
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { ShardActor } from '../../src/actors/shard-actor.ts';
import type { Click } from '../../src/model/click.ts';
import { decodeRiskMessage, type RiskMessage } from '../../src/model/risk-messages.ts';
import type { RiskRuleSet } from '../../src/model/risk-rules.ts';
import { DEFAULTS } from '../../src/options.ts';
import { ManualClock } from '../../src/runtime/clock.ts';
import { riskBatches } from '../../src/runtime/risk-outbox.ts';
import { MemoryState } from '../../test/helpers/memory-state.ts';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

export interface ActorPathRun {
  rules: boolean;
  clicks: number;
  ms: number;
  clicksPerSec: number;
  /** Risk messages fed back (presence reports and verdicts). */
  riskMessages: number;
  commits: number;
  /** Bytes the commits carried (count fields, parts, heads), per click applied. */
  commitBytesPerClick: number;
  /** JS heap held by the actor at the end (forced GC before and after). */
  heapBytes: number;
  invalid: Record<string, number>;
}

export async function actorPathRun(batches: readonly Click[][], rules: RiskRuleSet | null, commitEvery = 200): Promise<ActorPathRun> {
  gc();
  const heap0 = process.memoryUsage().heapUsed;
  const clock = new ManualClock(Date.now());
  const store = new MemoryState();
  const actor = new ShardActor(
    {
      shard: 0,
      shards: 1,
      dimensions: ['country'],
      allowedLatenessMs: DEFAULTS.allowedLatenessMs,
      idleTimeoutMs: DEFAULTS.idleTimeoutMs,
      retentionMs: DEFAULTS.correctionHorizonMs + DEFAULTS.maxFutureMs + DEFAULTS.allowedLatenessMs + DEFAULTS.idleTimeoutMs,
    },
    { clock, readClosed: store.readClosed },
  );
  let seq = 0;
  let committedSeq = 0;
  let riskMessages = 0;
  const invalid: Record<string, number> = {};
  const count = (t: { taken: Record<string, number>; released: Record<string, number> } | undefined): void => {
    for (const [r, n] of Object.entries(t?.taken ?? {})) invalid[r] = (invalid[r] ?? 0) + n;
    for (const [r, n] of Object.entries(t?.released ?? {})) invalid[r] = (invalid[r] ?? 0) - n;
  };
  let pending: RiskMessage[] = [];
  const commit = async (): Promise<void> => {
    actor.tick(true);
    const c = actor.prepareCommit(committedSeq);
    if (!c) return;
    store.apply(c);
    actor.committed(c);
    committedSeq = c.seq;
    // As the runtime publishes an outbox: one batch message per addressed shard.
    for (const b of riskBatches(c.outbox ?? [])) pending.push(decodeRiskMessage(b.bytes));
  };
  const t0 = performance.now();
  if (rules) count((await actor.applyRisk(++seq, { kind: 'rules', version: rules.version, rules: rules.rules })).risk);
  let clicks = 0;
  for (let i = 0; i < batches.length; i++) {
    // Risk messages of the last commit land in the stream after it: apply them first.
    if (pending.length > 0) {
      const msgs = pending;
      pending = [];
      for (const m of msgs) count((await actor.applyRisk(++seq, m)).risk);
      riskMessages += msgs.length;
    }
    const b = batches[i]!;
    count((await actor.applyBatch(++seq, b)).risk);
    clicks += b.length;
    if ((i + 1) % commitEvery === 0) await commit();
  }
  // Drain: commit, feed back, until no risk message is left.
  for (let rounds = 0; rounds < 100; rounds++) {
    await commit();
    if (pending.length === 0) break;
    const msgs = pending;
    pending = [];
    for (const m of msgs) count((await actor.applyRisk(++seq, m)).risk);
    riskMessages += msgs.length;
  }
  const ms = performance.now() - t0;
  gc();
  const heapBytes = process.memoryUsage().heapUsed - heap0;
  const commitBytes = store.commitSizes.reduce((a, b) => a + b, 0);
  // Keep the actor alive until the heap was read.
  if (actor.lastSeq !== seq) throw new Error(`actor at ${actor.lastSeq}, expected ${seq}`);
  return { rules: rules !== null, clicks, ms, clicksPerSec: (clicks * 1000) / ms, riskMessages, commits: store.commits, commitBytesPerClick: commitBytes / clicks, heapBytes, invalid };
}
