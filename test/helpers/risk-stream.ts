/**
 * A seeded click stream for the invalid-click filtering tests (issue 14): normal traffic mixed with
 * a cast of offenders, each aimed at one rule of {@link RISK_RULES_A}, plus duplicates, late clicks
 * and clicks sent only after their minute closed that change verdicts already counted.
 *
 * Event times lie in three whole 120 s windows (W0, W1, W2) that end at least 90 s before `now`, so
 * every minute closes within lateness + idle timeout of the last post. The stream is sent in two
 * phases: `main` (batches in roughly increasing event time, some clicks late, duplicates re-sent in
 * later batches), then, once every minute is closed, `afterClose` (late clicks and re-sent copies).
 *
 * The cast (IPs and users chosen so that normal traffic, 10.x.x.x with users u0..u2999, never meets
 * them):
 * - blocked network: 203.0.113.0/24, 2001:db8::/32 and the IPv4-mapped ::ffff:203.0.113.9, next to
 *   near misses (203.0.114.x, 2001:db9::1) that stay valid; 203.0.113.50 clicks 10 ads in one
 *   window and is charged to bad-net only (spread sees what earlier rules left valid);
 * - hammer 198.51.100.7: 40 clicks a minute on `ad-hammered` (cap 5 per ip+ad per minute);
 * - greedy user u-greedy: 20 clicks per 120 s window on ad-5 from 8 IPs (cap 8 per user+ad);
 * - spreader 100.64.0.9: 15 ads in W1 (more than 6 distinct), 2 ads in W0 (valid);
 * - cascade 100.64.4.4: 6 ads in W0 and a 7th click (ad-5 as u-greedy, after the user's cap), so
 *   it spreads only if the user cap is ignored;
 * - after-close edges: 100.64.1.1 at the ip+ad cap on ad-7 in one minute, then two late clicks at
 *   earlier (ts, click_id) push its latest two out; u-edge at the user cap on ad-9 in W1's second
 *   minute, then three late clicks in W1's first minute push three out; 100.64.2.2 on exactly 6 ads
 *   in W2, then a late click on a 7th ad makes all 13 invalid.
 */
import type { RiskRule } from '../../src/model/risk-rules.ts';
import { rng, zipf } from './click-stream.ts';

export interface RiskClick {
  click_id: string;
  ad_id: string;
  ts: number;
  user_id?: string;
  ip?: string;
  country?: string;
}

/** The rules of the stream: one of each kind, caps and windows sized to the cast above. */
export const RISK_RULES_A: { rules: RiskRule[] } = {
  rules: [
    { name: 'bad-net', kind: 'ip_block', cidrs: ['203.0.113.0/24', '2001:db8::/32'] },
    { name: 'ip-ad-cap', kind: 'frequency', key: ['ip', 'ad_id'], max: 5, window_seconds: 60 },
    { name: 'user-ad-cap', kind: 'frequency', key: ['user_id', 'ad_id'], max: 8, window_seconds: 120 },
    { name: 'ip-spread', kind: 'spread', key: ['ip'], distinct: 'ad_id', max: 6, window_seconds: 120 },
  ],
};

/**
 * Rules for a reload: a new ip_block first (the hammer's network, so its clicks move from
 * ip-ad-cap to it), the ip+ad cap lowered to 3, user-ad-cap removed, spread unchanged.
 */
export const RISK_RULES_B: { rules: RiskRule[] } = {
  rules: [
    { name: 'bad-net-2', kind: 'ip_block', cidrs: ['198.51.100.0/24'] },
    { name: 'bad-net', kind: 'ip_block', cidrs: ['203.0.113.0/24', '2001:db8::/32'] },
    { name: 'ip-ad-cap', kind: 'frequency', key: ['ip', 'ad_id'], max: 3, window_seconds: 60 },
    { name: 'ip-spread', kind: 'spread', key: ['ip'], distinct: 'ad_id', max: 6, window_seconds: 120 },
  ],
};

