/**
 * Shard → reducer traffic of the live top-N rankings, in a pure in-process simulation (no servers).
 *
 *   node --import tsx bench/topn-traffic.ts [--ads 2000000] [--shards 16] [--minutes 6] [--rate 20000]
 *     [--depth 100] [--windows 1,5,60] [--batch-ms 100] [--tick-ms 500] [--seed 1] [--out bench/results/topn-traffic.md]
 *
 * `--shards` ShardActor instances share one ManualClock. Every simulated `--batch-ms` a batch of
 * Zipf(1.1) clicks over `--ads` distinct ad ids (event time inside that interval, no late events,
 * no duplicates) is routed with shardOf and applied to each shard's actor. Every `--tick-ms` each
 * shard runs exactly what src/runtime/shard-host.ts runs on a tick: `tick(true)` (always caught up),
 * a commit when minutes closed (prepareCommit/committed: the store write is skipped, its count tables
 * are what "whole tables" measures), then `rankingUpdates(provisionalDue)` with the host's ≥ 1 s
 * provisional cadence, and the runtime's wire encoding `encode({shard, updates})` (msgpack).
 * Each message is decoded again and applied to a TopNReducer exactly like TopNReducerHost does.
 *
 * Reported per simulated wall-clock minute k (minute 0 is warm-up: nothing closes in it):
 * - top-N bytes/messages: everything the shards published during minute k (finals of the window
 *   ending at k, i.e. event minute k−1 closed at k:10 by the watermark, plus provisional deltas);
 * - whole tables: msgpack of every (ad, count) of event minute k−1 per shard, `{shard, minute, counts}`,
 *   i.e. shipping the closed minute's full count table to a reducer instead of top-K lists;
 * - live deltas: a naive provisional feed for comparison: each shard sends, once a second, the current
 *   open-minute count of every ad that got a click in that second (`{shard, minute, counts}`);
 * - exact: every global final the reducer produced (each spec, each window end) equals a direct top-K
 *   recount of all generated clicks over [end − window, end); once a minute (at :30) the global
 *   provisional ranking is checked the same way against all clicks applied so far.
 */
import { decode, encode } from '../src/model/msgpack.ts';
import { writeFile, mkdir } from 'node:fs/promises';
import path from 'node:path';
import { ShardActor } from '../src/actors/shard-actor.ts';
import { TopNReducer } from '../src/actors/topn-reducer.ts';
import type { GlobalRanking, RankingUpdate } from '../src/model/rankings.ts';
import type { Click } from '../src/model/click.ts';
import { shardOf } from '../src/model/partition.ts';
import { parseSpecKey, specKey, type RankSpec } from '../src/model/rank-spec.ts';
import { MINUTE_MS, minuteOf } from '../src/model/time.ts';
import { DEFAULTS } from '../src/options.ts';
import { ManualClock } from '../src/runtime/clock.ts';
import { rng, zipf } from '../test/helpers/click-stream.ts';

// ── arguments ────────────────────────────────────────────────────────────────────────────────────
function arg(name: string, def: string): string {
  const i = process.argv.indexOf(`--${name}`);
  if (i >= 0 && process.argv[i + 1] !== undefined) return process.argv[i + 1]!;
  const eq = process.argv.find((a) => a.startsWith(`--${name}=`));
  return eq ? eq.slice(name.length + 3) : def;
}
const ADS = Number(arg('ads', '2000000'));
const SHARDS = Number(arg('shards', '16'));
const MINUTES = Number(arg('minutes', '6'));
const RATE = Number(arg('rate', '20000'));
const DEPTH = Number(arg('depth', '100'));
const WINDOWS = arg('windows', '1,5,60').split(',').map(Number);
const BATCH_MS = Number(arg('batch-ms', '100'));
const TICK_MS = Number(arg('tick-ms', String(DEFAULTS.tickIntervalMs)));
const SEED = Number(arg('seed', '1'));
const ZIPF_S = Number(arg('zipf', '1.1'));
const OUT = arg('out', 'bench/results/topn-traffic.md');
const MAX_WINDOW = Math.max(...WINDOWS);
if (TICK_MS % BATCH_MS !== 0) throw new Error('--tick-ms must be a multiple of --batch-ms');

