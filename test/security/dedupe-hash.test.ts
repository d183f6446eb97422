import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ShardActor } from '../../src/actors/shard-actor.ts';
import { ClickDedup } from '../../src/actors/shard/click-dedup.ts';
import { fnv1a32Utf16, murmur3_32 } from '../../src/actors/shard/click-hash.ts';
import { KeyedClickHash, randomDedupKey } from '../../src/actors/shard/siphash.ts';
import { MINUTE_MS } from '../../src/model/time.ts';
import { validateClick } from '../../src/model/validate.ts';
import { ManualClock } from '../../src/runtime/clock.ts';
import { RedisKeys } from '../../src/runtime/redis-keys.ts';
import { getJson, postClicks, startStack, type TestStack } from '../helpers/stack.ts';
import { waitFor } from '../helpers/wait.ts';

/**
 * Issue 11, defect 13: the dedupe hashes were unkeyed (FNV-1a-32 and murmur3_32 of the click id),
 * so anyone can build a click id whose 64-bit pair equals another's: the second click is taken for
 * a duplicate and a billable click is lost. The pair is now SipHash-2-4 under a per-deployment
 * 128-bit secret kept in Redis beside the state.
 */

// --- SipHash-2-4: the reference vectors of the paper's reference code (key 00..0f, message 00..n-1) ---

const VECTORS = [
  0x726fdb47dd0e0e31n, 0x74f839c593dc67fdn, 0x0d6c8009d9a94f5an, 0x85676696d7fb7e2dn, 0xcf2794e0277187b7n, 0x18765564cd99a68dn,
  0xcbc9466e58fee3cen, 0xab0200f58b01d137n, 0x93f5f5799a932462n, 0x9e0082df0ba9e4b0n, 0x7a5dbbc594ddb9f3n, 0xf4b32f46226bada7n,
  0x751e8fbc860ee5fbn, 0x14ea5627c0843d90n, 0xf723ca908e7af2een, 0xa129ca6149be45e5n, 0x3f2acc7f57c29bdbn, 0x699ae9f52cbe4794n,
  0x4bc1b3f0968dd39cn, 0xbb6dc91da77961bdn, 0xbed65cf21aa2ee98n, 0xd0f2cbb02e3b67c7n, 0x93536795e3a33e88n, 0xa80c038ccd5ccec8n,
  0xb8ad50c6f649af94n, 0xbce192de8a85b8ean, 0x17d835b85bbb15f3n, 0x2f2e6163076bcfadn, 0xde4daaaca71dc9a5n, 0xa6a2506687956571n,
  0xad87a3535c49ef28n, 0x32d892fad841c342n, 0x7127512f72f27ccen, 0xa7f32346f95978e3n, 0x12e0b01abb051238n, 0x15e034d40fa197aen,
  0x314dffbe0815a3b4n, 0x027990f029623981n, 0xcadcd4e59ef40c4dn, 0x9abfd8766a33735cn, 0x0e3ea96b5304a7d0n, 0xad0c42d6fc585992n,
  0x187306c89bc215a9n, 0xd4a60abcf3792b95n, 0xf935451de4f21df2n, 0xa9538f0419755787n, 0xdb9acddff56ca510n, 0xd06c98cd5c0975ebn,
  0xe612a3cb9ecba951n, 0xc766e62cfcadaf96n, 0xee64435a9752fe72n, 0xa192d576b245165an, 0x0a8787bf8ecb74b2n, 0x81b3e73d20b49b6fn,
  0x7fa8220ba3b2ecean, 0x245731c13ca42499n, 0xb78dbfaf3a8d83bdn, 0xea1ad565322a1a0bn, 0x60e61c23a3795013n, 0x6606d7e446282b93n,
  0x6ca4ecb15c5f91e1n, 0x9f626da15c9625f3n, 0xe51b38608ef25f57n, 0x958a324ceb064572n,
];

/** A plain BigInt SipHash-2-4 over bytes, written from the paper: the reference for the 32-bit one. */
function sipRef(key: Uint8Array, m: Uint8Array): bigint {
  const M = (1n << 64n) - 1n;
  const rotl = (x: bigint, b: bigint): bigint => ((x << b) | (x >> (64n - b))) & M;
  const kv = new DataView(key.buffer, key.byteOffset, 16);
  const k0 = kv.getBigUint64(0, true), k1 = kv.getBigUint64(8, true);
  let v0 = k0 ^ 0x736f6d6570736575n, v1 = k1 ^ 0x646f72616e646f6dn, v2 = k0 ^ 0x6c7967656e657261n, v3 = k1 ^ 0x7465646279746573n;
  const round = (): void => {
    v0 = (v0 + v1) & M; v1 = rotl(v1, 13n); v1 ^= v0; v0 = rotl(v0, 32n);
    v2 = (v2 + v3) & M; v3 = rotl(v3, 16n); v3 ^= v2;
    v0 = (v0 + v3) & M; v3 = rotl(v3, 21n); v3 ^= v0;
    v2 = (v2 + v1) & M; v1 = rotl(v1, 17n); v1 ^= v2; v2 = rotl(v2, 32n);
  };
  const end = m.length - (m.length % 8);
  for (let i = 0; i <= end; i += 8) {
    let w = 0n;
    if (i < end) for (let j = 7; j >= 0; j--) w = (w << 8n) | BigInt(m[i + j]!);
    else {
      w = BigInt(m.length & 0xff) << 56n;
      for (let j = 0; j < m.length - end; j++) w |= BigInt(m[i + j]!) << BigInt(8 * j);
    }
    v3 ^= w;
    round();
    round();
    v0 ^= w;
  }
  v2 ^= 0xffn;
  for (let r = 0; r < 4; r++) round();
  return v0 ^ v1 ^ v2 ^ v3;
}

