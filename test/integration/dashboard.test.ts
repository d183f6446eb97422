import { existsSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateStream } from '../helpers/click-stream.ts';
import { sha256Hex } from '../../src/gateway/auth/token-hash.ts';
import { minuteOf } from '../../src/model/time.ts';
import { shardOf } from '../../src/model/partition.ts';
import { RedisKeys } from '../../src/runtime/redis-keys.ts';
import { startStack, type TestStack } from '../helpers/stack.ts';
import { waitForValue } from '../helpers/wait.ts';

/**
 * The dashboard at `/` in a real browser (Debian's chromium driven by playwright-core) against a
 * real stack: the live top-N table follows posted clicks without a reload, the country filter
 * re-subscribes over the same socket, and the chart draws the charted ad's minutes. Authentication
 * is on: the page gets its token from the URL fragment, as `npm start` prints it.
 */
const CHROMIUM = '/usr/bin/chromium';
const HAVE_CHROMIUM = existsSync(CHROMIUM);
const NO_CHROMIUM = `${CHROMIUM} not found (install it: apt-get install chromium)`;
if (!HAVE_CHROMIUM) console.warn(`dashboard browser tests skipped: ${NO_CHROMIUM}`);

const ROOT = path.resolve(import.meta.dirname, '..', '..');
const SCREENSHOT = path.join(ROOT, 'test-artifacts', 'dashboard.png');
const DOCS_SCREENSHOT = path.join(ROOT, 'docs', 'dashboard.png');

interface Click {
  click_id: string;
  ad_id: string;
  ts: number;
  country: string;
}

interface Row {
  ad_id: string;
  count: number;
}

/** The expected table: clicks per ad (optionally of one country), count desc then ad_id asc. */
function expectedTop(clicks: readonly Click[], country?: string): Row[] {
  const counts = new Map<string, number>();
  for (const c of clicks) if (!country || c.country === country) counts.set(c.ad_id, (counts.get(c.ad_id) ?? 0) + 1);
  return [...counts]
    .map(([ad_id, count]) => ({ ad_id, count }))
    .sort((a, b) => b.count - a.count || (a.ad_id < b.ad_id ? -1 : 1));
}

/** The table as the user sees it (the count cell's text, thousands separators removed). */
function tableRows(page: Page): Promise<Row[]> {
  return page.$$eval('#topn-table tbody tr', (trs) =>
    trs.map((tr) => ({
      ad_id: tr.getAttribute('data-ad-id') ?? '',
      count: Number((tr.querySelector('td.count')?.textContent ?? '').replace(/[^0-9]/g, '')),
    })),
  );
}

/** Each row's invalid-share cell as shown (ad id → text). */
function invalidCells(page: Page): Promise<Record<string, string>> {
  return page.$$eval('#topn-table tbody tr', (trs) =>
    Object.fromEntries(trs.map((tr) => [tr.getAttribute('data-ad-id') ?? '', tr.querySelector('td.invalid')?.textContent ?? ''])),
  );
}

/** The token the page and the test use (every scope), as `npm start`'s dev token. */
const TOKEN = `dash-token-${Math.random().toString(36).slice(2)}`;

/** POSTs NDJSON lines with the token. */
async function postClicks(url: string, lines: readonly string[]): Promise<{ status: number; body: any }> {
  const res = await fetch(`${url}/v1/clicks`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-ndjson', authorization: `Bearer ${TOKEN}` },
    body: lines.join('\n'),
  });
  return { status: res.status, body: await res.json() };
}

/** Polls `read` until `ok` holds; on timeout the error shows the last value read. */
function until<T>(what: string, read: () => Promise<T>, ok: (v: T) => boolean, timeoutMs = 30_000): Promise<T> {
  return waitForValue(what, read, ok, { timeoutMs, everyMs: 150 });
}

