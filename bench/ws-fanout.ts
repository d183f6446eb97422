/**
 * Live top-N WebSocket fan-out: N concurrent clients on one gateway while rankings change every second.
 *
 *   node --import tsx bench/ws-fanout.ts [--sockets 1000] [--seconds 30] [--rate 3000] [--ads 200]
 *     [--window1-share 0.1] [--out bench/results/ws-fanout.md]
 *
 * Starts an in-process stack with `startStack({shards: 4})` (test/helpers/stack.ts: its own
 * nats-server and redis-server on free ports, never the shared 4222/6379), POSTs clicks of the
 * current minute continuously (`--rate` clicks/s over `--ads` ads whose weights drift, so the
 * ranking changes every second), opens `--sockets` `ws` clients on
 * `/v1/ws/popular_ads?count=10&window=5` (a `--window1-share` of them on `window=1`), and measures
 * for `--seconds`: ranking frames delivered, delivery delay = receive time − Date.parse(frame.at)
 * (`at` is stamped by the gateway when it builds the frame; same machine clock), failed connections
 * and the process RSS. Load generator, runtime node, gateway and all clients share this one process
 * (and nats-server/redis-server the machine).
 */
process.env.ADAGG_LOG_LEVEL ??= 'warn';

import { writeFile, mkdir } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import WebSocket from 'ws';
import type { RankingFrame, ServerFrame } from '../src/gateway/ws-protocol.ts';
import { startStack, postClicks, type TestStack } from '../test/helpers/stack.ts';
import { rng } from '../test/helpers/click-stream.ts';

function arg(name: string, def: string): string {
  const i = process.argv.indexOf(`--${name}`);
  if (i >= 0 && process.argv[i + 1] !== undefined) return process.argv[i + 1]!;
  const eq = process.argv.find((a) => a.startsWith(`--${name}=`));
  return eq ? eq.slice(name.length + 3) : def;
}
const SOCKETS = Number(arg('sockets', '1000'));
const SECONDS = Number(arg('seconds', '30'));
const RATE = Number(arg('rate', '3000'));
const ADS = Number(arg('ads', '200'));
const W1_SHARE = Number(arg('window1-share', '0.1'));
const CONNECT_PARALLEL = Number(arg('connect-parallel', '100'));
const OUT = arg('out', 'bench/results/ws-fanout.md');
const POST_EVERY_MS = 200;