const tag = (kh: KeyedClickHash, s: string): bigint => {
  const h = kh.hash(s);
  return (BigInt(h) << 32n) | BigInt(kh.lo);
};

describe('SipHash-2-4 of click ids', () => {
  const key = Uint8Array.from({ length: 16 }, (_, i) => i);
  const msg = Uint8Array.from({ length: 64 }, (_, i) => i);

  it('the reference implementation gives the 64 published vectors', () => {
    for (let n = 0; n < 64; n++) expect(sipRef(key, msg.subarray(0, n)), `length ${n}`).toBe(VECTORS[n]);
  });

  it('the click hash is SipHash-2-4 of the UTF-16LE bytes: the published vectors of every even length', () => {
    const kh = new KeyedClickHash(key);
    for (let n = 0; n < 64; n += 2) {
      let s = '';
      for (let i = 0; i < n; i += 2) s += String.fromCharCode(msg[i]! | (msg[i + 1]! << 8));
      expect(tag(kh, s), `length ${n}`).toBe(VECTORS[n]);
    }
  });

  it('equals the reference on random keys and strings, lone surrogates and astral characters included', () => {
    let x = 1;
    const r = (): number => ((x = (Math.imul(x, 1103515245) + 12345) >>> 0) / 2 ** 32);
    for (let t = 0; t < 500; t++) {
      const k = Uint8Array.from({ length: 16 }, () => Math.floor(r() * 256));
      let s = '';
      for (let i = Math.floor(r() * 70); i > 0; i--) s += String.fromCharCode(Math.floor(r() * 65536));
      if (t % 5 === 0) s += '😀\ud800';
      expect(tag(new KeyedClickHash(k), s)).toBe(sipRef(k, new Uint8Array(Buffer.from(s, 'utf16le'))));
    }
    expect(() => new KeyedClickHash(new Uint8Array(15))).toThrow(RangeError);
  });
});

// --- The attack on the old scheme: a real 64-bit collision, built here in well under a second ---

const C1 = 0xcc9e2d51, C2 = 0x1b873593;
/** Inverse of an odd number mod 2^32 (Newton iteration). */
function inverse(a: number): number {
  let x = a;
  for (let i = 0; i < 5; i++) x = Math.imul(x, 2 - Math.imul(a, x));
  return x;
}
/** murmur3_32's per-block transform of a 32-bit block, and its inverse (both bijections). */
const mix = (k: number): number => {
  const t = Math.imul(k, C1);
  return Math.imul((t << 15) | (t >>> 17), C2) >>> 0;
};
const unmix = (x: number): number => {
  const t = Math.imul(x, inverse(C2));
  return Math.imul((t >>> 15) | (t << 17), inverse(C1)) >>> 0;
};
/** Code units that any id validation accepts: printable, not surrogates, not C0/C1 controls. */
const printable = (u: number): boolean => u >= 0x21 && u <= 0xd7ff && !(u >= 0x7f && u <= 0x9f);
const printableBlock = (k: number): boolean => printable(k & 0xffff) && printable(k >>> 16);
const units = (k: number): string => String.fromCharCode(k & 0xffff, k >>> 16);

/**
 * Two different click ids with equal fnv1a32Utf16 AND equal murmur3_32, i.e. equal unkeyed pairs.
 *
 * murmur3_32: a 4-byte block enters the state as h = rotl(h ^ mix(k), 13) * 5 + c. Flip bit 18 of
 * mix(k1): after rotl 13 it is bit 31, which * 5 and + c carry nowhere, so the state differs in
 * bit 31 only; flip bit 31 of mix(k2) for the next block and the difference cancels. Each such
 * 8-byte slot has two interchangeable contents whatever the seed and state, so 18 slots give 2^18
 * ids with one murmur3_32 value. Among them a birthday search on the 32-bit FNV-1a finds equal
 * pairs after ~2^16 tries.
 */
function collidingIds(): [string, string] {
  let seed = 7;
  const next = (): number => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0);
  const slots: Array<[string, string]> = [];
  while (slots.length < 18) {
    const a1 = next(), a2 = next();
    const b1 = unmix(mix(a1) ^ 0x00040000), b2 = unmix(mix(a2) ^ 0x80000000);
    if ([a1, a2, b1, b2].every(printableBlock)) slots.push([units(a1) + units(a2), units(b1) + units(b2)]);
  }
  const id = (bits: number): string => 'click-' + slots.map((s, i) => s[(bits >>> i) & 1]).join('');
  const byFnv = new Map<number, number>();
  for (let bits = 0; bits < 2 ** slots.length; bits++) {
    const f = fnv1a32Utf16(id(bits)), other = byFnv.get(f);
    if (other !== undefined) return [id(other), id(bits)];
    byFnv.set(f, bits);
  }
  throw new Error('no FNV collision in the family');
}

