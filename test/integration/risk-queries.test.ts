import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CUBE_SEPARATOR } from '../../src/model/click.ts';
import { shardOf } from '../../src/model/partition.ts';
import { RedisKeys } from '../../src/runtime/redis-keys.ts';
import { finalAdCount } from '../helpers/settle.ts';
import { getJson, postClicks, startStack, type TestStack } from '../helpers/stack.ts';
import { waitForValue } from '../helpers/wait.ts';

/**
 * The gateway side of invalid-click filtering (issue 14) on a real stack: `aggregated_count` and
 * `GET /v1/ads/{ad_id}/invalid` read each rule's invalid field (`('!inv', rule)`, and
 * `('!inv:<rule>:<d>', v)` under a filter) like any count field, and `GET /v1/risk/offenders`
 * refuses unknown rules and windows past the correction horizon. No rules file here: the invalid
 * fields of closed minutes are written into Redis as the shard store lays them out, and the rule
 * names into `<prefix>:risk:names`, as the rules publisher does.
 */
describe('invalid-click queries', () => {
  let stack: TestStack;
  let redis: Redis;
  let keys: RedisKeys;

  const MIN = 60_000;
  const HORIZON_MIN = 30;
  const AD = 'rq-ad';
  // Three minutes well in the past (closed within seconds by the idle timeout), M2 without clicks.
  const M0 = Math.floor(Date.now() / MIN) - 8;
  const M1 = M0 + 1;
  const M2 = M0 + 2;
  const range = `from=${M0 * MIN}&to=${(M2 + 1) * MIN}`;
  const iso = (m: number): string => new Date(m * MIN).toISOString();
  const click = (id: string, minute: number, country: string, device: string): string =>
    JSON.stringify({ click_id: `rq-${id}`, ad_id: AD, ts: minute * MIN + 5000, country, device });
  const get = (path: string): Promise<{ status: number; body: any }> => getJson(`${stack.url}${path}`);

  /** Writes an invalid count field of a closed minute, where the shard actor would commit it. */
  const seed = (minute: number, dim: string, value: string, n: number): Promise<number> => redis.hset(keys.counts(shardOf(AD, stack.opts.shards), minute, dim, value), AD, n);

  beforeAll(async () => {
    stack = await startStack({ dimensions: ['country', 'device'], cubes: ['country+device'], correctionHorizonMs: HORIZON_MIN * MIN });
    redis = new Redis(stack.servers.redisUrl);
    keys = new RedisKeys(stack.opts.prefix);
    const res = await postClicks(stack.url, [
      click('0a', M0, 'US', 'mobile'),
      click('0b', M0, 'US', 'mobile'),
      click('0c', M0, 'DE', 'desktop'),
      click('1a', M1, 'US', 'mobile'),
      click('1b', M1, 'US', 'desktop'),
      // Brings the shard's watermark (and so the closing of M0..M2) forward.
      JSON.stringify({ click_id: 'rq-now', ad_id: AD, ts: Date.now() }),
    ]);
    expect(res.status).toBe(200);
    expect(res.body.accepted).toBe(6);
  });
  afterAll(async () => {
    redis?.disconnect();
    await stack?.close();
  });

  it('answers invalid 0 and invalid_by_rule {} everywhere without rules', async () => {
    const body = await finalAdCount(stack.url, AD, M0 * MIN, (M2 + 1) * MIN);
    expect(body).toMatchObject({ ad_id: AD, from: iso(M0), to: iso(M2 + 1), count: 5, invalid: 0, invalid_by_rule: {} });
    expect(body.minutes).toEqual([
      { minute: iso(M0), count: 3, invalid: 0, invalid_by_rule: {}, final: true, state: 'closed' },
      { minute: iso(M1), count: 2, invalid: 0, invalid_by_rule: {}, final: true, state: 'closed' },
      { minute: iso(M2), count: 0, invalid: 0, invalid_by_rule: {}, final: true, state: 'closed' },
    ]);
    const inv = await get(`/v1/ads/${AD}/invalid?${range}`);
    expect(inv.status).toBe(200);
    expect(inv.body).toMatchObject({ ad_id: AD, count: 5, invalid: 0, invalid_share: 0, invalid_by_rule: {} });
  });

  it('reads every rule field per minute, sums the range and lists every known rule', async () => {
    await redis.sadd(keys.riskRuleNames(), 'freq', 'block', 'gone');
    await seed(M0, '!inv', 'freq', 4);
    await seed(M1, '!inv', 'block', 2);
    await seed(M0, '!inv:freq:country', 'US', 3);
    await seed(M0, '!inv:freq:country', 'DE', 1);
    await seed(M1, '!inv:block:country', 'US', 2);
    await seed(M0, '!inv:freq:country+device', `US${CUBE_SEPARATOR}mobile`, 1);
    await seed(M0, '!inv:freq:country+device', `US${CUBE_SEPARATOR}desktop`, 2);
    // Seeded minutes the actor still held would show its (zero) values: wait for Redis to be read.
    const { body } = await waitForValue(
      'aggregated_count to read the seeded fields',
      () => get(`/v1/ads/${AD}/aggregated_count?${range}`),
      (r) => r.status === 200 && r.body.invalid === 6,
    );
    expect(body).toEqual({
      ad_id: AD,
      from: iso(M0),
      to: iso(M2 + 1),
      count: 5,
      invalid: 6,
      invalid_by_rule: { block: 2, freq: 4, gone: 0 },
      minutes: [
        { minute: iso(M0), count: 3, invalid: 4, invalid_by_rule: { block: 0, freq: 4, gone: 0 }, final: true, state: 'closed' },
        { minute: iso(M1), count: 2, invalid: 2, invalid_by_rule: { block: 2, freq: 0, gone: 0 }, final: true, state: 'closed' },
        { minute: iso(M2), count: 0, invalid: 0, invalid_by_rule: { block: 0, freq: 0, gone: 0 }, final: true, state: 'closed' },
      ],
      watermark: expect.any(String),
      sealed_through: expect.any(String),
    });
    // Keys in the order the contract lists them, rules sorted by name.
    expect(Object.keys(body)).toEqual(['ad_id', 'from', 'to', 'count', 'invalid', 'invalid_by_rule', 'minutes', 'watermark', 'sealed_through']);
    expect(Object.keys(body.invalid_by_rule)).toEqual(['block', 'freq', 'gone']);

    const inv = await get(`/v1/ads/${AD}/invalid?${range}`);
    expect(inv.status).toBe(200);
    expect(inv.body).toEqual({ ...body, invalid_share: 6 / 11 });
    expect(Object.keys(inv.body)).toEqual(['ad_id', 'from', 'to', 'count', 'invalid', 'invalid_share', 'invalid_by_rule', 'minutes', 'watermark', 'sealed_through']);

    // A sub-range: only its minutes.
    const one = await get(`/v1/ads/${AD}/invalid?from=${M1 * MIN}&to=${M2 * MIN}`);
    expect(one.body).toMatchObject({ count: 2, invalid: 2, invalid_share: 0.5, invalid_by_rule: { block: 2, freq: 0, gone: 0 } });
  });

  it('reads the filtered fields under a dimension or cube filter', async () => {
    const us = await get(`/v1/ads/${AD}/aggregated_count?${range}&country=US`);
    expect(us.status).toBe(200);
    expect(us.body).toMatchObject({ count: 4, invalid: 5, invalid_by_rule: { block: 2, freq: 3, gone: 0 } });
    expect(us.body.minutes.map((m: any) => [m.count, m.invalid])).toEqual([
      [2, 3],
      [2, 2],
      [0, 0],
    ]);
    const de = await get(`/v1/ads/${AD}/invalid?${range}&country=de`);
    expect(de.body).toMatchObject({ count: 1, invalid: 1, invalid_share: 0.5, invalid_by_rule: { block: 0, freq: 1, gone: 0 } });
    const cube = await get(`/v1/ads/${AD}/invalid?${range}&country=US&device=desktop`);
    expect(cube.body).toMatchObject({ count: 1, invalid: 2, invalid_by_rule: { block: 0, freq: 2, gone: 0 } });
    expect(cube.body.invalid_share).toBeCloseTo(2 / 3, 12);
    // A filter that is not pre-aggregated is refused as on aggregated_count.
    const ip = await get(`/v1/ads/${AD}/invalid?${range}&ip=1.2.3.4`);
    expect(ip.status).toBe(400);
    expect(ip.body.code).toBe('ADAGG_E_FILTER_NOT_PREAGGREGATED');
  });

  it('checks the invalid route parameters like aggregated_count', async () => {
    const cases: Array<[string, number, string]> = [
      [`/v1/ads/${AD}/invalid?from=${M0 * MIN}`, 400, 'ADAGG_E_BAD_PARAM'],
      [`/v1/ads/${AD}/invalid?from=${M1 * MIN}&to=${M0 * MIN}`, 400, 'ADAGG_E_BAD_PARAM'],
      [`/v1/ads/${AD}/invalid?from=0&to=${365 * 24 * 60 * MIN}`, 400, 'ADAGG_E_RANGE_TOO_LARGE'],
      [`/v1/ads/bad%20id/invalid?${range}`, 400, 'ADAGG_E_BAD_PARAM'],
    ];
    for (const [path, status, code] of cases) {
      const r = await get(path);
      expect(r.status, path).toBe(status);
      expect(r.body.code, path).toBe(code);
    }
  });

  it('offenders: 404 for an unknown rule, 400 past the horizon, the window ending with the current minute', async () => {
    const unknown = await get('/v1/risk/offenders?rule=nope&window=5');
    expect(unknown.status).toBe(404);
    expect(unknown.body.code).toBe('ADAGG_E_UNKNOWN_RULE');
    const far = await get(`/v1/risk/offenders?rule=freq&window=${HORIZON_MIN + 1}`);
    expect(far.status).toBe(400);
    expect(far.body.code).toBe('ADAGG_E_WINDOW_BEYOND_HORIZON');
    for (const q of ['window=5', 'rule=freq&limit=1001', 'rule=freq&limit=0', 'rule=freq&window=x', 'rule=bad%20name', 'rule=freq&country=US']) {
      const r = await get(`/v1/risk/offenders?${q}`);
      expect(r.status, q).toBe(400);
      expect(r.body.code, q).toBe('ADAGG_E_BAD_PARAM');
    }
    const before = Math.floor(Date.now() / MIN);
    const ok = await get(`/v1/risk/offenders?rule=freq&window=${HORIZON_MIN}&limit=3`);
    const after = Math.floor(Date.now() / MIN);
    expect(ok.status).toBe(200);
    expect(ok.body).toMatchObject({ rule: 'freq', window: HORIZON_MIN, offenders: expect.any(Array) });
    const to = Date.parse(ok.body.to) / MIN;
    expect(to).toBeGreaterThanOrEqual(before + 1);
    expect(to).toBeLessThanOrEqual(after + 1);
    expect(Date.parse(ok.body.from) / MIN).toBe(to - HORIZON_MIN);
    expect(ok.body.offenders.length).toBeLessThanOrEqual(3);
    // A removed rule (still in the names) is known; the default window and limit apply.
    const gone = await get('/v1/risk/offenders?rule=gone');
    expect(gone.status).toBe(200);
    expect(gone.body.window).toBe(10);
  });
});