const log = (s: string): void => void process.stderr.write(`${s}\n`);
const fmt = (n: number): string => Math.round(n).toLocaleString('en-US');
const kib = (b: number): string => `${(b / 1024).toFixed(1)} KiB`;
const mibs = (b: number): string => `${(b / 2 ** 20).toFixed(1)} MiB`;

// ── workload ─────────────────────────────────────────────────────────────────────────────────────
const START = Date.UTC(2030, 0, 1, 0, 0, 0); // a minute boundary
const clock = new ManualClock(START);
const rand = rng(SEED);
const t0 = Date.now();
const pick = zipf(ADS, ZIPF_S, rand);
log(`zipf table for ${fmt(ADS)} ads built in ${Date.now() - t0} ms`);
const adIds: Array<string | undefined> = new Array(ADS);
const adShard = new Int16Array(ADS).fill(-1);
const adIdOf = (i: number): string => (adIds[i] ??= `ad-${i}`);
const shardOfIdx = (i: number): number => {
  let s = adShard[i]!;
  if (s < 0) adShard[i] = s = shardOf(adIdOf(i), SHARDS);
  return s;
};

// Truth: per event minute, the count of every ad (indexed by rank), kept for the longest window.
const truth = new Map<number, Uint32Array>();
const everSeen = new Uint8Array(ADS);
let distinctEver = 0;
const truthOf = (m: number): Uint32Array => {
  let a = truth.get(m);
  if (!a) {
    truth.set(m, (a = new Uint32Array(ADS)));
    for (const k of truth.keys()) if (k < m - MAX_WINDOW - 2) truth.delete(k);
  }
  return a;
};

// ── actors ───────────────────────────────────────────────────────────────────────────────────────
const specs: RankSpec[] = WINDOWS.map((window) => ({ window, dim: null, value: null }));
const specKeys = specs.map(specKey);
const retentionMs = DEFAULTS.correctionHorizonMs + DEFAULTS.maxFutureMs + DEFAULTS.allowedLatenessMs + DEFAULTS.idleTimeoutMs;
interface ShardSim {
  actor: ShardActor;
  seq: number;
  committedSeq: number;
  committedClosedThrough: number;
  lastProvisionalAt: number;
  /** Ads clicked since the last provisional round (for the naive live-delta comparison). */
  touched: Set<number>;
}
const shards: ShardSim[] = [];
for (let s = 0; s < SHARDS; s++) {
  const actor = new ShardActor(
    {
      shard: s,
      dimensions: [],
      allowedLatenessMs: DEFAULTS.allowedLatenessMs,
      idleTimeoutMs: DEFAULTS.idleTimeoutMs,
      retentionMs,
      topnDepth: DEPTH,
      maxLiveWindow: MAX_WINDOW,
    },
    // Late events are never generated, so closed minutes are never read back.
    { clock, readClosed: async (reads) => reads.map(() => 0) },
  );
  // Defaults of ShardRankings are windows 1, 5, 60 (those ≤ maxLiveWindow); add any others as the reducer would.
  actor.addRankSpecs(specs, Infinity);
  shards.push({ actor, seq: 0, committedSeq: 0, committedClosedThrough: -1, lastProvisionalAt: 0, touched: new Set() });
}
const reducer = new TopNReducer(SHARDS, DEPTH);

