/**
 * Memory and speed of ClickDedup at 1M and 5M UUID-like click ids (more with --sizes), side by side
 * with the previous table (read from git history, commit 8ff77d1) and a Set<string>.
 * Run: node --expose-gc --import tsx bench/dedup-memory.ts [--sizes 1000000,5000000,20000000]
 *
 * Memory is heapUsed + arrayBuffers after a forced GC (typed-array stores count as arrayBuffers).
 * The id strings are created before the "before" reading and kept alive until after the "after"
 * reading, so the difference is the table alone. For the new table the reading is taken after
 * takeChanges(), as the actor's commit leaves it, with the persisted block bytes (kept for the
 * fromBlocks row) subtracted. The Set<string> row is a Set that is the only holder of its ids, i.e.
 * strings plus table, which is what ClickDedup replaces. Rates are ids per second on one core
 * (medians of 3 rounds, the tables taking turns);
 * inserts and lookups go through addIfAbsent / has, so they include hashing the 36-char id. The
 * whole-table operations (toBytes, fromBytes, fromBlocks, expireBefore) run after the id strings
 * are released, as in a restoring actor: with ~6M strings on the heap, each GC that a large
 * allocation triggers would cost hundreds of ms and swamp them.
 */
import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { performance } from 'node:perf_hooks';
import { ClickDedup, type DedupBlock } from '../src/actors/shard/click-dedup.ts';

/** The table before the incremental-state work, taken from git history for the side-by-side rows. */
const OLD_COMMIT = '8ff77d1';
const ROUNDS = 3;
const ROOT = path.resolve(import.meta.dirname, '..');
const BASE_MINUTE = 29_000_000; // ~2025, minutes since the epoch
const MiB = 2 ** 20;

const collect = globalThis.gc;
if (!collect) {
  console.error('run with: node --expose-gc --import tsx bench/dedup-memory.ts');
  process.exit(2);
}

/** The surface both tables share (the old one takes a capacity number, the new one options). */
interface Table {
  addIfAbsent(id: string, minute: number): boolean;
  has(id: string): boolean;
  expireBefore(minMinute: number): number;
  toBytes(): Uint8Array;
  readonly size: number;
  readonly byteLength: number;
}
interface Impl {
  name: string;
  create(): Table;
  fromBytes(bytes: Uint8Array): Table;
}

interface Row {
  impl: string;
  n: number;
  memPerId: number;
  tablePerId: number;
  insertRate: number;
  hitRate: number;
  missRate: number;
  expireMs?: number;
  toBytesMs?: number;
  fromBytesMs?: number;
  takeChangesMs?: number;
  fromBlocksMs?: number;
}

function mem(): number {
  collect!();
  collect!();
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
}
const perSec = (n: number, ms: number) => (n / ms) * 1000;
const fmtRate = (r: number) => `${(r / 1e6).toFixed(2)} M/s`;
const fmtMs = (ms: number | undefined) => (ms === undefined ? '–' : ms.toFixed(0));
const progress = (msg: string) => console.error(`[${new Date().toISOString().slice(11, 19)}] ${msg}`);

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

function timed<T>(fn: () => T): [T, number] {
  const t = performance.now();
  const r = fn();
  return [r, performance.now() - t];
}

/** A table after the insert phase, with what the bulk phase needs. */
interface Filled {
  row: Row;
  table: Table;
  store: DedupBlock[];
}

const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[xs.length >> 1]!;

/** One timed round of inserts (a fresh table) and lookups. */
function insertRound(impl: Impl, ids: string[], misses: string[]): { d: Table; insertMs: number; hitMs: number; missMs: number } {
  const n = ids.length, d = impl.create();
  const [, insertMs] = timed(() => {
    for (let i = 0; i < n; i++) d.addIfAbsent(ids[i]!, BASE_MINUTE + (i % 60));
  });
  if (d.size !== n) throw new Error(`size ${d.size} != ${n}`);
  const [hits, hitMs] = timed(() => {
    let h = 0;
    for (let i = 0; i < n; i++) if (d.has(ids[i]!)) h++;
    return h;
  });
  if (hits !== n) throw new Error(`hits ${hits} != ${n}`);
  const [falseHits, missMs] = timed(() => {
    let h = 0;
    for (const id of misses) if (d.has(id)) h++;
    return h;
  });
  if (falseHits !== 0) throw new Error(`${falseHits} false hits`);
  return { d, insertMs, hitMs, missMs };
}

