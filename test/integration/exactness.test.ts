import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { realisticStream, Truth } from '../helpers/click-stream.ts';
import { postClicks, startStack, type TestStack } from '../helpers/stack.ts';
import { verifyAdMinutes, verifyTopN, waitAllClosed } from '../helpers/verify.ts';

/**
 * The core promise: a Zipf-skewed stream (one ad ~25% of clicks) with late events up to 4 minutes,
 * 2% exact duplicates and malformed lines, posted over HTTP, gives exactly the counts of an
 * independent recount: every ad-minute, a country filter, and top-N windows.
 */
describe('exact counts end to end', () => {
  let stack: TestStack;
  // More ads, a longer span and more malformed lines than the default mix.
  const stream = realisticStream({ seed: 42, events: 20_000, ads: 400, startAgoMs: 9 * 60_000, lateFraction: 0.015, malformedFraction: 0.005 });
  const truth = new Truth().add(stream.clicks);

  beforeAll(async () => {
    stack = await startStack({ shards: 4 });
  });
  afterAll(async () => {
    await stack?.close();
  });

  it('ingests with per-line rejections and loses no valid click', async () => {
    let accepted = 0;
    let rejected = 0;
    for (let i = 0; i < stream.lines.length; i += 1000) {
      const res = await postClicks(stack.url, stream.lines.slice(i, i + 1000));
      expect(res.status).toBe(200);
      accepted += res.body.accepted;
      rejected += res.body.rejected.length;
    }
    expect(accepted).toBe(stream.clicks.length);
    expect(rejected).toBe(stream.malformed);
    const hot = truth.count('ad-0', 0, Number.MAX_SAFE_INTEGER) / truth.distinct;
    expect(hot).toBeGreaterThan(0.2);
    expect(hot).toBeLessThan(0.3);
  });

  it('every ad-minute and a country filter equal the truth once minutes close', async () => {
    const minutes = truth.minutes();
    await waitAllClosed(stack.url, minutes[minutes.length - 1]!);
    const topAds = truth.top(10, 0, Number.MAX_SAFE_INTEGER).map((r) => r.ad_id);
    const mismatches = await verifyAdMinutes(stack.url, truth, { adsForCountry: [...topAds, 'ad-57', 'ad-399'], countries: ['US', 'JP'] });
    expect(mismatches.slice(0, 10)).toEqual([]);
  });

  it('top-N windows equal a full recount, ties by ad_id', async () => {
    const minutes = truth.minutes();
    const last = minutes[minutes.length - 1]! + 1;
    const mismatches = await verifyTopN(stack.url, truth, [
      { n: 10, window: 1, toMinute: last },
      { n: 10, window: 5, toMinute: last },
      { n: 25, window: 10, toMinute: last },
      { n: 5, window: 3, toMinute: last - 3 },
      { n: 10, window: 5, toMinute: last, country: 'DE' },
      { n: 400, window: 60, toMinute: last },
    ]);
    expect(mismatches).toEqual([]);
  });

  it('popular_ads defaults to the window ending at the latest closed minute', async () => {
    const res = await fetch(`${stack.url}/v1/ads/popular_ads?count=10&window=10`);
    const body = (await res.json()) as { from: string; to: string; ads: unknown };
    const to = Date.parse(body.to) / 60_000;
    expect(to).toBeGreaterThan(truth.minutes().at(-1)!);
    expect(to * 60_000).toBeLessThanOrEqual(Date.now());
    expect(body.ads).toEqual(truth.top(10, to - 10, to));
  });
});