// ── accounting ───────────────────────────────────────────────────────────────────────────────────
interface MinuteRow {
  minute: number;
  events: number;
  messages: number;
  finalMessages: number;
  bytes: number;
  finalBytes: number;
  provBytes: number;
  finalUpdates: number;
  provUpdates: number;
  provChanged: number;
  provRemoved: number;
  provFull: number;
  tableBytes: number;
  tableEntries: number;
  deltaBytes: number;
  distinctClosed: number;
  distinctEver: number;
  rss: number;
  heap: number;
  dedupBytes: number;
  cpuMs: number;
}
const rows: MinuteRow[] = [];
const newRow = (minute: number): MinuteRow => ({
  minute,
  events: 0,
  messages: 0,
  finalMessages: 0,
  bytes: 0,
  finalBytes: 0,
  provBytes: 0,
  finalUpdates: 0,
  provUpdates: 0,
  provChanged: 0,
  provRemoved: 0,
  provFull: 0,
  tableBytes: 0,
  tableEntries: 0,
  deltaBytes: 0,
  distinctClosed: 0,
  distinctEver: 0,
  rss: 0,
  heap: 0,
  dedupBytes: 0,
  cpuMs: 0,
});
let row = newRow(0);
let peakRss = 0;
const checks = { finals: 0, finalsExact: 0, provs: 0, provsExact: 0, mismatches: [] as string[] };
const finalsChecked = new Map<string, number[]>();

// ── exactness ────────────────────────────────────────────────────────────────────────────────────
const sumBuf = new Uint32Array(ADS);
/** Exact top-`n` over event minutes [from, to) from the truth: count desc, then ad_id asc. */
function recount(from: number, to: number, n: number): Array<{ ad_id: string; count: number }> {
  sumBuf.fill(0);
  for (let m = from; m < to; m++) {
    const a = truth.get(m);
    if (a) for (let i = 0; i < ADS; i++) sumBuf[i]! += a[i]!;
  }
  // n-th largest count as a threshold, then a full sort of the few ads at or above it.
  const nz: number[] = [];
  for (let i = 0; i < ADS; i++) if (sumBuf[i]! > 0) nz.push(sumBuf[i]!);
  if (nz.length === 0) return [];
  const sorted = Float64Array.from(nz).sort();
  const threshold = sorted[Math.max(0, sorted.length - n)]!;
  const rowsOut: Array<{ ad_id: string; count: number }> = [];
  for (let i = 0; i < ADS; i++) if (sumBuf[i]! >= threshold) rowsOut.push({ ad_id: adIdOf(i), count: sumBuf[i]! });
  rowsOut.sort((a, b) => b.count - a.count || (a.ad_id < b.ad_id ? -1 : a.ad_id > b.ad_id ? 1 : 0));
  return rowsOut.slice(0, n);
}

function same(r: GlobalRanking, want: Array<{ ad_id: string; count: number }>): string | undefined {
  if (r.list.length !== want.length) return `length ${r.list.length} vs ${want.length}`;
  for (let i = 0; i < want.length; i++) {
    const a = r.list[i]!;
    const b = want[i]!;
    if (a.ad_id !== b.ad_id || a.count !== b.count) return `rank ${i + 1}: ${a.ad_id}=${a.count} vs ${b.ad_id}=${b.count}`;
  }
  return undefined;
}

function checkFinal(r: GlobalRanking): void {
  const w = parseSpecKey(r.spec).window;
  const diff = same(r, recount(r.end - w, r.end, DEPTH));
  checks.finals++;
  if (diff === undefined) checks.finalsExact++;
  else checks.mismatches.push(`final ${r.spec} end ${r.end}: ${diff}`);
  let ends = finalsChecked.get(r.spec);
  if (!ends) finalsChecked.set(r.spec, (ends = []));
  ends.push(r.end - minuteOf(START));
}

function checkProvisional(): void {
  for (const key of specKeys) {
    const r = reducer.globalProvisional(key);
    if (!r) continue;
    const w = parseSpecKey(key).window;
    const diff = same(r, recount(r.end - w, r.end, DEPTH));
    checks.provs++;
    if (diff === undefined) checks.provsExact++;
    else checks.mismatches.push(`provisional ${key} end ${r.end}: ${diff}`);
  }
}

