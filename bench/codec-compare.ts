/**
 * Codec comparison on adagg's batch format (rows of 7 fields, 500 clicks per message):
 * @msgpack/msgpack vs msgpackr, encode and decode, same data, one process.
 * Run: node --import tsx bench/codec-compare.ts
 */
import { Decoder, Encoder } from '@msgpack/msgpack';
import { Packr, Unpackr } from 'msgpackr';

const ROWS = 500;
const MESSAGES = 2000;
const countries = ['US', 'DE', 'FR', 'GB', 'JP', 'BR', 'IN', 'CA'];
const batches: unknown[] = [];
for (let m = 0; m < MESSAGES; m++) {
  const rows = [];
  for (let i = 0; i < ROWS; i++) {
    const k = m * ROWS + i;
    rows.push([`c-${k}-${((k * 2654435761) >>> 0).toString(36)}`, `ad-${(k * 7919) % 2_000_000}`, 1795318000000 + k, `u${k % 5000}`, `10.0.${k % 256}.${(k >> 8) % 256}`, countries[k % 8], null]);
  }
  batches.push([1, rows]);
}
const enc = new Encoder();
const dec = new Decoder();
// Plain MessagePack on the wire (no msgpackr records/structures), so both decode each other's bytes.
const packr = new Packr({ useRecords: false });
const unpackr = new Unpackr({ useRecords: false });

function time(label: string, fn: () => void): number {
  fn(); // warm-up
  const runs: number[] = [];
  for (let r = 0; r < 5; r++) {
    const t = performance.now();
    fn();
    runs.push(performance.now() - t);
  }
  runs.sort((a, b) => a - b);
  const ms = runs[2]!;
  const rate = (MESSAGES * ROWS) / (ms / 1000);
  console.log(`| ${label} | ${ms.toFixed(0)} | ${(rate / 1e6).toFixed(2)} M |`);
  return rate;
}

console.log(`${MESSAGES} messages × ${ROWS} clicks, median of 5\n`);
console.log('| operation | ms | clicks/s |\n|---|---:|---:|');
const bytesA = batches.map((b) => enc.encode(b));
const bytesB = batches.map((b) => packr.pack(b));
const eA = time('encode @msgpack/msgpack', () => batches.forEach((b) => enc.encode(b)));
const eB = time('encode msgpackr', () => batches.forEach((b) => packr.pack(b)));
const dA = time('decode @msgpack/msgpack', () => bytesA.forEach((b) => dec.decode(b)));
const dB = time('decode msgpackr', () => bytesB.forEach((b) => unpackr.unpack(b)));
time('decode msgpackr of @msgpack/msgpack bytes', () => bytesA.forEach((b) => unpackr.unpack(b)));
console.log(`\nmsgpackr / @msgpack/msgpack: encode ${(eB / eA).toFixed(2)}x, decode ${(dB / dA).toFixed(2)}x; same wire bytes: ${Buffer.compare(Buffer.from(bytesA[0]!), Buffer.from(bytesB[0]!)) === 0}`);