const log = (s: string): void => void process.stderr.write(`${s}\n`);
const mib = (b: number): string => `${(b / 2 ** 20).toFixed(1)} MiB`;
const fmt = (n: number): string => Math.round(n).toLocaleString('en-US');
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
function pct(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

// ── stack ────────────────────────────────────────────────────────────────────────────────────────
const wallStart = Date.now();
let peakRss = 0;
const sampleRss = (): number => {
  const r = process.memoryUsage().rss;
  peakRss = Math.max(peakRss, r);
  return r;
};
const rssBefore = sampleRss();
log(`starting stack (4 shards, own nats-server + redis-server)…`);
const stack: TestStack = await startStack({ shards: 4 });
const rssStack = sampleRss();
log(`stack up at ${stack.url} in ${Date.now() - wallStart} ms, rss ${mib(rssStack)}`);

// ── load: clicks of the current minute, weights drifting so the top-10 changes every second ──────
const rand = rng(7);
let clickSeq = 0;
let posted = 0;
let postFailures = 0;
let postMs: number[] = [];
let loadOn = true;
const weights = new Float64Array(ADS);
function pickAd(cdf: Float64Array): number {
  const u = rand() * cdf[cdf.length - 1]!;
  let lo = 0;
  let hi = cdf.length - 1;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (cdf[mid]! < u) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
async function loadLoop(): Promise<void> {
  const perPost = Math.max(1, Math.round((RATE * POST_EVERY_MS) / 1000));
  let next = Date.now();
  const inflight = new Set<Promise<void>>();
  while (loadOn) {
    const now = Date.now();
    // Popularity: a slowly rotating bump over the ads plus a per-ad wobble.
    const t = now / 1000;
    const cdf = new Float64Array(ADS);
    let acc = 0;
    for (let i = 0; i < ADS; i++) {
      weights[i] = Math.exp(2.5 * Math.sin(t / 7 + (i * 2 * Math.PI) / ADS) + 0.8 * Math.sin(t / 1.3 + i * 1.7));
      cdf[i] = acc += weights[i]!;
    }
    const lines: string[] = [];
    for (let k = 0; k < perPost; k++) {
      lines.push(JSON.stringify({ click_id: `ws-${process.pid}-${++clickSeq}`, ad_id: `ad-${pickAd(cdf)}`, ts: now - Math.floor(rand() * POST_EVERY_MS) }));
    }
    const t0 = Date.now();
    const p = postClicks(stack.url, lines)
      .then((r) => {
        if (r.status === 200) posted += r.body.accepted as number;
        else postFailures++;
        postMs.push(Date.now() - t0);
      })
      .catch(() => void postFailures++)
      .finally(() => inflight.delete(p));
    inflight.add(p);
    if (inflight.size >= 4) await Promise.race(inflight);
    next += POST_EVERY_MS;
    const wait = next - Date.now();
    if (wait > 0) await sleep(wait);
    else if (wait < -2000) next = Date.now(); // fell behind: don't burst
  }
  await Promise.all(inflight);
}
const load = loadLoop();

// ── clients ──────────────────────────────────────────────────────────────────────────────────────
interface Client {
  ws: WebSocket;
  window: number;
  subscribed: boolean;
  frames: number;
  failed: string | undefined;
}
const clients: Client[] = [];
let measuring = false;
let closingAll = false;
let delays: number[] = [];
const perRanking = new Map<string, { min: number; max: number; n: number }>();
const stats = { frames: 0, finals: 0, provisional: 0, byWindow: new Map<number, number>(), connectFrames: 0, errors: 0, unexpectedCloses: 0 };
const EL_RESOLUTION_MS = 10;
const elDelay = monitorEventLoopDelay({ resolution: EL_RESOLUTION_MS });

function openClient(window: number): Promise<Client> {
  const wsUrl = `${stack.url.replace(/^http/, 'ws')}/v1/ws/popular_ads?count=10&window=${window}`;
  const ws = new WebSocket(wsUrl, { perMessageDeflate: false });
  const c: Client = { ws, window, subscribed: false, frames: 0, failed: undefined };
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      c.failed ??= 'no subscribed frame within 15 s';
      resolve(c);
    }, 15_000);
    ws.on('message', (data) => {
      const recv = Date.now();
      const f = JSON.parse(String(data)) as ServerFrame;
      if (f.type === 'subscribed') {
        c.subscribed = true;
        clearTimeout(timer);
        resolve(c);
        return;
      }
      if (f.type === 'error') {
        c.failed = `error frame ${f.code}`;
        return;
      }
      if (f.type !== 'ranking') return;
      if (!measuring) {
        stats.connectFrames++;
        return;
      }
      const r = f as RankingFrame;
      const d = recv - Date.parse(r.at);
      delays.push(d);
      // Per ranking (spec × stamp): the first and the last socket to receive it.
      const key = `${r.window}|${r.final}|${r.at}`;
      const g = perRanking.get(key);
      if (g) {
        g.min = Math.min(g.min, d);
        g.max = Math.max(g.max, d);
        g.n++;
      } else perRanking.set(key, { min: d, max: d, n: 1 });
      c.frames++;
      stats.frames++;
      if (r.final) stats.finals++;
      else stats.provisional++;
      stats.byWindow.set(r.window, (stats.byWindow.get(r.window) ?? 0) + 1);
    });
    ws.on('error', (err) => {
      stats.errors++;
      c.failed ??= `error: ${err.message}`;
      clearTimeout(timer);
      resolve(c);
    });
    ws.on('close', (code) => {
      if (!closingAll) {
        stats.unexpectedCloses++;
        c.failed ??= `closed ${code}`;
      }
      clearTimeout(timer);
      resolve(c);
    });
  });
}

// Let rankings exist first: a few seconds of load so the provisional ranking is non-empty.
await sleep(3000);
log(`load running (${fmt(posted)} clicks accepted so far); opening ${SOCKETS} sockets, ${CONNECT_PARALLEL} at a time…`);
const connectStart = Date.now();
const nW1 = Math.round(SOCKETS * W1_SHARE);
for (let i = 0; i < SOCKETS; i += CONNECT_PARALLEL) {
  const batch: Array<Promise<Client>> = [];
  for (let j = i; j < Math.min(SOCKETS, i + CONNECT_PARALLEL); j++) {
    // Spread the window=1 clients evenly over the connection order.
    const w1 = Math.floor(((j + 1) * nW1) / SOCKETS) > Math.floor((j * nW1) / SOCKETS);
    batch.push(openClient(w1 ? 1 : 5));
  }
  clients.push(...(await Promise.all(batch)));
  process.stderr.write(`  connected ${clients.filter((c) => c.subscribed && !c.failed).length}/${clients.length}, rss ${mib(sampleRss())}\n`);
}
const connectMs = Date.now() - connectStart;
const connectFailed = clients.filter((c) => !c.subscribed || c.failed).length;
log(`${SOCKETS - connectFailed} of ${SOCKETS} subscribed in ${connectMs} ms (${connectFailed} failed)`);

