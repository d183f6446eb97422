/**
 * Memory and speed of ClickDedup at 1M and 5M UUID-like click ids.
 * Run: node --expose-gc --import tsx bench/dedup-memory.ts
 *
 * Memory is heapUsed + arrayBuffers after a forced GC (typed-array stores count as arrayBuffers).
 * The id strings are created before the "before" reading and kept alive until after the "after"
 * reading, so the difference is the dedup alone. The Set<string> row is for comparison: a Set that
 * is the only holder of its ids, i.e. strings plus table, which is what ClickDedup replaces.
 */
import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { ClickDedup } from '../src/actors/shard/click-dedup.ts';

const collect = globalThis.gc;
if (!collect) {
  console.error('run with: node --expose-gc --import tsx bench/dedup-memory.ts');
  process.exit(2);
}
const MiB = 2 ** 20;
const BASE_MINUTE = 29_000_000; // ~2025, minutes since the epoch

function mem(): number {
  collect!();
  collect!();
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
}
const mib = (b: number) => (b / MiB).toFixed(1);
const rate = (n: number, ms: number) => `${((n / ms) * 1000 / 1e6).toFixed(2)} M/s`;

interface Row {
  n: number;
  before: number;
  after: number;
  byteLength: number;
  insertMs: number;
  lookupMs: number;
  bytes: number;
  toBytesMs: number;
  fromBytesMs: number;
  expireMs: number;
  setBytes: number;
}

/**
 * n flat 36-char UUID strings, decoded from a byte buffer the way ids arrive in a message payload.
 * (crypto.randomUUID() itself returns a rope of ~20 concatenated pieces, several hundred bytes each
 * until something flattens it; that would swamp the measurement.)
 */
function makeIds(n: number): string[] {
  const buf = Buffer.allocUnsafe(36 * 65_536);
  const ids = new Array<string>(n);
  for (let i = 0; i < n; i += 65_536) {
    const m = Math.min(65_536, n - i);
    for (let k = 0; k < m; k++) buf.write(randomUUID(), k * 36, 'latin1');
    for (let k = 0; k < m; k++) ids[i + k] = buf.toString('latin1', k * 36, k * 36 + 36);
  }
  return ids;
}

function run(n: number): Row {
  const ids = makeIds(n);
  const before = mem();

  const d = new ClickDedup();
  let t = performance.now();
  for (let i = 0; i < n; i++) d.addIfAbsent(ids[i]!, BASE_MINUTE + (i % 60));
  const insertMs = performance.now() - t;
  if (d.size !== n) throw new Error(`size ${d.size} != ${n}`);
  const after = mem();
  const byteLength = d.byteLength;

  t = performance.now();
  let hits = 0;
  for (let i = 0; i < n; i++) if (d.has(ids[i]!)) hits++;
  const lookupMs = performance.now() - t;
  if (hits !== n) throw new Error(`hits ${hits} != ${n}`);

  t = performance.now();
  const bytes = d.toBytes();
  const toBytesMs = performance.now() - t;
  t = performance.now();
  const restored = ClickDedup.fromBytes(bytes);
  const fromBytesMs = performance.now() - t;
  if (restored.size !== n) throw new Error('round trip lost ids');

  t = performance.now();
  const dropped = d.expireBefore(BASE_MINUTE + 30); // half the minutes
  const expireMs = performance.now() - t;
  const wantDropped = Math.floor(n / 60) * 30 + Math.min(n % 60, 30);
  if (dropped !== wantDropped) throw new Error(`dropped ${dropped} != ${wantDropped}`);
  return { n, before, after, byteLength, insertMs, lookupMs, bytes: bytes.byteLength, toBytesMs, fromBytesMs, expireMs, setBytes: 0 };
}

/** Comparison: a Set<string> that owns its (fresh) strings. Run in its own frame so nothing else dies meanwhile. */
function setCost(n: number): number {
  const before = mem();
  const set = new Set<string>();
  for (let i = 0; i < n; i += 1_000_000) for (const id of makeIds(Math.min(1_000_000, n - i))) set.add(id);
  const bytes = mem() - before;
  if (set.size !== n) throw new Error('set size');
  return bytes;
}

const rows: Row[] = [];
for (const n of [1_000_000, 5_000_000]) {
  const row = run(n);
  row.setBytes = setCost(n);
  rows.push(row);
}

console.log(`node ${process.version}, ${process.arch}; ids = flat 36-char UUID strings, held during both heap readings; MiB = 2^20 bytes\n`);
console.log('| ids | heap+ab before (MiB) | heap+ab after (MiB) | Δ per 1M ids (MiB) | byteLength per 1M ids (MiB) | inserts/s | lookups/s (hits) | toBytes size (MiB) | toBytes (ms) |');
console.log('|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
for (const r of rows) {
  const per = r.n / 1e6;
  console.log(
    `| ${r.n.toLocaleString('en-US')} | ${mib(r.before)} | ${mib(r.after)} | ${mib((r.after - r.before) / per)} | ` +
      `${mib(r.byteLength / per)} | ${rate(r.n, r.insertMs)} | ${rate(r.n, r.lookupMs)} | ${mib(r.bytes)} | ${r.toBytesMs.toFixed(0)} |`,
  );
}
console.log('\n| ids | fromBytes (ms) | expireBefore, drop half (ms) | Set<string> incl. strings, per 1M ids (MiB) |');
console.log('|---:|---:|---:|---:|');
for (const r of rows) {
  const per = r.n / 1e6;
  console.log(`| ${r.n.toLocaleString('en-US')} | ${r.fromBytesMs.toFixed(0)} | ${r.expireMs.toFixed(0)} | ${mib(r.setBytes / per)} |`);
}
