/**
 * `npm run chaos`: the chaos suite, in the spirit of Jepsen and Orleans' chaotic cluster tests. One
 * cluster (3 NATS servers with R3 streams, Redis with AOF, 3 runtime nodes, a gateway) is kept
 * running across rounds; each round adds steady load, injects one or two random faults drawn from
 * the round's seed, heals them, waits for the cluster to catch up and checks every count against
 * the producer's truth: 0 lost, 0 doubled. See docs/chaos.md.
 *
 * @example
 * npm run chaos -- --rounds 5                 # a smoke run (CI)
 * npm run chaos -- --seed 4242 --rounds 100   # replays a whole run
 * npm run chaos -- --seed 4249 --rounds 1     # replays the round that had seed 4249
 */
import { parseArgs } from 'node:util';
import { pace } from '../helpers/wait.ts';
import { converge } from './check.ts';
import { describeFault, planFaults, runFault } from './faults.ts';
import { ChaosProducer } from './producer.ts';
import { roundLine, say, summary, type RoundResult } from './report.ts';
import { NODE_IDS, World } from './world.ts';

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: process.env.CHAOS_ROUNDS ?? '100' },
    seed: { type: 'string', default: process.env.CHAOS_SEED },
    rate: { type: 'string', default: '1500' },
    deadline: { type: 'string', default: '150' },
    'keep-going': { type: 'boolean', default: false },
    'strict-exits': { type: 'boolean', default: false },
  },
});
const positive = (name: string, v: string | undefined): number => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) {
    process.stderr.write(`--${name} must be a positive integer (got ${v})\n`);
    process.exit(2);
  }
  return n;
};
const ROUNDS = positive('rounds', values.rounds);
const SEED = values.seed === undefined ? Math.floor(Math.random() * 1e9) : positive('seed', values.seed);
const RATE = positive('rate', values.rate);
const DEADLINE_MS = positive('deadline', values.deadline) * 1000;
/** Shortest load phase of a round, and load kept up after the last fault healed. */
const MIN_LOAD_MS = 10_000;
const LOAD_AFTER_HEAL_MS = 1500;

/** The end of a process's output without client reconnect noise, which would crowd out the cause. */
function tail(out: string): string {
  return out
    .split('\n')
    .filter((l) => !/Unhandled error event|TCPConnectWrap|ECONNREFUSED/.test(l))
    .join('\n')
    .slice(-4000);
}

async function round(w: World, producer: ChaosProducer, i: number): Promise<RoundResult> {
  const seed = SEED + i;
  const faults = planFaults(seed);
  say(`round ${i + 1}/${ROUNDS} seed ${seed}: ${faults.map(describeFault).join(', ')}`);
  const linesBefore = producer.stats.ackedLines;
  const t0 = Date.now();
  const note = (s: string): void => say(`  +${((Date.now() - t0) / 1000).toFixed(1)}s ${s}`);
  producer.start(seed);
  const problems: string[] = [];
  await Promise.all(faults.map((f) => runFault(w, f, t0, note).catch((err: unknown) => void problems.push(`${f.kind} ${f.target}: ${String(err)}`))));
  await pace(Math.max(LOAD_AFTER_HEAL_MS, t0 + MIN_LOAD_MS - Date.now())); // the rest of the load phase
  if (!(await producer.drain(60_000))) problems.push(`a POST was not acknowledged within 60 s of healing: ${producer.errors.slice(-3).join(' | ')}`);
  note(`load paused: ${producer.stats.ackedLines - linesBefore} lines acknowledged this round (${producer.stats.retries} retried posts so far); verifying`);
  // A process that exited on its own (not killed by a fault) is restarted, as a supervisor would,
  // and reported; with --strict-exits it fails the round.
  const exits = values['strict-exits'] ? [] : await w.restartExited();
  const conv = await converge(w, producer.truth, { deadlineMs: DEADLINE_MS, strictExits: values['strict-exits'], progress: note });
  exits.push(...conv.exits);
  const byText = new Map<string, number>();
  for (const e of exits) byText.set(e, (byText.get(e) ?? 0) + 1);
  for (const [e, n] of byText) note(`EXIT${n > 1 ? ` ×${n}` : ''} ${e}`);
  const cmp = conv.comparison;
  const ok = conv.ok && problems.length === 0;
  const why = [...problems, ...(conv.ok ? [] : [conv.why])].join('; ');
  if (!ok) {
    say(`ROUND FAILED (seed ${seed}): ${why}`);
    if (cmp?.samples.length) say(`differing cells:\n  ${cmp.samples.join('\n  ')}`);
    if (cmp?.failures.length) say(`failed queries:\n  ${cmp.failures.slice(0, 5).join('\n  ')}`);
    say(`status: ${JSON.stringify(await w.cluster.status())}`);
    if (producer.errors.length) say(`recent post errors:\n  ${producer.errors.slice(-5).join('\n  ')}`);
    for (const [id, p] of w.cluster.nodes) say(`--- ${id} (alive ${p.alive}) last output:\n${tail(p.output())}`);
    if (w.cluster.gateway) say(`--- gateway (alive ${w.cluster.gateway.alive}) last output:\n${tail(w.cluster.gateway.output())}`);
  }
  return {
    round: i + 1,
    seed,
    faults: faults.map(describeFault),
    kinds: faults.map((f) => f.kind),
    lines: producer.stats.ackedLines - linesBefore,
    checked: cmp?.checked ?? producer.truth.distinct,
    lost: cmp?.lost ?? -1,
    doubled: cmp?.doubled ?? -1,
    convergeMs: conv.ms,
    exits: exits.length,
    ok,
    why,
  };
}

async function main(): Promise<number> {
  say(`chaos: ${ROUNDS} rounds, seed ${SEED} (round i uses seed ${SEED}+i-1), ~${RATE} clicks/s, per-round deadline ${DEADLINE_MS / 1000}s`);
  const started = Date.now();
  const w = await World.start(say);
  say(`cluster up in ${((Date.now() - started) / 1000).toFixed(1)}s: nats ${w.nats.urls}, redis ${w.redis.url}, gateway ${w.cluster.url}`);
  const producer = new ChaosProducer(`k${SEED}`, { url: () => w.cluster.url, ratePerSec: RATE });
  const results: RoundResult[] = [];
  // Ctrl-C reaches the servers too (one process group); a SIGTERM (a CI timeout, `kill`) reaches
  // only this process: either way stop the cluster at once, with the summary so far, and leave no
  // server or node behind.
  const interrupted = (signal: string): void => {
    say(`interrupted (${signal})`);
    void w.stop(false).finally(() => {
      process.stdout.write(`${summary(results, Date.now() - started)}\n`);
      process.exit(130);
    });
  };
  process.once('SIGINT', () => interrupted('SIGINT'));
  process.once('SIGTERM', () => interrupted('SIGTERM'));
  try {
    for (let i = 0; i < ROUNDS; i++) {
      const r = await round(w, producer, i);
      results.push(r);
      say(roundLine(r, ROUNDS));
      if (!r.ok && !values['keep-going']) break;
    }
  } finally {
    await producer.drain(5000);
    const failed = results.some((r) => !r.ok);
    if (failed) say(`data kept under ${w.dir}`);
    await w.stop(failed);
  }
  process.stdout.write(`${summary(results, Date.now() - started)}\n`);
  const ok = results.length === ROUNDS && results.every((r) => r.ok);
  if (!ok) process.stdout.write(`\nreplay the whole run: npm run chaos -- --seed ${SEED} --rounds ${ROUNDS}\n`);
  return ok ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`chaos: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);
