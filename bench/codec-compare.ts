/**
 * Codec throughput on adagg's batch format (rows of 7 fields, 500 clicks per message): the batch
 * codec (src/model/batch-codec.ts) and the plain codec of stored state (src/model/msgpack.ts), both
 * msgpackr, encode and decode, same data, one process.
 * Run: node --import tsx bench/codec-compare.ts
 *
 * This bench used to compare @msgpack/msgpack with msgpackr; that comparison decided the switch
 * (msgpackr 1.78× faster encode, 4.24× faster decode; the figures stay in docs/benchmarks.md) and
 * went when @msgpack/msgpack was removed. The bytes of both codecs are plain MessagePack.
 */
import { decodeBatch, encodeBatch } from '../src/model/batch-codec.ts';
import type { Click } from '../src/model/click.ts';
import { decode, encode } from '../src/model/msgpack.ts';

const ROWS = 500;
const MESSAGES = 2000;
const countries = ['US', 'DE', 'FR', 'GB', 'JP', 'BR', 'IN', 'CA'];
const batches: Click[][] = [];
for (let m = 0; m < MESSAGES; m++) {
  const rows: Click[] = [];
  for (let i = 0; i < ROWS; i++) {
    const k = m * ROWS + i;
    rows.push({
      click_id: `c-${k}-${((k * 2654435761) >>> 0).toString(36)}`,
      ad_id: `ad-${(k * 7919) % 2_000_000}`,
      ts: 1795318000000 + k,
      user_id: `u${k % 5000}`,
      ip: `10.0.${k % 256}.${(k >> 8) % 256}`,
      country: countries[k % 8]!,
    });
  }
  batches.push(rows);
}

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
const batchBytes = batches.map((b) => encodeBatch(b));
// The same rows through the plain codec, as the stored state's codec would see them.
const docs = batches.map((b) => [1, b.map((c) => [c.click_id, c.ad_id, c.ts, c.user_id ?? null, c.ip ?? null, c.country ?? null, null])]);
const plainBytes = docs.map((d) => encode(d));
time('encodeBatch (batch codec)', () => batches.forEach((b) => encodeBatch(b)));
time('decodeBatch (batch codec)', () => batchBytes.forEach((b) => decodeBatch(b)));
time('encode (plain codec, copies out)', () => docs.forEach((d) => encode(d)));
time('decode (plain codec)', () => plainBytes.forEach((b) => decode(b)));
console.log(`\nsame wire bytes: ${Buffer.compare(Buffer.from(batchBytes[0]!), Buffer.from(plainBytes[0]!)) === 0}`);