// ── measurement ──────────────────────────────────────────────────────────────────────────────────
const rssAfterConnect = sampleRss();
postMs = [];
const postedAtStart = posted;
elDelay.enable();
measuring = true;
const measureStart = Date.now();
const cpu0 = process.cpuUsage();
let lastFrames = 0;
let lastT = measureStart;
const perSecond: number[] = [];
while (Date.now() - measureStart < SECONDS * 1000) {
  await sleep(1000);
  const now = Date.now();
  const rate = ((stats.frames - lastFrames) * 1000) / (now - lastT);
  perSecond.push(rate);
  lastFrames = stats.frames;
  lastT = now;
  const sorted = Float64Array.from(delays).sort();
  process.stderr.write(
    `  [${((now - measureStart) / 1000).toFixed(0).padStart(3)} s] frames ${fmt(stats.frames)} (${fmt(rate)}/s), ` +
      `delay p50 ${pct(sorted, 50)} ms p99 ${pct(sorted, 99)} ms max ${pct(sorted, 100)} ms, ` +
      `clicks ${fmt(posted - postedAtStart)}, open ${clients.filter((c) => c.ws.readyState === WebSocket.OPEN).length}, rss ${mib(sampleRss())}\n`,
  );
}
measuring = false;
const measureMs = Date.now() - measureStart;
const cpu = process.cpuUsage(cpu0);
elDelay.disable();
const rssEnd = sampleRss();
const clicksInWindow = posted - postedAtStart;
const openAtEnd = clients.filter((c) => c.ws.readyState === WebSocket.OPEN).length;

// ── teardown ─────────────────────────────────────────────────────────────────────────────────────
loadOn = false;
await load;
closingAll = true;
for (const c of clients) c.ws.terminate();
await sleep(200);
await stack.close();

// ── report ───────────────────────────────────────────────────────────────────────────────────────
const sorted = Float64Array.from(delays).sort();
const failedTotal = clients.filter((c) => !c.subscribed || c.failed).length;
const reasons = new Map<string, number>();
for (const c of clients) if (c.failed) reasons.set(c.failed, (reasons.get(c.failed) ?? 0) + 1);
const perClient = clients.filter((c) => c.subscribed).map((c) => c.frames);
const perClientSorted = Float64Array.from(perClient).sort();
const postSorted = Float64Array.from(postMs).sort();
const ms = (n: number): string => (Number.isFinite(n) ? `${n.toFixed(0)} ms` : 'n/a');
const cpuPct = ((cpu.user + cpu.system) / 1000 / measureMs) * 100;

