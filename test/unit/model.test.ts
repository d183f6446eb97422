import { encode } from '../../src/model/msgpack.ts';
import { describe, expect, it } from 'vitest';
import { AdaggError, ErrorCode } from '../../src/errors.ts';
import { BATCH_VERSION, batchMsgId, decodeBatch, encodeBatch } from '../../src/model/batch-codec.ts';
import type { Click } from '../../src/model/click.ts';
import { fnv1a32Utf8, shardOf } from '../../src/model/partition.ts';
import { isoOf, MINUTE_MS, minuteOf, minuteStartMs, parseTime } from '../../src/model/time.ts';
import { rankCompare, topN, type Ranked } from '../../src/model/top-n.ts';
import { rng } from '../helpers/click-stream.ts';


function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    return e instanceof AdaggError ? e.code : `not an AdaggError: ${String(e)}`;
  }
  return 'no error';
}

/** Textbook FNV-1a 32 over bytes. */
function fnvBytes(bytes: Uint8Array): number {
  let h = 0x811c9dc5;
  for (const b of bytes) h = Math.imul(h ^ b, 0x01000193) >>> 0;
  return h >>> 0;
}

/** Reference ranking: full sort, count descending, ad_id ascending (code-unit order), zero counts out. */
function refTop(entries: ReadonlyArray<[string, number]>, n: number): Ranked[] {
  return entries
    .filter(([, c]) => c > 0)
    .map(([ad_id, count]) => ({ ad_id, count }))
    .sort((a, b) => b.count - a.count || (a.ad_id < b.ad_id ? -1 : a.ad_id > b.ad_id ? 1 : 0))
    .slice(0, Math.max(0, n));
}

describe('topN', () => {
  it('returns the exact top n, ties broken by ad_id ascending', () => {
    const counts = new Map<string, number>([
      ['ad-b', 5],
      ['ad-a', 5],
      ['ad-c', 9],
      ['ad-d', 1],
      ['ad-e', 5],
    ]);
    expect(topN(counts, 3)).toEqual([
      { ad_id: 'ad-c', count: 9 },
      { ad_id: 'ad-a', count: 5 },
      { ad_id: 'ad-b', count: 5 },
    ]);
    expect(topN(counts, 1)).toEqual([{ ad_id: 'ad-c', count: 9 }]);
  });

  it('n larger than the input returns everything ranked; n <= 0 returns nothing', () => {
    const counts: Array<[string, number]> = [
      ['x', 1],
      ['y', 3],
    ];
    expect(topN(counts, 10)).toEqual([
      { ad_id: 'y', count: 3 },
      { ad_id: 'x', count: 1 },
    ]);
    expect(topN(counts, 0)).toEqual([]);
    expect(topN(counts, -1)).toEqual([]);
    expect(topN([], 5)).toEqual([]);
  });

  it('excludes zero (and negative) counts', () => {
    expect(
      topN(
        [
          ['a', 0],
          ['b', 2],
          ['c', -1],
          ['d', 0],
        ],
        5,
      ),
    ).toEqual([{ ad_id: 'b', count: 2 }]);
  });

  it('equals a full sort on 10k random entries, for many n', () => {
    const r = rng(42);
    const entries: Array<[string, number]> = [];
    for (let i = 0; i < 10_000; i++) {
      // Few distinct counts so there are many ties; some zeros; ids in shuffled order.
      entries.push([`ad-${Math.floor(r() * 1e9).toString(36)}-${i}`, Math.floor(r() * r() * 60)]);
    }
    for (const n of [1, 2, 10, 100, 999, 5_000, 10_000, 20_000]) {
      expect(topN(entries, n), `n=${n}`).toEqual(refTop(entries, n));
    }
    // Input order must not matter.
    const reversed = [...entries].reverse();
    expect(topN(reversed, 100)).toEqual(refTop(entries, 100));
  });

  it('rankCompare orders by count descending then ad_id ascending', () => {
    expect(rankCompare({ ad_id: 'a', count: 2 }, { ad_id: 'b', count: 1 })).toBeLessThan(0);
    expect(rankCompare({ ad_id: 'b', count: 2 }, { ad_id: 'a', count: 2 })).toBeGreaterThan(0);
    expect(rankCompare({ ad_id: 'a', count: 2 }, { ad_id: 'a', count: 2 })).toBe(0);
  });
});