// ── simulation ───────────────────────────────────────────────────────────────────────────────────
const perBatch = (RATE * BATCH_MS) / 1000;
let carry = 0;
let clickSeq = 0;
const endAt = START + (MINUTES + 1) * MINUTE_MS;
const wallStart = Date.now();
let cpuMark = process.cpuUsage();
let lastLog = 0;
let lastProvCheck = -1;

function closeRow(): void {
  const mu = process.memoryUsage();
  row.rss = mu.rss;
  row.heap = mu.heapUsed;
  row.dedupBytes = shards.reduce((a, s) => a + s.actor.status().dedupBytes, 0);
  row.distinctEver = distinctEver;
  const cpu = process.cpuUsage(cpuMark);
  cpuMark = process.cpuUsage();
  row.cpuMs = (cpu.user + cpu.system) / 1000;
  peakRss = Math.max(peakRss, mu.rss);
  rows.push(row);
  log(
    `minute ${row.minute}: ${fmt(row.events)} events, ${row.messages} msgs, top-N ${kib(row.bytes)} (finals ${kib(row.finalBytes)}, prov ${kib(row.provBytes)}), ` +
      `whole tables ${kib(row.tableBytes)}, rss ${mibs(row.rss)}, cpu ${(row.cpuMs / 1000).toFixed(1)} s, wall ${((Date.now() - wallStart) / 1000).toFixed(0)} s`,
  );
}

for (let t = START; t < endAt; t += BATCH_MS) {
  // Clicks with event time in [t, t + BATCH_MS); then the clock moves to t + BATCH_MS and they are applied.
  carry += perBatch;
  const n = Math.floor(carry);
  carry -= n;
  const byShard: Click[][] = Array.from({ length: SHARDS }, () => []);
  for (let i = 0; i < n; i++) {
    const ad = pick();
    const ts = t + Math.floor((i * BATCH_MS) / n);
    const m = minuteOf(ts);
    truthOf(m)[ad]!++;
    if (everSeen[ad] === 0) {
      everSeen[ad] = 1;
      distinctEver++;
    }
    const s = shardOfIdx(ad);
    shards[s]!.touched.add(ad);
    byShard[s]!.push({ click_id: `c${++clickSeq}`, ad_id: adIdOf(ad), ts });
  }
  row.events += n;
  clock.advance(BATCH_MS);
  const now = clock.now();
  for (let s = 0; s < SHARDS; s++) {
    const batch = byShard[s]!;
    if (batch.length === 0) continue;
    const sim = shards[s]!;
    await sim.actor.applyBatch(++sim.seq, batch);
  }

  if ((now - START) % TICK_MS === 0) {
    const provisionalRound = shards.some((sim) => now - sim.lastProvisionalAt >= 1000);
    for (let s = 0; s < SHARDS; s++) {
      const sim = shards[s]!;
      const closed = sim.actor.tick(true);
      // The host commits when tick() closed minutes and at least every snapshotIntervalMs (1 s); minutes
      // usually close in applyBatch (event time), so commit whenever closedThrough moved (the
      // snapshot-only commits in between change nothing measured here and are skipped).
      if (closed || sim.actor.closedThrough !== sim.committedClosedThrough) {
        const c = sim.actor.prepareCommit(sim.committedSeq);
        if (c) {
          for (const w of c.writes) {
            if (w.dim !== null) continue;
            row.tableBytes += encode({ shard: s, minute: w.minute, counts: w.counts }).byteLength;
            row.tableEntries += w.counts.length / 2;
          }
          sim.actor.committed(c);
          sim.committedSeq = c.seq;
          sim.committedClosedThrough = c.closedThrough;
        }
      }
      const provisionalDue = now - sim.lastProvisionalAt >= 1000;
      if (provisionalDue) {
        sim.lastProvisionalAt = now;
        // Naive alternative: the open-minute count of every ad clicked in the last second.
        if (sim.touched.size > 0) {
          const m = minuteOf(now - 1);
          const counts: Array<string | number> = [];
          for (const ad of sim.touched) counts.push(adIdOf(ad), truth.get(m)?.[ad] ?? 0);
          row.deltaBytes += encode({ shard: s, minute: m, counts }).byteLength;
          sim.touched.clear();
        }
      }
      const updates = sim.actor.rankingUpdates(provisionalDue);
      if (updates.length === 0) continue;
      const bytes = encode({ shard: s, updates });
      row.messages++;
      row.bytes += bytes.byteLength;
      let hasFinal = false;
      for (const u of updates) {
        const b = encode(u).byteLength;
        if (u.k === 'final') {
          hasFinal = true;
          row.finalBytes += b;
          row.finalUpdates++;
        } else {
          row.provBytes += b;
          row.provUpdates++;
          row.provChanged += u.changed.length / 2;
          row.provRemoved += u.removed.length;
          if (u.full) row.provFull++;
        }
      }
      if (hasFinal) row.finalMessages++;
      // What TopNReducerHost does with a message.
      const msg = decode(bytes) as { shard: number; updates: RankingUpdate[] };
      const { finals, resync } = reducer.apply(msg.shard, msg.updates);
      if (resync) checks.mismatches.push(`resync requested by shard ${s} at ${now - START} ms`);
      for (const key of finals) {
        const r = reducer.changed(reducer.globalFinal(key));
        if (r) checkFinal(r);
      }
    }
    // Once a minute, mid-minute, check the global provisional rankings against the truth.
    const inMinute = (now - START) % MINUTE_MS;
    if (provisionalRound && inMinute >= 30_000 && minuteOf(now) !== lastProvCheck) {
      lastProvCheck = minuteOf(now);
      checkProvisional();
    }
  }

  if ((now - START) % MINUTE_MS === 0) {
    // The minute that closed during this wall minute (watermark = event time − lateness) is now − 2.
    const closedMinute = minuteOf(now) - 2;
    const a = truth.get(closedMinute);
    if (a) for (let i = 0; i < ADS; i++) if (a[i]! > 0) row.distinctClosed++;
    closeRow();
    row = newRow(row.minute + 1);
  }
  if (Date.now() - lastLog > 5000) {
    lastLog = Date.now();
    const sim = ((now - START) / 1000).toFixed(0);
    const rss = process.memoryUsage().rss;
    peakRss = Math.max(peakRss, rss);
    process.stderr.write(`  … simulated ${sim} s of ${((endAt - START) / 1000).toFixed(0)} s, rss ${mibs(rss)}\n`);
  }
}
const wallS = (Date.now() - wallStart) / 1000;