describe('dashboard', () => {
  let stack: TestStack;
  let browser: Browser | undefined;
  let page: Page;
  const pageErrors: string[] = [];
  const clicks: Click[] = [];
  const tag = Math.random().toString(36).slice(2, 8);
  let seq = 0;

  const post = async (ad: string, ts: number, countries: readonly string[]): Promise<void> => {
    const batch = countries.map((country) => ({ click_id: `dash-${tag}-${seq++}`, ad_id: ad, ts, country }));
    const lines = batch.map((c, i) => JSON.stringify({ ...c, user_id: `u${i}`, ip: `10.0.0.${i + 1}` }));
    const res = await postClicks(stack.url, lines);
    expect(res.status).toBe(200);
    expect(res.body.accepted).toBe(batch.length);
    clicks.push(...batch);
  };

  beforeAll(async () => {
    const tokensFile = path.join(await mkdtemp(path.join(os.tmpdir(), 'adagg-dash-')), 'tokens.json');
    await writeFile(tokensFile, JSON.stringify({ tokens: [{ name: 'dash', sha256: sha256Hex(TOKEN), scopes: ['admin'] }] }));
    stack = await startStack({ auth: 'on', tokensFile });
    if (!HAVE_CHROMIUM) return;
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    page.on('pageerror', (err) => pageErrors.push(`pageerror: ${err.message}`));
    page.on('console', (msg) => {
      if (msg.type() === 'error') pageErrors.push(`console: ${msg.text()}`);
    });
  });

  afterAll(async () => {
    await browser?.close();
    await stack?.close();
  });

  it('serves / and the static files with their types, uncached, and nothing else', async () => {
    const types: Record<string, string> = {
      '/': 'text/html',
      '/static/app.js': 'text/javascript',
      '/static/chart.js': 'text/javascript',
      '/static/invalid-share.js': 'text/javascript',
      '/static/style.css': 'text/css',
      '/static/index.html': 'text/html',
    };
    for (const [p, type] of Object.entries(types)) {
      const res = await fetch(`${stack.url}${p}`);
      expect(res.status, p).toBe(200);
      expect(res.headers.get('content-type'), p).toContain(type);
      expect(res.headers.get('cache-control'), p).toBe('no-store');
      expect((await res.text()).length, p).toBeGreaterThan(100);
    }
    // With a token: a path that leaves /static/ is an unknown route, which needs one (401) before it is a 404.
    for (const p of ['/static/..%2Fserver.ts', '/static/..%2F..%2F..%2Fpackage.json', '/static/%2e%2e/routes/dashboard.ts', '/static/nope.js', '/static/', '/static/.env']) {
      const res = await fetch(`${stack.url}${p}`, { headers: { authorization: `Bearer ${TOKEN}` } });
      expect(res.status, p).toBe(404);
      expect(await res.text(), p).not.toContain('import ');
    }
  });

  it.skipIf(!HAVE_CHROMIUM)(`live top-N, country filter and chart in a browser${HAVE_CHROMIUM ? '' : ` (skipped: ${NO_CHROMIUM})`}`, async () => {
    await page.goto(`${stack.url}/#token=${TOKEN}`);
    await until('status live', () => page.textContent('#status'), (t) => /\blive\b/.test(t ?? ''));
    // The token left the address bar (and so bookmarks and screenshots) for this tab's storage.
    expect(page.url()).not.toContain(TOKEN);
    expect(await page.evaluate(() => (globalThis as unknown as { sessionStorage: { getItem(k: string): string | null } }).sessionStorage.getItem('adagg.token'))).toBe(TOKEN);
    // Marks this document: still set later proves the table updated without a reload.
    await page.evaluate(() => ((globalThis as unknown as { marker: string }).marker = 'no-reload'));

    // Clicks 2.5 minutes ago and in the current minute: inside the default 5-minute window.
    const now = Date.now();
    const past = now - 150_000;
    await post('dash-alpha', past, ['US', 'US', 'US', 'US', 'US', 'US', 'DE', 'DE', 'DE']);
    await post('dash-alpha', now, ['US', 'US', 'US']);
    await post('dash-bravo', past, ['US', 'US']);
    await post('dash-bravo', now, ['DE', 'DE', 'DE']);
    await post('dash-charlie', past, ['FR']);
    await post('dash-charlie', now, ['DE', 'DE']);

    const first = expectedTop(clicks);
    expect(first[0]).toEqual({ ad_id: 'dash-alpha', count: 12 });
    await until('the table to show the posted ranking', () => tableRows(page), (rows) => JSON.stringify(rows) === JSON.stringify(first));
    expect(await page.textContent('#ranking-kind')).toBe('provisional');
    expect(await page.textContent('#ranking-updated')).toMatch(/\d\d:\d\d:\d\d/);

    // The invalid share column: 0 without rules, then what the actors count once a rule took
    // clicks. No rules file here: 4 invalid clicks of dash-alpha in its past minute are written
    // where the shard actor commits them (field ('!inv', rule)), the rule name where the rules
    // publisher records it.
    await until('every row to show a 0.0% invalid share', () => invalidCells(page), (c) => Object.keys(c).length === 3 && Object.values(c).every((t) => t === '0.0%'));
    const redis = new Redis(stack.servers.redisUrl);
    try {
      const keys = new RedisKeys(stack.opts.prefix);
      await redis.sadd(keys.riskRuleNames(), 'dash-rule');
      await redis.hset(keys.counts(shardOf('dash-alpha', stack.opts.shards), minuteOf(past), '!inv', 'dash-rule'), 'dash-alpha', 4);
    } finally {
      redis.disconnect();
    }
    // 4 / (12 valid + 4 invalid), shown without a reload once the minute is read from Redis.
    const shown = await until('dash-alpha to show 25.0% invalid', () => invalidCells(page), (c) => c['dash-alpha'] === '25.0%');
    expect(shown).toEqual({ 'dash-alpha': '25.0%', 'dash-bravo': '0.0%', 'dash-charlie': '0.0%' });
    expect(await page.getAttribute('#topn-table tbody tr[data-ad-id="dash-alpha"] td.invalid', 'title')).toContain('dash-rule: 4');

    // Another ad overtakes; the same page follows.
    await post('dash-bravo', Date.now(), ['DE', 'DE', 'DE', 'DE', 'DE', 'DE', 'US', 'US', 'US', 'US']);
    const second = expectedTop(clicks);
    expect(second[0]).toEqual({ ad_id: 'dash-bravo', count: 15 });
    await until('dash-bravo to overtake', () => tableRows(page), (rows) => JSON.stringify(rows) === JSON.stringify(second));
    expect(await page.evaluate(() => (globalThis as unknown as { marker?: string }).marker)).toBe('no-reload');

    // Country filter: only DE counts, over the same socket.
    await page.selectOption('#country-select', 'DE');
    const de = expectedTop(clicks, 'DE');
    expect(de).toEqual([
      { ad_id: 'dash-bravo', count: 9 },
      { ad_id: 'dash-alpha', count: 3 },
      { ad_id: 'dash-charlie', count: 2 },
    ]);
    await until('the DE ranking', () => tableRows(page), (rows) => JSON.stringify(rows) === JSON.stringify(de));
    // The share follows the filter: no invalid DE clicks were counted.
    await until('the DE invalid shares', () => invalidCells(page), (c) => c['dash-alpha'] === '0.0%' && Object.keys(c).length === 3);
    expect(await page.textContent('#ranking-range')).toContain('DE');
    expect(await page.textContent('#status')).toContain('live');

    // Clicking a row charts that ad.
    await page.click('#topn-table tbody tr[data-ad-id="dash-alpha"]');
    expect(await page.inputValue('#ad-input')).toBe('dash-alpha');
    await until('the dash-alpha chart', () => page.locator('#chart svg[data-ad-id="dash-alpha"] rect.bar').count(), (n) => n > 0);

    // Typing an ad id charts it: one bar per minute with clicks, all countries, summing to its total.
    await page.fill('#ad-input', 'dash-charlie');
    const bars = await until(
      'the dash-charlie chart',
      () => page.$$eval('#chart svg[data-ad-id="dash-charlie"] rect.bar', (rs) => rs.map((r) => ({ count: Number(r.getAttribute('data-count')), final: r.getAttribute('data-final') }))),
      (bs) => bs.reduce((s, b) => s + b.count, 0) === 3,
    );
    expect(bars.length).toBe(2);
    // The minute 2.5 minutes ago closes within seconds (short idle timeout): drawn as final.
    await until('the past minute to be final', () => page.$$eval('#chart svg rect.bar[data-final="true"]', (rs) => rs.length), (n) => n >= 1);
    expect(await page.textContent('#chart-total')).toContain('3');

    // A fuller picture for the screenshot: 45 minutes of skewed traffic, 60-minute window, all countries.
    const stream = generateStream({ events: 4000, ads: 40, hotShare: 0.35, startMs: Date.now() - 45 * 60_000, endMs: Date.now(), lateFraction: 0, maxLateMs: 0, dupFraction: 0, malformedFraction: 0, seed: 11 });
    for (let i = 0; i < stream.lines.length; i += 1000) expect((await postClicks(stack.url, stream.lines.slice(i, i + 1000))).status).toBe(200);
    await page.selectOption('#window-select', '60');
    await page.selectOption('#country-select', '');
    await page.selectOption('#count-select', '25');
    await until('the 60-minute ranking led by ad-0', () => tableRows(page), (rows) => rows.length >= 10 && rows[0]?.ad_id === 'ad-0');
    await page.click('#topn-table tbody tr[data-ad-id="ad-0"]');
    await until('the ad-0 chart', () => page.locator('#chart svg[data-ad-id="ad-0"] rect.bar').count(), (n) => n >= 40);
    // Hover a bar to show the read-out (the bars sit under a transparent layer catching the pointer).
    const box = await page.locator('#chart svg rect.bar').nth(-8).boundingBox();
    if (box) await page.mouse.move(box.x + box.width / 2, box.y + box.height / 2);
    await until('the hover read-out', () => page.locator('#chart .tooltip[visibility="visible"]').count(), (n) => n === 1, 5000);

    await mkdir(path.dirname(SCREENSHOT), { recursive: true });
    await mkdir(path.dirname(DOCS_SCREENSHOT), { recursive: true });
    await page.screenshot({ path: SCREENSHOT });
    await copyFile(SCREENSHOT, DOCS_SCREENSHOT);

    expect(pageErrors).toEqual([]);
  });

  it.skipIf(!HAVE_CHROMIUM)('explains a missing token instead of spinning', async () => {
    const bare = await browser!.newPage();
    try {
      await bare.goto(`${stack.url}/`);
      await until('the missing-token message', () => bare.textContent('#topn-error'), (t) => (t ?? '').includes('needs a token'));
    } finally {
      await bare.close();
    }
  });
});