describe('fnv1a32Utf8 (partition) and shardOf', () => {
  it('matches the published FNV-1a 32 vectors', () => {
    expect(fnv1a32Utf8('')).toBe(0x811c9dc5);
    expect(fnv1a32Utf8('a')).toBe(0xe40c292c);
    expect(fnv1a32Utf8('foobar')).toBe(0xbf9cf968);
    // The reference used below agrees with the vectors too.
    expect(fnvBytes(Buffer.from('foobar', 'utf8'))).toBe(0xbf9cf968);
  });

  it('hashes the UTF-8 bytes of non-ASCII strings (2-, 3- and 4-byte sequences)', () => {
    for (const s of ['é', 'café', 'Grüße', '日本語', 'ad-€-1', '😀', 'a😀b', '\u07ff\u0800\uffff', '𐍈x', 'ﬀ']) {
      expect(fnv1a32Utf8(s), JSON.stringify(s)).toBe(fnvBytes(Buffer.from(s, 'utf8')));
    }
    const r = rng(5);
    for (let i = 0; i < 500; i++) {
      let s = '';
      const len = Math.floor(r() * 12);
      for (let k = 0; k < len; k++) {
        const kind = r();
        const cp =
          kind < 0.4 ? Math.floor(r() * 0x80) : kind < 0.7 ? 0x80 + Math.floor(r() * 0x780) : kind < 0.9 ? 0x800 + Math.floor(r() * 0xd000) : 0x10000 + Math.floor(r() * 0xfffff);
        s += String.fromCodePoint(cp >= 0xd800 && cp < 0xe000 ? 0x41 : cp);
      }
      expect(fnv1a32Utf8(s), JSON.stringify(s)).toBe(fnvBytes(Buffer.from(s, 'utf8')));
    }
  });

  it('shardOf is in [0, shards) and stable', () => {
    for (const shards of [1, 2, 3, 16, 1024]) {
      for (let i = 0; i < 2000; i++) {
        const ad = `ad-${i}`;
        const s = shardOf(ad, shards);
        expect(Number.isInteger(s) && s >= 0 && s < shards, `${ad} of ${shards}`).toBe(true);
        expect(s).toBe(fnv1a32Utf8(ad) % shards);
      }
    }
    expect(shardOf('anything', 1)).toBe(0);
    // Every shard gets some ads.
    const hit = new Set(Array.from({ length: 5000 }, (_, i) => shardOf(`ad-${i}`, 16)));
    expect(hit.size).toBe(16);
  });
});

describe('batch codec', () => {
  const clicks: Click[] = [
    { click_id: 'c1', ad_id: 'ad-1', ts: 1_720_483_200_000 },
    {
      click_id: 'c2',
      ad_id: 'ad-2',
      ts: 1_720_483_200_001,
      user_id: 'u-9',
      ip: '2001:db8::1',
      country: 'US',
      attrs: { device: 'ios', os: '17.5' },
    },
    { click_id: 'c3', ad_id: 'ad-1', ts: 0, country: 'DE' },
    { click_id: 'ünï', ad_id: 'ad-3', ts: 1, ip: '10.0.0.1' },
  ];

  it('round trips clicks with and without optional fields and attrs', () => {
    const back = decodeBatch(encodeBatch(clicks));
    expect(back).toStrictEqual([
      { click_id: 'c1', ad_id: 'ad-1', ts: 1_720_483_200_000 },
      clicks[1],
      { click_id: 'c3', ad_id: 'ad-1', ts: 0, country: 'DE' },
      { click_id: 'ünï', ad_id: 'ad-3', ts: 1, ip: '10.0.0.1' },
    ]);
    // Absent optional fields stay absent (no undefined-valued keys).
    expect(Object.keys(back[0]!).sort()).toEqual(['ad_id', 'click_id', 'ts']);
    expect(decodeBatch(encodeBatch([]))).toEqual([]);
  });

  it('round trips a large random batch', () => {
    const r = rng(9);
    const many: Click[] = Array.from({ length: 2000 }, (_, i) => {
      const c: Click = { click_id: `id-${i}`, ad_id: `ad-${Math.floor(r() * 50)}`, ts: 1_700_000_000_000 + Math.floor(r() * 1e9) };
      if (r() < 0.5) c.country = 'FR';
      if (r() < 0.3) c.user_id = `u${i}`;
      if (r() < 0.2) c.attrs = { device: r() < 0.5 ? 'web' : 'ios' };
      return c;
    });
    expect(decodeBatch(encodeBatch(many))).toStrictEqual(many);
  });

  it('garbage and wrong layouts fail with ADAGG_E_BATCH_CORRUPT', () => {
    const r = rng(11);
    const cases: Uint8Array[] = [
      new Uint8Array(0),
      Uint8Array.from([0xc1]),
      new TextEncoder().encode('{"click_id":"c1"}'),
      encodeBatch(clicks).subarray(0, 10),
      encode([BATCH_VERSION + 1, []]),
      encode({ v: 1, rows: [] }),
      encode([BATCH_VERSION, 'rows']),
      encode([BATCH_VERSION, [['c1', 'ad', 'not a number', null, null, null, null]]]),
      encode([BATCH_VERSION, [['c1', 7, 1, null, null, null, null]]]),
      encode([BATCH_VERSION, [null]]),
      encode([BATCH_VERSION, [['c1']]]),
    ];
    for (let i = 0; i < 30; i++) cases.push(Uint8Array.from({ length: 1 + Math.floor(r() * 64) }, () => Math.floor(r() * 256)));
    for (const bytes of cases) {
      expect(codeOf(() => decodeBatch(bytes)), Buffer.from(bytes).toString('hex').slice(0, 40)).toBe(ErrorCode.BatchCorrupt);
    }
  });

  it('batchMsgId is deterministic and differs for another shard or set of clicks', () => {
    const id = batchMsgId(3, clicks);
    expect(id).toBe(batchMsgId(3, clicks.map((c) => ({ ...c }))));
    expect(id).toMatch(/^b3-[A-Za-z0-9_-]{32}$/);
    expect(batchMsgId(4, clicks)).not.toBe(id);
    expect(batchMsgId(3, clicks.slice(1))).not.toBe(id);
    expect(batchMsgId(3, [...clicks, { click_id: 'c5', ad_id: 'ad-1', ts: 2 }])).not.toBe(id);
    expect(batchMsgId(3, clicks.map((c, i) => (i === 2 ? { ...c, click_id: 'c3x' } : c)))).not.toBe(id);
    // Shard and id boundaries are not confusable: shard 1 + "2x" vs shard 12 + "x".
    expect(batchMsgId(1, [{ click_id: '2x', ad_id: 'a', ts: 0 }])).not.toBe(batchMsgId(12, [{ click_id: 'x', ad_id: 'a', ts: 0 }]));
    // Many distinct sets give distinct ids.
    const ids = new Set<string>();
    for (let i = 0; i < 2000; i++) ids.add(batchMsgId(0, [{ click_id: `k${i}`, ad_id: 'a', ts: 0 }]));
    expect(ids.size).toBe(2000);
  });

  // Regression: batchMsgId once joined ids with NUL, so a click_id containing NUL could give two
  // different batches one Nats-Msg-Id (the second silently dropped by JetStream). Ids are now length-prefixed.
  it('batchMsgId differs for different click-id lists that join to the same NUL-separated string', () => {
    const one = [{ click_id: 'a\u0000b', ad_id: 'ad-1', ts: 0 }];
    const two = [
      { click_id: 'a', ad_id: 'ad-1', ts: 0 },
      { click_id: 'b', ad_id: 'ad-1', ts: 0 },
    ];
    expect(batchMsgId(5, one)).not.toBe(batchMsgId(5, two));
  });
});