/**
 * Inserts and lookups, while the id strings exist (they are what the tables are fed with): ROUNDS
 * rounds, the tables taking turns so that a noisy neighbour hits both alike; rates are medians.
 * The memory reading is taken in the first round, the table kept from the last.
 */
function fill(impls: Impl[], ids: string[], misses: string[]): Filled[] {
  const n = ids.length, times = impls.map(() => ({ insert: [] as number[], hit: [] as number[], miss: [] as number[] }));
  const out: Filled[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    impls.forEach((impl, k) => {
      progress(`${n.toLocaleString('en-US')} ${impl.name}: inserts and lookups, round ${round + 1}/${ROUNDS}`);
      const before = round === 0 ? mem() : 0;
      const { d, insertMs, hitMs, missMs } = insertRound(impl, ids, misses);
      times[k]!.insert.push(insertMs), times[k]!.hit.push(hitMs), times[k]!.miss.push(missMs);
      const { store, takeChangesMs } = d instanceof ClickDedup ? persist(d) : { store: [], takeChangesMs: undefined };
      if (round === 0) {
        const after = mem() - store.reduce((s, b) => s + b.bytes.byteLength, 0);
        out[k] = {
          table: d,
          store,
          row: { impl: impl.name, n, memPerId: (after - before) / n, tablePerId: d.byteLength / n, insertRate: 0, hitRate: 0, missRate: 0, takeChangesMs },
        };
      } else {
        out[k]!.table = d;
        out[k]!.store = store;
      }
    });
  }
  impls.forEach((_, k) => {
    const row = out[k]!.row, t = times[k]!;
    (row.insertRate = perSec(n, median(t.insert))), (row.hitRate = perSec(n, median(t.hit))), (row.missRate = perSec(misses.length, median(t.miss)));
  });
  return out;
}

/**
 * Whole-table operations, run once the id strings are gone: a restoring or expiring actor does not
 * hold millions of strings, and with them every GC that big allocations trigger would be timed too.
 * Medians of ROUNDS runs; each expireBefore runs on a fresh copy (from fromBytes).
 */
function bulk(impl: Impl, { row, table: d, store }: Filled): void {
  const n = row.n, t = { toBytes: [] as number[], fromBytes: [] as number[], fromBlocks: [] as number[], expire: [] as number[] };
  const wantDropped = Math.floor(n / 60) * 30 + Math.min(n % 60, 30);
  for (let round = 0; round < ROUNDS; round++) {
    progress(`${n.toLocaleString('en-US')} ${impl.name}: toBytes, fromBytes, fromBlocks, expireBefore, round ${round + 1}/${ROUNDS}`);
    const [image, toBytesMs] = timed(() => d.toBytes());
    const [copy, fromBytesMs] = timed(() => impl.fromBytes(image));
    if (copy.size !== n) throw new Error('toBytes round trip lost ids');
    t.toBytes.push(toBytesMs), t.fromBytes.push(fromBytesMs);
    if (store.length > 0) {
      const [r, ms] = timed(() => ClickDedup.fromBlocks(store));
      if (r.size !== n) throw new Error('fromBlocks lost ids');
      t.fromBlocks.push(ms);
    }
    const [dropped, expireMs] = timed(() => copy.expireBefore(BASE_MINUTE + 30)); // half the minutes
    if (dropped !== wantDropped) throw new Error(`dropped ${dropped} != ${wantDropped}`);
    t.expire.push(expireMs);
  }
  (row.toBytesMs = median(t.toBytes)), (row.fromBytesMs = median(t.fromBytes)), (row.expireMs = median(t.expire));
  if (t.fromBlocks.length > 0) row.fromBlocksMs = median(t.fromBlocks);
}

/**
 * takeChanges() into a simulated block store (copies, as Redis would hold them). In its own frame
 * so that nothing keeps the table's handed-out logs alive for the memory reading.
 */
function persist(d: ClickDedup): { store: DedupBlock[]; takeChangesMs: number } {
  const [changes, takeChangesMs] = timed(() => d.takeChanges());
  return { store: changes.appends.map(({ block, bytes }) => ({ block, bytes: new Uint8Array(bytes) })), takeChangesMs };
}

/** A Set<string> that owns its (fresh) strings, built in its own frame so nothing else dies meanwhile. */
function setCost(n: number): { perId: number; insertRate: number } {
  const before = mem();
  const set = new Set<string>();
  let ms = 0;
  for (let i = 0; i < n; i += 1_000_000) {
    const ids = makeIds(Math.min(1_000_000, n - i));
    const t = performance.now();
    for (const id of ids) set.add(id);
    ms += performance.now() - t;
  }
  const bytes = mem() - before;
  if (set.size !== n) throw new Error('set size');
  return { perId: bytes / n, insertRate: perSec(n, ms) };
}