export const RISK_CAST = {
  hammerIp: '198.51.100.7',
  hammerAd: 'ad-hammered',
  greedyUser: 'u-greedy',
  greedyAd: 'ad-5',
  spreaderIp: '100.64.0.9',
  cascadeIp: '100.64.4.4',
  capEdgeIp: '100.64.1.1',
  capEdgeAd: 'ad-7',
  userEdge: 'u-edge',
  userEdgeAd: 'ad-9',
  nearSpreaderIp: '100.64.2.2',
  blockedSpreaderIp: '203.0.113.50',
} as const;

export interface RiskStreamSpec {
  seed: number;
  /** Normal clicks. @default 6000 */
  normal?: number;
  /** Lines per POST. @default 500 */
  batch?: number;
  /** @default Date.now() */
  now?: number;
}

export interface RiskStream {
  seed: number;
  /** Phase 1: NDJSON batches, duplicates included. */
  main: string[][];
  /** Phase 2, sent once every minute of the stream is closed. */
  afterClose: string[][];
  /** Every click sent, in send order, duplicates included. */
  sent: RiskClick[];
  /** The first copy of each click_id, phase 1 only / both phases. */
  mainClicks: RiskClick[];
  allClicks: RiskClick[];
  ads: string[];
  countries: string[];
  /** Start of W0 and end of W2 (epoch ms, minute aligned). */
  fromMs: number;
  toMs: number;
  lastMinute: number;
}

const SEC = 1000;
const MIN = 60 * SEC;
const WINDOW = 2 * MIN;
const COUNTRIES = ['US', 'DE', 'JP'];
const NORMAL_ADS = 30;