describe('time', () => {
  it('parses ISO-8601 with a zone, converting offsets to UTC', () => {
    expect(parseTime('2024-07-09T00:00:01Z')).toBe(Date.UTC(2024, 6, 9, 0, 0, 1));
    expect(parseTime('2024-07-09T00:00:01.250Z')).toBe(Date.UTC(2024, 6, 9, 0, 0, 1, 250));
    expect(parseTime('2024-07-09T02:00:01+02:00')).toBe(Date.UTC(2024, 6, 9, 0, 0, 1));
    expect(parseTime('2024-07-08T19:00:01-05:00')).toBe(Date.UTC(2024, 6, 9, 0, 0, 1));
    expect(parseTime('2024-07-09T05:30:01+0530')).toBe(Date.UTC(2024, 6, 9, 0, 0, 1));
  });

  it('reads a date-time without zone as UTC, whatever the local time zone', () => {
    expect(parseTime('2024-07-09T00:00:01')).toBe(Date.UTC(2024, 6, 9, 0, 0, 1));
    expect(parseTime('2024-07-09 00:00:01')).toBe(Date.UTC(2024, 6, 9, 0, 0, 1));
    expect(parseTime('2024-12-31T23:59:59.999')).toBe(Date.UTC(2024, 11, 31, 23, 59, 59, 999));
    expect(parseTime('2024-07-09')).toBe(Date.UTC(2024, 6, 9)); // date only: UTC midnight
  });

  it('parses epoch milliseconds given as digits or as a number', () => {
    expect(parseTime('1720483201000')).toBe(1_720_483_201_000);
    expect(parseTime('0')).toBe(0);
    expect(parseTime(1_720_483_201_000)).toBe(1_720_483_201_000);
    expect(parseTime('-5')).toBe(-5); // callers decide whether negatives are allowed
  });

  it('returns undefined for garbage', () => {
    for (const v of [
      '',
      'yesterday',
      '2024-13-45T99:99:99Z',
      '2024-07-09Tfoo',
      '12:00',
      '1e12',
      '0x10',
      ' 1720483201000',
      '99999999999999999999',
      'x'.repeat(65),
      NaN,
      Infinity,
      null,
      undefined,
      {},
      ['2024-07-09'],
      true,
    ]) {
      expect(parseTime(v), JSON.stringify(v)).toBeUndefined();
    }
  });

  it('minute helpers are consistent UTC minute indexes', () => {
    const t = Date.UTC(2024, 6, 9, 0, 1, 59, 999);
    expect(minuteOf(t)).toBe(Math.floor(Date.UTC(2024, 6, 9, 0, 1) / MINUTE_MS));
    expect(minuteStartMs(minuteOf(t))).toBe(Date.UTC(2024, 6, 9, 0, 1));
    expect(minuteOf(t + 1)).toBe(minuteOf(t) + 1);
    expect(isoOf(minuteStartMs(minuteOf(t)))).toBe('2024-07-09T00:01:00.000Z');
  });
});