// ── report ───────────────────────────────────────────────────────────────────────────────────────
const report = rows.filter((r) => r.minute >= 1);
const sum = (f: (r: MinuteRow) => number): number => report.reduce((a, r) => a + f(r), 0);
const avg = (f: (r: MinuteRow) => number): number => (report.length ? sum(f) / report.length : NaN);
const ratio = (a: number, b: number): string => (b > 0 ? `${((100 * a) / b).toFixed(2)} %` : 'n/a');
const times = (a: number, b: number): string => (a <= 0 || b <= 0 ? 'n/a' : a <= b ? `${(b / a).toFixed(1)}× less` : `${(a / b).toFixed(1)}× more`);
const exact = checks.finals > 0 && checks.finalsExact === checks.finals && checks.mismatches.length === 0;
const provExact = checks.provs > 0 && checks.provsExact === checks.provs;

const lines: string[] = [];
lines.push('# Live top-N: shard → reducer traffic (in-process simulation)');
lines.push('');
lines.push(`- command: \`node --import tsx bench/topn-traffic.ts ${process.argv.slice(2).join(' ')}\``.replace(/ \`$/, '`'));
lines.push(`- date: ${new Date().toISOString()}, node ${process.version}, took ${wallS.toFixed(0)} s wall`);
lines.push(
  `- workload: ${fmt(ADS)} distinct ad ids, Zipf(${ZIPF_S}), ${fmt(RATE)} events/s of event time in batches per ${BATCH_MS} ms, ` +
    `no late events, no duplicates; ${MINUTES + 1} simulated minutes (minute 0 is warm-up, nothing closes in it)`,
);
lines.push(
  `- actors: ${SHARDS} ShardActor instances on one ManualClock, depth ${DEPTH}, specs ${specKeys.map((k) => `\`${k}\``).join(', ')} (windows ${WINDOWS.join(', ')}, no filter), ` +
    `lateness ${DEFAULTS.allowedLatenessMs} ms, tick every ${TICK_MS} ms (tick(true) → commit if closed → rankingUpdates(provisional ≥ 1 s apart)), ` +
    `messages \`encode({shard, updates})\` (msgpackr, src/model/msgpack.ts), decoded and applied to one TopNReducer`,
);
lines.push('');
lines.push('Per simulated minute k: top-N = everything published in minute k (finals for the window ending at k — event minute k−1 closes at k:10 — plus provisional deltas); whole tables = msgpack `{shard, minute, counts}` of every ad\'s count of event minute k−1, one per shard; live deltas = a naive provisional feed (each shard, each second: open-minute count of every ad clicked in that second).');
lines.push('');
lines.push('| minute | events | distinct ads (closed minute) | msgs | top-N bytes | finals | provisional | whole tables (entries) | top-N / tables | finals / tables | live deltas | top-N / (tables + deltas) | RSS | CPU |');
lines.push('|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
for (const r of report) {
  lines.push(
    `| ${r.minute} | ${fmt(r.events)} | ${fmt(r.distinctClosed)} | ${r.messages} (${r.finalMessages} w/ finals) | ${kib(r.bytes)} | ${kib(r.finalBytes)} | ${kib(r.provBytes)} | ` +
      `${kib(r.tableBytes)} (${fmt(r.tableEntries)}) | ${ratio(r.bytes, r.tableBytes)} | ${ratio(r.finalBytes, r.tableBytes)} | ${kib(r.deltaBytes)} | ${ratio(r.bytes, r.tableBytes + r.deltaBytes)} | ${mibs(r.rss)} | ${(r.cpuMs / 1000).toFixed(1)} s |`,
  );
}
lines.push(
  `| **mean** | ${fmt(avg((r) => r.events))} | ${fmt(avg((r) => r.distinctClosed))} | ${avg((r) => r.messages).toFixed(0)} | ${kib(avg((r) => r.bytes))} | ${kib(avg((r) => r.finalBytes))} | ` +
    `${kib(avg((r) => r.provBytes))} | ${kib(avg((r) => r.tableBytes))} (${fmt(avg((r) => r.tableEntries))}) | ${ratio(sum((r) => r.bytes), sum((r) => r.tableBytes))} | ` +
    `${ratio(sum((r) => r.finalBytes), sum((r) => r.tableBytes))} | ${kib(avg((r) => r.deltaBytes))} | ${ratio(sum((r) => r.bytes), sum((r) => r.tableBytes + r.deltaBytes))} | peak ${mibs(peakRss)} | ${(avg((r) => r.cpuMs) / 1000).toFixed(1)} s |`,
);
lines.push('');
const last = report[report.length - 1];
lines.push('| figure | value |');
lines.push('|---|---|');
lines.push(`| top-N bytes/s to the reducer (mean) | ${kib(avg((r) => r.bytes) / 60)}/s |`);
lines.push(`| messages/s to the reducer (mean) | ${(avg((r) => r.messages) / 60).toFixed(1)} |`);
lines.push(`| ranking updates per minute (final / provisional) | ${avg((r) => r.finalUpdates).toFixed(0)} / ${avg((r) => r.provUpdates).toFixed(0)} |`);
lines.push(`| bytes per final update (mean) | ${fmt(sum((r) => r.finalBytes) / Math.max(1, sum((r) => r.finalUpdates)))} B |`);
lines.push(`| bytes per provisional update (mean) | ${fmt(sum((r) => r.provBytes) / Math.max(1, sum((r) => r.provUpdates)))} B |`);
lines.push(
  `| entries per provisional delta (mean changed / removed of ${DEPTH}) | ${(sum((r) => r.provChanged) / Math.max(1, sum((r) => r.provUpdates))).toFixed(1)} / ` +
    `${(sum((r) => r.provRemoved) / Math.max(1, sum((r) => r.provUpdates))).toFixed(1)} (${fmt(sum((r) => r.provFull))} of ${fmt(sum((r) => r.provUpdates))} were full lists: first of a new provisional window end) |`,
);
lines.push(`| all top-N traffic / whole closed-minute tables | ${ratio(sum((r) => r.bytes), sum((r) => r.tableBytes))} (${times(sum((r) => r.bytes), sum((r) => r.tableBytes))}) |`);
lines.push(`| finals only / whole closed-minute tables (like for like) | ${ratio(sum((r) => r.finalBytes), sum((r) => r.tableBytes))} (${times(sum((r) => r.finalBytes), sum((r) => r.tableBytes))}) |`);
lines.push(`| all top-N traffic / (tables + naive live deltas) | ${ratio(sum((r) => r.bytes), sum((r) => r.tableBytes + r.deltaBytes))} (${times(sum((r) => r.bytes), sum((r) => r.tableBytes + r.deltaBytes))}) |`);
lines.push(`| provisional only / naive live deltas | ${ratio(sum((r) => r.provBytes), sum((r) => r.deltaBytes))} (${times(sum((r) => r.provBytes), sum((r) => r.deltaBytes))}) |`);
lines.push(`| distinct ads seen so far (all minutes) | ${fmt(last?.distinctEver ?? distinctEver)} of ${fmt(ADS)} |`);
lines.push(`| global finals = direct top-${DEPTH} recount (exact) | **${exact}** (${checks.finalsExact}/${checks.finals} checked; window ends per spec: ${[...finalsChecked].map(([k, e]) => `${k} → ${e.join(',')}`).join('; ')}) |`);
lines.push(`| global provisional = recount at :30 each minute | **${provExact}** (${checks.provsExact}/${checks.provs}) |`);
lines.push(`| RSS at the end / peak (sampled every 5 s wall) | ${mibs(last?.rss ?? NaN)} / ${mibs(peakRss)} (heap ${mibs(last?.heap ?? NaN)}; dedupe tables ${mibs(last?.dedupBytes ?? NaN)}; truth arrays ${mibs(truth.size * ADS * 4)}) |`);
lines.push(`| simulation speed | ${(((MINUTES + 1) * 60) / wallS).toFixed(1)}× real time (${wallS.toFixed(0)} s wall for ${(MINUTES + 1) * 60} s simulated, one core) |`);
if (checks.mismatches.length) {
  lines.push('');
  lines.push('Mismatches:');
  for (const m of checks.mismatches.slice(0, 20)) lines.push(`- ${m}`);
}
lines.push('');
lines.push('Notes:');
lines.push(`- RSS includes the simulation's own truth (one Uint32Array of ${fmt(ADS)} counts per event minute, ${mibs(ADS * 4)} each) and the actors' dedupe tables (retention ${(retentionMs / 60000).toFixed(1)} min, as in production).`);
lines.push(`- Each shard retains its closed minutes for the longest window (${MAX_WINDOW} min): the window-${MAX_WINDOW} ranking only reaches steady state after ${MAX_WINDOW} minutes; with ${MINUTES} minutes its final lists are already full (depth ${DEPTH}), so its message sizes are representative, the shard memory is not.`);
lines.push('- The top-N figure is independent of the number of distinct ads (≤ depth entries per spec per shard per message); the whole-table figure grows with the distinct ads per minute.');
const text = lines.join('\n') + '\n';
process.stdout.write(text);
await mkdir(path.dirname(OUT), { recursive: true });
await writeFile(OUT, text);
log(`wrote ${OUT}`);