/** Writes the previous table's source (from git) to a temp file whose imports resolve here. */
function oldSource(): string {
  const src = execFileSync('git', ['-C', ROOT, 'show', `${OLD_COMMIT}:src/actors/shard/click-dedup.ts`], { encoding: 'utf8' });
  const file = path.join(mkdtempSync(path.join(os.tmpdir(), 'adagg-old-dedup-')), 'click-dedup.ts');
  writeFileSync(file, src.replace("from '../../errors.ts'", `from '${pathToFileURL(path.join(ROOT, 'src/errors.ts')).href}'`));
  return file;
}

async function loadOld(): Promise<Impl | null> {
  try {
    const m = (await import(pathToFileURL(oldSource()).href)) as {
      ClickDedup: { new (): Table; fromBytes(b: Uint8Array): Table };
    };
    return { name: 'old (12 B/slot, load ≤ 0.6)', create: () => new m.ClickDedup(), fromBytes: (b) => m.ClickDedup.fromBytes(b) };
  } catch {
    progress(`no old table (git show ${OLD_COMMIT} failed): new figures only`);
    return null;
  }
}

function parseSizes(argv: string[]): number[] {
  const i = argv.indexOf('--sizes');
  if (i < 0) return [1_000_000, 5_000_000];
  const sizes = (argv[i + 1] ?? '').split(',').map(Number);
  if (sizes.length === 0 || !sizes.every((s) => Number.isInteger(s) && s > 0)) throw new Error('--sizes takes a comma-separated list of counts');
  return sizes;
}

const sizes = parseSizes(process.argv.slice(2));
const impls: Impl[] = [];
const old = await loadOld();
if (old) impls.push(old);
impls.push({ name: 'new (ordered Robin Hood, 9 B/slot)', create: () => new ClickDedup(), fromBytes: (b) => ClickDedup.fromBytes(b) });

const rows: Row[] = [];
const sets = new Map<number, { perId: number; insertRate: number }>();
for (const n of sizes) {
  progress(`${n.toLocaleString('en-US')} ids: generating`);
  let ids: string[] | null = makeIds(n);
  let misses: string[] | null = makeIds(Math.min(n, 1_000_000));
  const filled = fill(impls, ids!, misses!);
  (ids = null), (misses = null), mem();
  impls.forEach((impl, i) => bulk(impl, filled[i]!));
  rows.push(...filled.map((f) => f.row));
  filled.length = 0;
  if (n <= 5_000_000) {
    progress(`${n.toLocaleString('en-US')} ids: Set<string>`);
    sets.set(n, setCost(n));
  }
}

console.log(`\nnode --expose-gc --import tsx bench/dedup-memory.ts${process.argv.length > 2 ? ` ${process.argv.slice(2).join(' ')}` : ''}`);
console.log(`node ${process.version}, ${process.arch}; ids = flat 36-char UUID strings; bytes are per tracked id; rates on one core, hashing included\n`);
console.log('| ids | table | heap+ab Δ (B/id) | byteLength/size (B/id) | inserts/s | lookups/s hit | lookups/s miss | expireBefore ½ (ms) | toBytes (ms) | fromBytes (ms) | takeChanges (ms) | fromBlocks (ms) | fromBlocks ids/s |');
console.log('|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
for (const r of rows) {
  console.log(
    `| ${r.n.toLocaleString('en-US')} | ${r.impl} | ${r.memPerId.toFixed(2)} | ${r.tablePerId.toFixed(2)} | ${fmtRate(r.insertRate)} | ` +
      `${fmtRate(r.hitRate)} | ${fmtRate(r.missRate)} | ${fmtMs(r.expireMs)} | ${fmtMs(r.toBytesMs)} | ${fmtMs(r.fromBytesMs)} | ` +
      `${fmtMs(r.takeChangesMs)} | ${fmtMs(r.fromBlocksMs)} | ${r.fromBlocksMs === undefined ? '–' : fmtRate(perSec(r.n, r.fromBlocksMs))} |`,
  );
}
for (const [n, s] of sets) {
  console.log(`| ${n.toLocaleString('en-US')} | Set<string> (owns its strings) | ${s.perId.toFixed(2)} | – | ${fmtRate(s.insertRate)} | | | | | | | | |`);
}
console.log(`\nMiB per 1M ids = B/id × ${(1e6 / MiB).toFixed(4)}`);
