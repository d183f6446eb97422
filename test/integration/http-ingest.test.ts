import { jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { topology, type Topology } from '../../src/runtime/topology.ts';
import { finalAdCount, waitShardsCommitted } from '../helpers/settle.ts';
import { getJson, postClicks, startStack, type TestStack } from '../helpers/stack.ts';
import { waitFor } from '../helpers/wait.ts';

/**
 * The public HTTP contract of the gateway on a real stack: per-line rejection codes beside counted
 * lines, body limits and media types, client retries and cross-request duplicates counted once,
 * the dead-letter stream, filters, popular_ads ordering, query parameter errors and ops endpoints.
 */
describe('HTTP ingest and query contract', () => {
  let stack: TestStack;
  let nc: NatsConnection;
  let jsm: JetStreamManager;
  let topo: Topology;

  const MIN = 60_000;
  // Main minute of the clicks (about 2.5 minutes ago) and a separate minute for the popular_ads set,
  // so no other test's clicks land in the popular_ads window.
  const M = Math.floor((Date.now() - 150_000) / MIN);
  const P = M - 2;
  const at = (minute: number, sec: number): number => minute * MIN + sec * 1000;
  const click = (id: string, ad: string, ts: number | string, extra: Record<string, unknown> = {}): string =>
    JSON.stringify({ click_id: id, ad_id: ad, ts, ...extra });

  const count = (ad: string, from: number, to: number, filter = ''): Promise<{ status: number; body: any }> =>
    getJson(`${stack.url}/v1/ads/${encodeURIComponent(ad)}/aggregated_count?from=${from * MIN}&to=${to * MIN}${filter}`);

  /** Waits until every shard has committed (Redis meta seq) the last message on its subject. */
  const settle = (): Promise<void> => waitShardsCommitted(stack, jsm);

  /** The final count of `ad` in minutes [from, to): settles, waits until every minute is final, returns the body. */
  const finalCount = async (ad: string, from: number, to: number, filter = ''): Promise<any> => {
    await settle();
    return finalAdCount(stack.url, ad, from * MIN, to * MIN, filter);
  };

  beforeAll(async () => {
    stack = await startStack({ maxBodyBytes: 4096, maxLines: 50 });
    topo = topology(stack.opts.prefix);
    nc = await connect({ servers: stack.servers.natsUrl });
    jsm = await jetstreamManager(nc);
  });
  afterAll(async () => {
    await nc?.drain().catch(() => undefined);
    await stack?.close();
  });

  it('reports every per-line code with its 1-based line and still counts the valid lines', async () => {
    const now = Date.now();
    const lines = [
      click('pl-1', 'ing-1', at(M, 1)), // 1 ok
      '{"click_id": "pl-x", "ad_id": ', // 2 invalid_json
      click('pl-2', 'ing-1', at(M, 2), { country: 'US', ip: '207.148.22.22', user_id: 'u1' }), // 3 ok
      JSON.stringify({ ad_id: 'ing-1', ts: at(M, 3) }), // 4 missing_field (click_id)
      click('pl-bad-ad', 'bad id!', at(M, 4)), // 5 invalid_field
      click('pl-bad-ip', 'ing-1', at(M, 5), { ip: '999.1.1.1' }), // 6 invalid_ip
      click('pl-bad-ts', 'ing-1', 'yesterday'), // 7 invalid_ts
      click('pl-too-old', 'ing-1', now - 2 * 3600_000), // 8 too_old
      click('pl-future', 'ing-1', now + 3600_000), // 9 in_future
      '', // 10 blank: skipped but still numbered
      click('pl-3', 'ing-1', at(M, 6)), // 11 ok
    ];
    const res = await postClicks(stack.url, lines);
    expect(res.status).toBe(200);
    expect(res.body.accepted).toBe(3);
    expect(res.body.rejected.map((r: { line: number; code: string }) => [r.line, r.code])).toEqual([
      [2, 'invalid_json'],
      [4, 'missing_field'],
      [5, 'invalid_field'],
      [6, 'invalid_ip'],
      [7, 'invalid_ts'],
      [8, 'too_old'],
      [9, 'in_future'],
    ]);
    for (const r of res.body.rejected as Array<{ error: unknown }>) {
      expect(typeof r.error).toBe('string');
      expect((r.error as string).length).toBeGreaterThan(0);
    }

    const body = await finalCount('ing-1', M, M + 1);
    expect(body.count).toBe(3);
    expect(body.ad_id).toBe('ing-1');
    expect(body.from).toBe(new Date(M * MIN).toISOString());
    expect(body.to).toBe(new Date((M + 1) * MIN).toISOString());
    expect(body.minutes).toEqual([{ minute: new Date(M * MIN).toISOString(), count: 3, invalid: 0, invalid_by_rule: {}, final: true, state: 'closed' }]);
    expect(typeof body.watermark).toBe('string');
    expect(Date.parse(body.watermark)).toBeGreaterThanOrEqual((M + 1) * MIN);
  });

  it('writes too_old lines to the dead-letter stream', async () => {
    const msg = await jsm.streams.getMessage(topo.deadLetterStream, { last_by_subj: topo.deadLetterSubject('too_old') });
    expect(msg).not.toBeNull();
    expect(msg!.subject).toBe(`${stack.opts.prefix.toLowerCase()}.dlq.too_old`);
    expect(topo.deadLetterStream).toBe(`${stack.opts.prefix.toUpperCase()}_DLQ`);
    const letter = msg!.json<{ reason: string; raw: string; source: string; error: string }>();
    expect(letter.reason).toBe('too_old');
    expect(letter.source).toBe('http');
    expect(JSON.parse(letter.raw)).toMatchObject({ click_id: 'pl-too-old', ad_id: 'ing-1' });
    const info = await jsm.streams.info(topo.deadLetterStream, { subjects_filter: '>' });
    expect(info.state.subjects?.[topo.deadLetterSubject('too_old')]).toBe(1);
  });

  it('accepts a JSON array body with per-element line numbers', async () => {
    const arr = [
      { click_id: 'ja-1', ad_id: 'json-1', ts: at(M, 10) },
      { click_id: 'ja-2', ad_id: 'json-1', ts: new Date(at(M, 11)).toISOString(), country: 'FR' },
      { click_id: 'ja-3', ad_id: 'json-1' },
      'not an object',
      { click_id: 'ja-4', ad_id: 'json-1', ts: at(M, 12) },
    ];
    const res = await fetch(`${stack.url}/v1/clicks`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(arr),
    });
    expect(res.status).toBe(200);
    const body = (await res.json()) as any;
    expect(body.accepted).toBe(3);
    expect(body.rejected.map((r: { line: number; code: string }) => [r.line, r.code])).toEqual([
      [3, 'missing_field'],
      [4, 'invalid_field'],
    ]);
    expect((await finalCount('json-1', M, M + 1)).count).toBe(3);
  });

  it('413 for a body above maxBodyBytes and for more than maxLines clicks', async () => {
    const big = click('big-1', 'big-1', at(M, 1), { pad: 'x'.repeat(5000) });
    const r1 = await postClicks(stack.url, [big]);
    expect(r1.status).toBe(413);
    expect(r1.body.code).toBe('ADAGG_E_BODY_TOO_LARGE');

    const lines = Array.from({ length: 51 }, (_, i) => JSON.stringify({ click_id: `l${i}`, ad_id: 'many', ts: at(M, 1) }));
    expect(lines.join('\n').length).toBeLessThan(4096);
    const r2 = await postClicks(stack.url, lines);
    expect(r2.status).toBe(413);
    expect(r2.body.code).toBe('ADAGG_E_TOO_MANY_LINES');

    const r3 = await postClicks(stack.url, [`[${lines.join(',')}]`], 'application/json');
    expect(r3.status).toBe(413);
    expect(r3.body.code).toBe('ADAGG_E_TOO_MANY_LINES');

    // Exactly maxLines is fine.
    const r4 = await postClicks(stack.url, lines.slice(0, 50));
    expect(r4.status).toBe(200);
    expect(r4.body.accepted).toBe(50);
    expect((await finalCount('many', M, M + 1)).count).toBe(50);
  });

  it('400 for an all-bad body and for an empty body; 415 for text/csv', async () => {
    const bad = await postClicks(stack.url, ['{"nope', JSON.stringify({ ad_id: 'x', ts: 1 }), '[1,2]']);
    expect(bad.status).toBe(400);
    expect(bad.body.code).toBe('ADAGG_E_NO_VALID_CLICKS');
    expect(bad.body.accepted).toBe(0);
    expect(bad.body.rejected.map((r: { line: number; code: string }) => [r.line, r.code])).toEqual([
      [1, 'invalid_json'],
      [2, 'missing_field'],
      [3, 'invalid_field'],
    ]);

    const empty = await postClicks(stack.url, []);
    expect(empty.status).toBe(400);
    expect(empty.body.code).toBe('ADAGG_E_NO_VALID_CLICKS');

    const blank = await postClicks(stack.url, ['', '  ', '']);
    expect(blank.status).toBe(400);
    expect(blank.body.code).toBe('ADAGG_E_NO_VALID_CLICKS');

    const csv = await postClicks(stack.url, ['click_id,ad_id,ts', `c1,csv-1,${at(M, 1)}`], 'text/csv');
    expect(csv.status).toBe(415);
    expect(csv.body.code).toBe('ADAGG_E_UNSUPPORTED_MEDIA_TYPE');
  });

  it('the same request posted 3 times (a client retry) is counted once', async () => {
    const lines = Array.from({ length: 20 }, (_, i) =>
      click(`rt-${i}`, `retry-${i % 3}`, at(M, 20 + i), { country: i % 2 ? 'US' : 'DE' }),
    );
    const dupBefore = await metricValue('adagg_duplicates_total');
    const stored: number[] = [];
    for (let k = 0; k < 3; k++) {
      const r = await postClicks(stack.url, lines);
      expect(r.status).toBe(200);
      // A retry says its clicks were already ingested (issue 13: `duplicates`, present when not 0).
      expect(r.body).toEqual(k === 0 ? { accepted: 20, rejected: [] } : { accepted: 20, duplicates: 20, rejected: [] });
      stored.push((await jsm.streams.info(topo.clicksStream)).state.messages);
    }
    // The retries carry the same Nats-Msg-Ids: JetStream stores nothing new for them.
    expect(stored[1]).toBe(stored[0]);
    expect(stored[2]).toBe(stored[0]);
    const want = [7, 7, 6]; // i % 3 over 0..19
    for (let a = 0; a < 3; a++) expect((await finalCount(`retry-${a}`, M, M + 1)).count).toBe(want[a]);
    expect(await metricValue('adagg_duplicates_total')).toBe(dupBefore);
  });

  it('the same click_id in two different requests (different batch composition) is counted once', async () => {
    const dupBefore = await metricValue('adagg_duplicates_total');
    const first = [click('xd-1', 'xdup', at(M, 30)), click('xd-2', 'xdup', at(M, 31)), click('xd-3', 'xdup', at(M, 32))];
    const r1 = await postClicks(stack.url, first);
    expect(r1.body.accepted).toBe(3);
    await settle();
    // A second request re-sends xd-2 and xd-3 next to two new clicks, one of them also twice in the same body.
    const second = [
      click('xd-4', 'xdup', at(M, 33)),
      click('xd-2', 'xdup', at(M, 31)),
      click('xd-5', 'xdup', at(M, 34)),
      click('xd-3', 'xdup', at(M, 32)),
      click('xd-5', 'xdup', at(M, 34)),
    ];
    const r2 = await postClicks(stack.url, second);
    expect(r2.body.accepted).toBe(5);
    expect((await finalCount('xdup', M, M + 1)).count).toBe(5);
    expect((await metricValue('adagg_duplicates_total')) - dupBefore).toBe(3);
  });

  it('country filter counts only the matching clicks (case-insensitive)', async () => {
    const lines = [
      click('cf-1', 'cty-1', at(M, 40), { country: 'US' }),
      click('cf-2', 'cty-1', at(M, 41), { country: 'US' }),
      click('cf-3', 'cty-1', at(M, 42), { country: 'us' }),
      click('cf-4', 'cty-1', at(M, 43), { country: 'DE' }),
      click('cf-5', 'cty-1', at(M, 44), { country: 'DE' }),
      click('cf-6', 'cty-1', at(M, 45)),
      click('cf-7', 'cty-1', at(M + 1, 1), { country: 'US' }),
    ];
    expect((await postClicks(stack.url, lines)).body.accepted).toBe(7);
    const all = await finalCount('cty-1', M, M + 2);
    expect(all.count).toBe(7);
    expect(all.minutes.map((m: { count: number }) => m.count)).toEqual([6, 1]);
    const us = await finalCount('cty-1', M, M + 2, '&country=US');
    expect(us.count).toBe(4);
    expect(us.minutes.map((m: { count: number }) => m.count)).toEqual([3, 1]);
    expect((await finalCount('cty-1', M, M + 2, '&country=de')).count).toBe(2);
    expect((await finalCount('cty-1', M, M + 2, '&country=FR')).count).toBe(0);
  });

  it('popular_ads orders by count desc, then ad_id asc, with filters and count truncation', async () => {
    // minute P only holds these clicks: d=4, a=3, b=3, c=2, e=1 (a and b tie)
    const spec: Array<[string, number, string]> = [
      ['pop-b', 3, 'US'],
      ['pop-e', 1, 'US'],
      ['pop-a', 3, 'DE'],
      ['pop-d', 4, 'DE'],
      ['pop-c', 2, 'US'],
    ];
    const lines: string[] = [];
    for (const [ad, n, country] of spec) {
      for (let i = 0; i < n; i++) lines.push(click(`${ad}-${i}`, ad, at(P, 5 + i), { country }));
    }
    expect((await postClicks(stack.url, lines)).body.accepted).toBe(13);
    await settle();
    await waitFor('minute P final', async () => (await count('pop-a', P, P + 1)).body.minutes?.[0]?.final === true);

    const atMs = (P + 1) * MIN;
    const top = await getJson(`${stack.url}/v1/ads/popular_ads?count=10&window=1&at=${atMs}`);
    expect(top.status).toBe(200);
    expect(top.body).toEqual({
      from: new Date(P * MIN).toISOString(),
      to: new Date((P + 1) * MIN).toISOString(),
      ads: [
        { ad_id: 'pop-d', count: 4 },
        { ad_id: 'pop-a', count: 3 },
        { ad_id: 'pop-b', count: 3 },
        { ad_id: 'pop-c', count: 2 },
        { ad_id: 'pop-e', count: 1 },
      ],
    });
    const top3 = await getJson(`${stack.url}/v1/ads/popular_ads?count=3&window=1&at=${atMs}`);
    expect(top3.body.ads).toEqual([
      { ad_id: 'pop-d', count: 4 },
      { ad_id: 'pop-a', count: 3 },
      { ad_id: 'pop-b', count: 3 },
    ]);
    const us = await getJson(`${stack.url}/v1/ads/popular_ads?count=10&window=1&at=${atMs}&country=US`);
    expect(us.body.ads).toEqual([
      { ad_id: 'pop-b', count: 3 },
      { ad_id: 'pop-c', count: 2 },
      { ad_id: 'pop-e', count: 1 },
    ]);
    // An empty window.
    const none = await getJson(`${stack.url}/v1/ads/popular_ads?count=10&window=1&at=${P * MIN}`);
    expect(none.status).toBe(200);
    expect(none.body.ads).toEqual([]);
  });

  it('query parameter errors give 400 with the exact code', async () => {
    const f = M * MIN;
    const t = (M + 1) * MIN;
    const base = `${stack.url}/v1/ads/ing-1/aggregated_count`;
    const cases: Array<[string, string]> = [
      [`${base}?to=${t}`, 'ADAGG_E_BAD_PARAM'], // missing from
      [`${base}?from=${f}`, 'ADAGG_E_BAD_PARAM'], // missing to
      [`${base}?from=yesterday&to=${t}`, 'ADAGG_E_BAD_PARAM'], // bad ts
      [`${base}?from=${f}&to=soon`, 'ADAGG_E_BAD_PARAM'],
      [`${base}?from=${f}&to=${f}`, 'ADAGG_E_BAD_PARAM'], // to == from
      [`${base}?from=${t}&to=${f}`, 'ADAGG_E_BAD_PARAM'], // to < from
      [`${base}?from=${f}&to=${f + 30_000}`, 'ADAGG_E_BAD_PARAM'], // same minute
      [`${base}?from=${f}&from=${f}&to=${t}`, 'ADAGG_E_BAD_PARAM'], // given twice
      [`${base}?from=0&to=${t}`, 'ADAGG_E_RANGE_TOO_LARGE'],
      [`${base}?from=${f - 10_081 * MIN}&to=${f}`, 'ADAGG_E_RANGE_TOO_LARGE'],
      [`${base}?from=${f}&to=${t}&user_id=u1`, 'ADAGG_E_FILTER_NOT_PREAGGREGATED'],
      [`${base}?from=${f}&to=${t}&country=US&user_id=u1`, 'ADAGG_E_FILTER_NOT_PREAGGREGATED'],
      [`${base}?from=${f}&to=${t}&country=`, 'ADAGG_E_BAD_PARAM'],
      [`${stack.url}/v1/ads/bad%20id/aggregated_count?from=${f}&to=${t}`, 'ADAGG_E_BAD_PARAM'],
      [`${stack.url}/v1/ads/popular_ads?count=0`, 'ADAGG_E_BAD_PARAM'],
      [`${stack.url}/v1/ads/popular_ads?count=abc`, 'ADAGG_E_BAD_PARAM'],
      [`${stack.url}/v1/ads/popular_ads?count=1001`, 'ADAGG_E_BAD_PARAM'],
      [`${stack.url}/v1/ads/popular_ads?window=0`, 'ADAGG_E_BAD_PARAM'],
      [`${stack.url}/v1/ads/popular_ads?at=later`, 'ADAGG_E_BAD_PARAM'],
      [`${stack.url}/v1/ads/popular_ads?count=5&user_id=u1`, 'ADAGG_E_FILTER_NOT_PREAGGREGATED'],
    ];
    const got = await Promise.all(cases.map(async ([u]) => getJson(u)));
    const summary = got.map((r, i) => ({ url: cases[i]![0].replace(stack.url, ''), status: r.status, code: r.body.code }));
    expect(summary).toEqual(cases.map(([u, code]) => ({ url: u.replace(stack.url, ''), status: 400, code })));
    for (const r of got) expect(typeof r.body.error).toBe('string');
    // Exactly the maximum range is allowed.
    expect((await getJson(`${base}?from=${f - 10_080 * MIN}&to=${f}`)).status).toBe(200);
  });

  it('/metrics, /healthz, /readyz and /v1/status', async () => {
    const res = await fetch(`${stack.url}/metrics`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/text\/plain/);
    const text = await res.text();
    for (const name of [
      'adagg_ingest_clicks_total',
      'adagg_duplicates_total',
      'adagg_late_events_total',
      'adagg_snapshot_seconds',
      'adagg_consumer_lag_messages',
      'adagg_watermark_delay_seconds',
    ]) {
      expect(text, name).toContain(`# TYPE ${name} `);
    }
    expect(text).toMatch(/adagg_ingest_clicks_total\{source="http",result="accepted"\} \d+/);
    expect(text).toMatch(/adagg_ingest_clicks_total\{source="http",result="too_old"\} 1/);

    expect(await getJson(`${stack.url}/healthz`)).toEqual({ status: 200, body: { status: 'ok' } });
    const ready = await getJson(`${stack.url}/readyz`);
    expect(ready.status).toBe(200);
    expect(ready.body.status).toBe('ready');

    const st = await getJson(`${stack.url}/v1/status`);
    expect(st.status).toBe(200);
    const shards = st.body.shards as Array<Record<string, unknown>>;
    expect(shards.map((s) => s.shard)).toEqual([0, 1, 2, 3]);
    for (const s of shards) {
      expect(s.state).toBe('running');
      expect(typeof s.watermark).toBe('string');
      expect(Number.isNaN(Date.parse(s.watermark as string))).toBe(false);
      expect(typeof s.last_seq).toBe('number');
      expect(typeof s.lag).toBe('number');
    }
  });

  // Regression: popular_ads used to read only Redis once the window was committed, missing late
  // corrections applied in the actor but not yet committed (aggregated_count showed them).
  // A second stack on the same servers with a long snapshot interval makes the window deterministic.
  describe('late corrections before their commit', () => {
    let slow: TestStack;
    beforeAll(async () => {
      slow = await startStack({ snapshotIntervalMs: 60_000 }, stack.servers);
    });
    afterAll(async () => {
      await slow?.close();
    });

    it('popular_ads agrees with aggregated_count on a corrected closed minute', async () => {
      const L = Math.floor((Date.now() - 240_000) / MIN);
      const agg = (): Promise<{ status: number; body: any }> =>
        getJson(`${slow.url}/v1/ads/late-ad/aggregated_count?from=${L * MIN}&to=${(L + 1) * MIN}`);
      await waitFor('minute L closed', async () => (await agg()).body.minutes?.[0]?.final === true);
      // Minutes close (and commit) about lateness + idle = 6 s after each minute boundary: stay clear of that.
      await waitFor('clear of a minute close', () => {
        const s = Date.now() % MIN;
        return s > 11_000 && s < 55_000;
      }, { timeoutMs: 60_000, everyMs: 100 });
      const lines = [0, 1, 2].map((i) => click(`late-${i}`, 'late-ad', at(L, 10 + i)));
      expect((await postClicks(slow.url, lines)).body.accepted).toBe(3);
      await waitFor('late clicks applied', async () => (await agg()).body.count === 3, { timeoutMs: 10_000, everyMs: 50 });
      expect((await agg()).body.minutes[0]).toMatchObject({ count: 3, final: true });
      const top = await getJson(`${slow.url}/v1/ads/popular_ads?count=10&window=1&at=${(L + 1) * MIN}`);
      expect(top.body.ads).toEqual([{ ad_id: 'late-ad', count: 3 }]);
    });
  });

  async function metricValue(name: string): Promise<number> {
    const text = await (await fetch(`${stack.url}/metrics`)).text();
    const m = new RegExp(`^${name} (\\d+)`, 'm').exec(text);
    return m ? Number(m[1]) : 0;
  }
});