const [VICTIM, CRAFTED] = collidingIds();

describe('defect 13: a crafted click id must not suppress another click', () => {
  const T0 = Date.UTC(2026, 0, 1);

  it('the crafted id is valid, differs from the victim, and has the same unkeyed pair', () => {
    expect(CRAFTED).not.toBe(VICTIM);
    for (const id of [VICTIM, CRAFTED]) {
      expect(validateClick({ click_id: id, ad_id: 'ad-1', ts: T0 }, { nowMs: T0, correctionHorizonMs: 3600_000, maxFutureMs: 0 }).ok).toBe(true);
    }
    expect([fnv1a32Utf16(CRAFTED), murmur3_32(CRAFTED)]).toEqual([fnv1a32Utf16(VICTIM), murmur3_32(VICTIM)]);
    // What the old table did with it: the victim's click was taken for a duplicate.
    const old = new ClickDedup();
    expect([old.addIfAbsent(CRAFTED, 1), old.addIfAbsent(VICTIM, 1)]).toEqual([true, false]);
  });

  it('under the keyed hash the two ids differ, for every key, and the shard actor counts both clicks', async () => {
    for (let i = 0; i < 20; i++) {
      const kh = new KeyedClickHash(randomDedupKey());
      expect(tag(kh, CRAFTED)).not.toBe(tag(kh, VICTIM));
    }
    const clock = new ManualClock(T0);
    const actor = new ShardActor(
      { shard: 0, dimensions: [], allowedLatenessMs: 5_000, idleTimeoutMs: 1_000, retentionMs: 10 * MINUTE_MS, dedupKey: randomDedupKey() },
      { clock, readClosed: async (reads) => reads.map(() => 0) },
    );
    // The attacker's click first (its own stream message), the victim's later.
    expect(await actor.applyBatch(1, [{ click_id: CRAFTED, ad_id: 'ad-1', ts: T0 + 1 }])).toMatchObject({ counted: 1 });
    const res = await actor.applyBatch(2, [
      { click_id: VICTIM, ad_id: 'ad-1', ts: T0 + 2 },
      { click_id: VICTIM, ad_id: 'ad-1', ts: T0 + 3 }, // a real duplicate is still one
    ]);
    expect(res).toMatchObject({ counted: 1, duplicates: 1 });
    expect(actor.queryAd({ adId: 'ad-1', fromMinute: T0 / MINUTE_MS, toMinute: T0 / MINUTE_MS + 1 }).minutes).toEqual([[T0 / MINUTE_MS, 2]]);
  });
});

describe('defect 13 through the service: the secret lives in Redis, both clicks are counted', () => {
  let stack: TestStack;
  let redis: Redis;
  beforeAll(async () => {
    stack = await startStack({ shards: 2 });
    redis = new Redis(stack.servers.redisUrl);
  }, 60_000);
  afterAll(async () => {
    redis?.disconnect();
    await stack?.close();
  });

  it('POSTs the crafted click and then the victim: the ad counts 2', async () => {
    const ts = Date.now();
    const m = Math.floor(ts / MINUTE_MS);
    const url = `${stack.url}/v1/ads/ad-victim/aggregated_count?from=${m * MINUTE_MS}&to=${(m + 1) * MINUTE_MS}`;
    const count = async (): Promise<number> => (await getJson(url)).body.count as number;
    // The attacker's click is counted first ...
    expect((await postClicks(stack.url, [JSON.stringify({ click_id: CRAFTED, ad_id: 'ad-victim', ts })])).body).toMatchObject({ accepted: 1 });
    await waitFor('the crafted click counted', async () => (await count()) === 1, { timeoutMs: 30_000, everyMs: 100 });
    // ... then the victim's (twice: a retry). Under the unkeyed hash the count stayed at 1.
    const post = await postClicks(stack.url, [VICTIM, VICTIM].map((id) => JSON.stringify({ click_id: id, ad_id: 'ad-victim', ts })));
    expect(post.body).toMatchObject({ accepted: 2, rejected: [] });
    await waitFor('the victim click counted', async () => (await count()) === 2, { timeoutMs: 30_000, everyMs: 100 });
    // A later, unrelated click on the same shard has been applied: the retry was not counted.
    await postClicks(stack.url, [JSON.stringify({ click_id: 'marker', ad_id: 'ad-victim', ts })]);
    await waitFor('the marker counted', async () => (await count()) === 3, { timeoutMs: 30_000, everyMs: 100 });

    // One 128-bit secret per deployment (prefix), created on first use beside the state.
    const secret = await redis.getBuffer(new RedisKeys(stack.opts.prefix).dedupSecret());
    expect(secret?.byteLength).toBe(16);
  });
});