export function riskStream(spec: RiskStreamSpec): RiskStream {
  const { seed, normal = 6000, batch = 500, now = Date.now() } = spec;
  const rand = rng(seed);
  const pickAd = zipf(NORMAL_ADS, 1.0, rand);
  const country = (): string => COUNTRIES[Math.floor(rand() * COUNTRIES.length)]!;
  const w0 = Math.floor((now - 7.5 * MIN) / WINDOW) * WINDOW;
  const toMs = w0 + 3 * WINDOW;
  let n = 0;
  let late = 0;
  const mainId = (): string => `r${seed}-c${n++}`;
  // 'L' sorts before 'c': a late click at the same ts as a counted one comes first.
  const lateId = (): string => `r${seed}-L${late++}`;
  /** Phase-1 clicks with the time they are sent at (event time, later for a late click). */
  const planned: Array<{ c: RiskClick; sendAt: number }> = [];
  const plan = (c: Omit<RiskClick, 'click_id'>, lateByMs = 0): RiskClick => {
    const click = { click_id: mainId(), ...c };
    planned.push({ c: click, sendAt: c.ts + lateByMs });
    return click;
  };
  const after: RiskClick[] = [];
  const planAfter = (c: Omit<RiskClick, 'click_id'>): void => void after.push({ click_id: lateId(), ...c });
  const at = (from: number, to: number): number => from + Math.floor(rand() * (to - from));
  const octet = (): number => Math.floor(rand() * 256);

  // Normal traffic: a few clicks without ip or user, 5% late by up to 150 s.
  for (let i = 0; i < normal; i++) {
    const c: Omit<RiskClick, 'click_id'> = { ad_id: `ad-${pickAd()}`, ts: at(w0, toMs), country: country() };
    if (rand() > 0.02) c.user_id = `u${Math.floor(rand() * 3000)}`;
    if (rand() > 0.02) c.ip = `10.${octet()}.${octet()}.${octet()}`;
    plan(c, rand() < 0.05 ? Math.floor(rand() * 150 * SEC) : 0);
  }
  for (let i = 0; i < 40; i++) plan({ ad_id: RISK_CAST.hammerAd, ts: at(w0, toMs), ip: `10.9.${i}.1`, user_id: `u${i}`, country: country() });

  // Blocked network and near misses.
  const blocked = [...Array(40).keys()].map((i) => `203.0.113.${i + 1}`);
  const blocked6 = ['2001:db8::7', '2001:db8:1::abcd', '2001:db8:ffff::1', '::ffff:203.0.113.9'];
  const nearMiss = ['203.0.114.1', '203.0.112.255', '2001:db9::1', '::ffff:203.0.114.9'];
  for (let i = 0; i < 80; i++) plan({ ad_id: `ad-${pickAd()}`, ts: at(w0, toMs), ip: blocked[i % blocked.length]!, user_id: `ub${i}`, country: country() });
  for (let i = 0; i < 24; i++) plan({ ad_id: `ad-${pickAd()}`, ts: at(w0, toMs), ip: blocked6[i % blocked6.length]!, user_id: `ub6${i}`, country: country() });
  for (let i = 0; i < 12; i++) plan({ ad_id: `ad-${pickAd()}`, ts: at(w0, toMs), ip: nearMiss[i % nearMiss.length]!, user_id: `un${i}`, country: country() });
  for (let a = 0; a < 10; a++) plan({ ad_id: `ad-${10 + a}`, ts: at(w0 + 5 * SEC, w0 + 100 * SEC), ip: RISK_CAST.blockedSpreaderIp, country: 'US' });

  // Hammer: 40 clicks a minute on one ad, distinct users.
  for (let m = 0; m < 6; m++) {
    for (let i = 0; i < 40; i++) plan({ ad_id: RISK_CAST.hammerAd, ts: at(w0 + m * MIN, w0 + (m + 1) * MIN), ip: RISK_CAST.hammerIp, user_id: `uh${m}-${i}`, country: 'DE' }, i % 7 === 0 ? 20 * SEC : 0);
  }

  // Greedy user: 20 clicks per window on one ad from 8 IPs (round robin: at most 2-3 per IP a minute).
  for (let w = 0; w < 3; w++) {
    for (let i = 0; i < 20; i++) {
      plan({ ad_id: RISK_CAST.greedyAd, ts: w0 + w * WINDOW + SEC + i * 5700, user_id: RISK_CAST.greedyUser, ip: `192.0.2.${10 + (i % 8)}`, country: 'JP' });
    }
  }
  // Cascade: 6 ads in W0, and a 7th click that user-ad-cap takes first (greedy user, last in W0).
  for (let a = 0; a < 6; a++) plan({ ad_id: `ad-${20 + a}`, ts: at(w0 + 10 * SEC, w0 + 110 * SEC), ip: RISK_CAST.cascadeIp, user_id: `uc${a}`, country: 'US' });
  plan({ ad_id: RISK_CAST.greedyAd, ts: w0 + WINDOW - SEC, ip: RISK_CAST.cascadeIp, user_id: RISK_CAST.greedyUser, country: 'US' });

  // Spreader: 15 ads × 2 in W1, 2 ads in W0.
  const w1 = w0 + WINDOW;
  for (let a = 0; a < 15; a++) {
    for (let k = 0; k < 2; k++) plan({ ad_id: `ad-${a}`, ts: at(w1 + 5 * SEC, w1 + 115 * SEC), ip: RISK_CAST.spreaderIp, user_id: `us${a}-${k}`, country: 'FR' }, k === 1 ? 30 * SEC : 0);
  }
  plan({ ad_id: 'ad-1', ts: at(w0, w0 + 100 * SEC), ip: RISK_CAST.spreaderIp, user_id: 'us-w0a', country: 'FR' });
  plan({ ad_id: 'ad-2', ts: at(w0, w0 + 100 * SEC), ip: RISK_CAST.spreaderIp, user_id: 'us-w0b', country: 'FR' });

  // After-close edge 1: at the ip+ad cap in one minute (W0's second), then two earlier clicks.
  const me = w0 + MIN;
  for (let k = 1; k <= 5; k++) plan({ ad_id: RISK_CAST.capEdgeAd, ts: me + k * 10 * SEC, ip: RISK_CAST.capEdgeIp, user_id: `ue${k}`, country: 'US' });
  planAfter({ ad_id: RISK_CAST.capEdgeAd, ts: me + 5 * SEC, ip: RISK_CAST.capEdgeIp, user_id: 'ue-late1', country: 'US' });
  planAfter({ ad_id: RISK_CAST.capEdgeAd, ts: me + 30 * SEC, ip: RISK_CAST.capEdgeIp, user_id: 'ue-late2', country: 'DE' });

  // After-close edge 2: u-edge at the user cap in W1's second minute, then three in its first.
  for (let k = 0; k < 8; k++) plan({ ad_id: RISK_CAST.userEdgeAd, ts: w1 + MIN + 5 * SEC + k * 6 * SEC, ip: `192.0.2.${100 + k}`, user_id: RISK_CAST.userEdge, country: 'DE' });
  for (let k = 0; k < 3; k++) planAfter({ ad_id: RISK_CAST.userEdgeAd, ts: w1 + 10 * SEC + k * SEC, ip: `192.0.2.${120 + k}`, user_id: RISK_CAST.userEdge, country: 'JP' });

  // After-close edge 3: exactly 6 ads in W2, then a 7th.
  const w2 = w0 + 2 * WINDOW;
  for (let a = 0; a < 6; a++) {
    for (let k = 0; k < 2; k++) plan({ ad_id: `ad-${12 + a}`, ts: at(w2 + 5 * SEC, w2 + 110 * SEC), ip: RISK_CAST.nearSpreaderIp, user_id: `unear${a}-${k}`, country: 'US' });
  }
  planAfter({ ad_id: 'ad-29', ts: w2 + 3 * SEC, ip: RISK_CAST.nearSpreaderIp, user_id: 'unear-late', country: 'JP' });

  // Late normal clicks after close, some in the first minute.
  for (let i = 0; i < 40; i++) planAfter({ ad_id: `ad-${pickAd()}`, ts: at(w0, toMs), ip: `10.${octet()}.${octet()}.${octet()}`, user_id: `u${Math.floor(rand() * 3000)}`, country: country() });

  // Phase 1 in send order; 3% re-sent 1..600 positions later (in another batch at the default size).
  planned.sort((a, b) => a.sendAt - b.sendAt || (a.c.click_id < b.c.click_id ? -1 : 1));
  const mainSent: RiskClick[] = planned.map((p) => p.c);
  const withDups: RiskClick[] = [];
  const pending = new Map<number, RiskClick[]>();
  mainSent.forEach((c, i) => {
    withDups.push(c, ...(pending.get(i) ?? []));
    pending.delete(i);
    if (rand() < 0.03) {
      const j = Math.min(mainSent.length - 1, i + 1 + Math.floor(rand() * 600));
      pending.set(j, [...(pending.get(j) ?? []), c]);
    }
  });
  // Phase 2: the late clicks (the first four twice) and 30 copies of phase-1 clicks (offenders' included).
  const afterSent: RiskClick[] = [];
  for (const c of after) afterSent.push(c);
  for (let i = 0; i < 30; i++) afterSent.push(mainSent[Math.floor(rand() * mainSent.length)]!);
  afterSent.push(...after.slice(0, 4));
  const shuffled = shuffle(afterSent, rand);

  const lines = (cs: readonly RiskClick[]): string[] => cs.map((c) => JSON.stringify(c));
  const batches = (cs: readonly RiskClick[], size: number): string[][] => {
    const out: string[][] = [];
    for (let i = 0; i < cs.length; i += size) out.push(lines(cs.slice(i, i + size)));
    return out;
  };
  const allClicks = firstCopies([...withDups, ...shuffled]);
  return {
    seed,
    main: batches(withDups, batch),
    afterClose: batches(shuffled, Math.ceil(shuffled.length / 2)),
    sent: [...withDups, ...shuffled],
    mainClicks: firstCopies(withDups),
    allClicks,
    ads: [...new Set(allClicks.map((c) => c.ad_id))].sort(),
    countries: COUNTRIES,
    fromMs: w0,
    toMs,
    lastMinute: toMs / MIN - 1,
  };
}

/** The first copy of each click_id, in order: what deduplication keeps. */
export function firstCopies(clicks: Iterable<RiskClick>): RiskClick[] {
  const seen = new Set<string>();
  const out: RiskClick[] = [];
  for (const c of clicks) {
    if (seen.has(c.click_id)) continue;
    seen.add(c.click_id);
    out.push(c);
  }
  return out;
}

function shuffle<T>(xs: readonly T[], rand: () => number): T[] {
  const a = [...xs];
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [a[i], a[j]] = [a[j]!, a[i]!];
  }
  return a;
}