const lines: string[] = [];
lines.push('# Live top-N WebSocket fan-out');
lines.push('');
lines.push(`- command: \`node --import tsx bench/ws-fanout.ts ${process.argv.slice(2).join(' ')}\``.replace(/ \`$/, '`'));
lines.push(`- date: ${new Date().toISOString()}, node ${process.version}, ${os.cpus().length} cores (${os.cpus()[0]?.model ?? '?'}), load average at the end ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}`);
lines.push(
  `- **one process, ${os.cpus().length} cores**: the click load generator (HTTP POSTs), the gateway (HTTP, WebSocket, top-N reducer), the runtime node (4 shard actors) and all ${SOCKETS} WebSocket clients ` +
    'share one Node.js process and its single event loop; nats-server and redis-server (started by `startStack`, free ports) run on the same machine. Delays therefore include the clients\' own parsing and the load generator\'s work.',
);
lines.push(
  `- stack: \`startStack({shards: 4})\` (test defaults: tick 100 ms, lateness 5 s, idle timeout 1 s); clients: ${SOCKETS - nW1} on \`/v1/ws/popular_ads?count=10&window=5\`, ${nW1} on \`…&window=1\`, connected ${CONNECT_PARALLEL} at a time`,
);
lines.push(
  `- load: ${fmt(RATE)} clicks/s offered (POST /v1/clicks every ${POST_EVERY_MS} ms, ≤ 4 in flight) over ${ADS} ads with drifting weights, event time = now; ` +
    `accepted during the measurement ${fmt((clicksInWindow * 1000) / measureMs)}/s; POST p50 ${ms(pct(postSorted, 50))} p99 ${ms(pct(postSorted, 99))}; failed POSTs ${postFailures}`,
);
lines.push(`- delay = client receive time − \`Date.parse(frame.at)\` (\`at\` is stamped when the gateway builds the frame, once per ranking and count, before it is written to every subscriber; ms resolution)`);
lines.push('');
lines.push('| figure | value |');
lines.push('|---|---|');
lines.push(`| sockets requested / subscribed / failed | ${SOCKETS} / ${SOCKETS - connectFailed} / ${failedTotal}${reasons.size ? ` (${[...reasons].map(([r, n]) => `${n}× ${r}`).join(', ')})` : ''} |`);
lines.push(`| connect + subscribe time (all sockets) | ${fmt(connectMs)} ms |`);
lines.push(`| open at the end of the measurement | ${openAtEnd} |`);
lines.push(`| measurement | ${(measureMs / 1000).toFixed(1)} s |`);
lines.push(`| ranking frames delivered | ${fmt(stats.frames)} (${stats.provisional} provisional, ${stats.finals} final; ${[...stats.byWindow].sort((a, b) => a[0] - b[0]).map(([w, n]) => `window ${w}: ${fmt(n)}`).join(', ')}) |`);
lines.push(`| frames/s delivered (total) | ${fmt((stats.frames * 1000) / measureMs)} (per second: min ${fmt(Math.min(...perSecond))}, max ${fmt(Math.max(...perSecond))}) |`);
lines.push(`| frames per client | p50 ${pct(perClientSorted, 50)}, min ${pct(perClientSorted, 0)}, max ${pct(perClientSorted, 100)} (≈ ${((pct(perClientSorted, 50) * 1000) / measureMs).toFixed(2)}/s per client) |`);
lines.push(`| delivery delay p50 / p99 / max | **${ms(pct(sorted, 50))} / ${ms(pct(sorted, 99))} / ${ms(pct(sorted, 100))}** (p90 ${ms(pct(sorted, 90))}, p99.9 ${ms(pct(sorted, 99.9))}) |`);
// The histogram records the time between 10 ms timer ticks: subtract the period to get the delay.
const eld = (ns: number): string => ms(Math.max(0, ns / 1e6 - EL_RESOLUTION_MS));
const rankings = [...perRanking.values()].filter((g) => g.n >= 10);
const firstSorted = Float64Array.from(rankings.map((g) => g.min)).sort();
const lastSorted = Float64Array.from(rankings.map((g) => g.max)).sort();
lines.push(
  `| per ranking (${rankings.length} distinct frames with ≥ 10 receivers): first receiver p50 / p99, last receiver p50 / p99 | ` +
    `${ms(pct(firstSorted, 50))} / ${ms(pct(firstSorted, 99))}, ${ms(pct(lastSorted, 50))} / ${ms(pct(lastSorted, 99))} |`,
);
lines.push(`| event-loop delay during the measurement p50 / p99 / max | ${eld(elDelay.percentile(50))} / ${eld(elDelay.percentile(99))} / ${eld(elDelay.max)} |`);
lines.push(`| process CPU during the measurement | ${cpuPct.toFixed(0)} % of one core (user ${(cpu.user / 1e6).toFixed(1)} s, system ${(cpu.system / 1e6).toFixed(1)} s) |`);
lines.push(`| RSS: before stack / stack up / ${SOCKETS} sockets connected / end / peak | ${mib(rssBefore)} / ${mib(rssStack)} / ${mib(rssAfterConnect)} / ${mib(rssEnd)} / ${mib(peakRss)} |`);
lines.push(`| frames at connect time (current ranking on subscribe, not in the figures) | ${fmt(stats.connectFrames)} |`);
lines.push(`| WebSocket errors / unexpected closes | ${stats.errors} / ${stats.unexpectedCloses} |`);
lines.push('');
lines.push(`Took ${((Date.now() - wallStart) / 1000).toFixed(0)} s in all.`);
const text = lines.join('\n') + '\n';
process.stdout.write(text);
await mkdir(path.dirname(OUT), { recursive: true });
await writeFile(OUT, text);
log(`wrote ${OUT}`);
process.exit(0);
