/** Compares what adagg serves over HTTP with an independently computed Truth. */
import type { Truth } from './click-stream.ts';
import { getJson } from './stack.ts';
import { waitForValue } from './wait.ts';

export interface Mismatch {
  what: string;
  expected: unknown;
  actual: unknown;
}

/** Every ad × minute (and optionally country) through aggregated_count; all minutes must be final. */
export async function verifyAdMinutes(url: string, truth: Truth, opts: { countries?: string[]; adsForCountry?: string[] } = {}): Promise<Mismatch[]> {
  const minutes = truth.minutes();
  const from = minutes[0]! * 60_000;
  const to = (minutes[minutes.length - 1]! + 1) * 60_000;
  const out: Mismatch[] = [];
  const check = async (ad: string, country?: string): Promise<void> => {
    const q = `${url}/v1/ads/${encodeURIComponent(ad)}/aggregated_count?from=${from}&to=${to}${country ? `&country=${country}` : ''}`;
    const { status, body } = await getJson(q);
    if (status !== 200) {
      out.push({ what: `GET ${q}`, expected: 200, actual: `${status} ${JSON.stringify(body)}` });
      return;
    }
    let total = 0;
    for (const row of body.minutes as Array<{ minute: string; count: number; final: boolean }>) {
      const m = Date.parse(row.minute) / 60_000;
      const want = truth.count(ad, m, m + 1, country);
      total += want;
      if (row.count !== want || !row.final) {
        out.push({ what: `${ad}${country ? `/${country}` : ''} @ ${row.minute}`, expected: `${want} final`, actual: `${row.count} ${row.final ? 'final' : 'provisional'}` });
      }
    }
    if (body.count !== total) out.push({ what: `${ad}${country ? `/${country}` : ''} total`, expected: total, actual: body.count });
  };
  const ads = [...truth.byAd.keys()];
  for (let i = 0; i < ads.length; i += 16) await Promise.all(ads.slice(i, i + 16).map((ad) => check(ad)));
  for (const ad of opts.adsForCountry ?? []) for (const c of opts.countries ?? []) await check(ad, c);
  return out;
}

/** Top-N for the given windows ending at `toMinute`s, compared with the truth's full recount. */
export async function verifyTopN(url: string, truth: Truth, cases: Array<{ n: number; window: number; toMinute: number; country?: string }>): Promise<Mismatch[]> {
  const out: Mismatch[] = [];
  for (const c of cases) {
    const q = `${url}/v1/ads/popular_ads?count=${c.n}&window=${c.window}&at=${c.toMinute * 60_000}${c.country ? `&country=${c.country}` : ''}`;
    const { status, body } = await getJson(q);
    const want = truth.top(c.n, c.toMinute - c.window, c.toMinute, c.country);
    if (status !== 200 || JSON.stringify(body.ads) !== JSON.stringify(want)) {
      out.push({ what: q, expected: want, actual: status === 200 ? body.ads : body });
    }
    if (status === 200 && Date.parse(body.to) !== c.toMinute * 60_000) out.push({ what: `${q} to`, expected: c.toMinute * 60_000, actual: body.to });
  }
  return out;
}

/** Waits until every minute up to `lastMinute` is final in every shard (via /v1/status watermarks) and no shard lags. */
export async function waitAllClosed(url: string, lastMinute: number, timeoutMs = 60_000): Promise<void> {
  type StatusShard = { watermark: string | null; committed_seq: number; last_seq: number; lag: number | null };
  await waitForValue(
    `minutes up to ${new Date(lastMinute * 60_000).toISOString()} closed in every shard`,
    () => getJson(`${url}/v1/status`).catch(() => ({ status: 0, body: null })),
    ({ status, body }) =>
      status === 200 &&
      (body.shards as StatusShard[]).every((s) => s.watermark !== null && Date.parse(s.watermark) >= (lastMinute + 1) * 60_000 && s.lag === 0),
    { timeoutMs, everyMs: 250 },
  );
}
