/**
 * Compares what adagg serves for invalid-click filtering (issue 14) with the independent truth of
 * test/helpers/risk-truth.ts: every ad-minute's `count`, `invalid` and `invalid_by_rule`, country
 * filters, `/v1/ads/{id}/invalid`, `/v1/risk/offenders` and `popular_ads`. Mismatches come back as
 * short readable lines, never as a dump.
 */
import { jetstreamManager } from '@nats-io/jetstream';
import { Redis } from 'ioredis';
import { parseRiskRules, type RiskRule } from '../../src/model/risk-rules.ts';
import { silentLogger } from '../../src/runtime/logger.ts';
import { connectNats } from '../../src/runtime/nats.ts';
import { publishRiskRules } from '../../src/runtime/risk-rules-publisher.ts';
import { topology } from '../../src/runtime/topology.ts';
import type { RiskClick } from './risk-stream.ts';
import { riskTruth, truthCounts, type TruthCounts } from './risk-truth.ts';
import { waitShardsCommitted } from './settle.ts';
import { getJson } from './stack.ts';
import { waitAllClosed } from './verify.ts';
import { waitFor, WaitTimeout } from './wait.ts';

const MIN = 60_000;

export interface RiskExpectation {
  clicks: readonly RiskClick[];
  rules: readonly RiskRule[];
  verdicts: Map<string, string | null>;
  /** Every rule name the gateway knows (ever published), sorted: each shows in invalid_by_rule, 0 included. */
  names: string[];
  byAdMinute: Map<string, TruthCounts>;
  byAdMinuteCountry: Map<string, TruthCounts>;
}

/** The truth for `clicks` under `rules`; `names` adds rule names published earlier (a reload). */
export function expectRisk(clicks: readonly RiskClick[], rules: readonly RiskRule[], names: readonly string[] = []): RiskExpectation {
  const verdicts = riskTruth(clicks, rules);
  return {
    clicks,
    rules,
    verdicts,
    names: [...new Set([...names, ...rules.map((r) => r.name)])].sort(),
    ...truthCounts(clicks, verdicts),
  };
}

/** Invalid clicks charged to each rule (sanity figures of a stream). */
export function invalidByRuleTotal(e: RiskExpectation): Record<string, number> {
  const out: Record<string, number> = Object.fromEntries(e.names.map((n) => [n, 0]));
  for (const v of e.verdicts.values()) if (v !== null) out[v] = (out[v] ?? 0) + 1;
  return out;
}

export interface MinuteRow {
  minute: string;
  count: number;
  invalid: number;
  invalid_by_rule: Record<string, number>;
  final: boolean;
}

function want(e: RiskExpectation, key: string, byCountry: boolean): { count: number; invalid: number; invalid_by_rule: Record<string, number> } {
  const t = (byCountry ? e.byAdMinuteCountry : e.byAdMinute).get(key);
  return { count: t?.valid ?? 0, invalid: t?.invalid ?? 0, invalid_by_rule: Object.fromEntries(e.names.map((n) => [n, t?.byRule[n] ?? 0])) };
}

function diffLine(what: string, w: { count: number; invalid: number; invalid_by_rule: Record<string, number> }, g: Partial<MinuteRow>, final?: boolean): string | null {
  const parts: string[] = [];
  if (g.count !== w.count) parts.push(`count want ${w.count} got ${g.count}`);
  if (g.invalid !== w.invalid) parts.push(`invalid want ${w.invalid} got ${g.invalid}`);
  const names = new Set([...Object.keys(w.invalid_by_rule), ...Object.keys(g.invalid_by_rule ?? {})]);
  for (const n of [...names].sort()) {
    const a = w.invalid_by_rule[n];
    const b = g.invalid_by_rule?.[n];
    if (a !== b) parts.push(`${n} want ${a ?? '(absent)'} got ${b ?? '(absent)'}`);
  }
  if (final === false) parts.push('not final');
  return parts.length ? `${what}: ${parts.join(', ')}` : null;
}

export interface RiskVerifyOptions {
  fromMs: number;
  toMs: number;
  /** Ads checked with a country filter, for each of `countries`. */
  countryAds?: readonly string[];
  countries?: readonly string[];
}

/**
 * Every ad of the truth, every minute of [fromMs, toMs): count, invalid, invalid_by_rule (and the
 * range totals) of aggregated_count; then the country filters. Returns readable mismatch lines.
 */
export async function verifyRiskCounts(url: string, e: RiskExpectation, o: RiskVerifyOptions): Promise<string[]> {
  const out: string[] = [];
  const check = async (ad: string, country?: string): Promise<void> => {
    const q = `${url}/v1/ads/${encodeURIComponent(ad)}/aggregated_count?from=${o.fromMs}&to=${o.toMs}${country ? `&country=${country}` : ''}`;
    const { status, body } = await getJson(q);
    const label = `${ad}${country ? `/${country}` : ''}`;
    if (status !== 200) {
      out.push(`${label}: GET aggregated_count ${status} ${JSON.stringify(body).slice(0, 200)}`);
      return;
    }
    const rows = body.minutes as MinuteRow[];
    if (rows.length !== (o.toMs - o.fromMs) / MIN) out.push(`${label}: ${rows.length} minute rows`);
    const total = { count: 0, invalid: 0, invalid_by_rule: Object.fromEntries(e.names.map((n) => [n, 0])) };
    for (const row of rows) {
      const m = Date.parse(row.minute) / MIN;
      const w = want(e, country ? `${ad}|${m}|${country}` : `${ad}|${m}`, country !== undefined);
      total.count += w.count;
      total.invalid += w.invalid;
      for (const n of e.names) total.invalid_by_rule[n]! += w.invalid_by_rule[n]!;
      const d = diffLine(`${label} @ ${row.minute.slice(11, 16)} (minute ${m})`, w, row, row.final);
      if (d) out.push(d);
    }
    const d = diffLine(`${label} range total`, total, body as Partial<MinuteRow>);
    if (d) out.push(d);
  };
  const ads = [...new Set([...e.clicks.map((c) => c.ad_id)])].sort();
  for (let i = 0; i < ads.length; i += 8) await Promise.all(ads.slice(i, i + 8).map((ad) => check(ad)));
  for (const ad of o.countryAds ?? []) for (const c of o.countries ?? []) await check(ad, c);
  return out;
}

/** `/v1/ads/{id}/invalid` over the range for `ads`: count, invalid, invalid_by_rule, invalid_share. */
export async function verifyInvalidEndpoint(url: string, e: RiskExpectation, ads: readonly string[], o: RiskVerifyOptions): Promise<string[]> {
  const out: string[] = [];
  for (const ad of ads) {
    const { status, body } = await getJson(`${url}/v1/ads/${encodeURIComponent(ad)}/invalid?from=${o.fromMs}&to=${o.toMs}`);
    if (status !== 200) {
      out.push(`${ad}: GET invalid ${status} ${JSON.stringify(body).slice(0, 200)}`);
      continue;
    }
    const w = { count: 0, invalid: 0, invalid_by_rule: Object.fromEntries(e.names.map((n) => [n, 0])) };
    for (let m = o.fromMs / MIN; m < o.toMs / MIN; m++) {
      const x = want(e, `${ad}|${m}`, false);
      w.count += x.count;
      w.invalid += x.invalid;
      for (const n of e.names) w.invalid_by_rule[n]! += x.invalid_by_rule[n]!;
    }
    const d = diffLine(`${ad} /invalid`, w, body as Partial<MinuteRow>);
    if (d) out.push(d);
    const share = w.count + w.invalid > 0 ? w.invalid / (w.count + w.invalid) : 0;
    if (Math.abs((body.invalid_share as number) - share) > 1e-9) out.push(`${ad} /invalid: invalid_share want ${share} got ${body.invalid_share}`);
  }
  return out;
}

/** The key record an offender is reported under: the rule's key fields (ip_block: the ip). */
function offenderKey(rule: RiskRule, c: RiskClick): Record<string, string> {
  const fields = rule.kind === 'ip_block' ? ['ip'] : rule.key;
  return Object.fromEntries(fields.map((f) => [f, String((c as unknown as Record<string, unknown>)[f])]));
}

const canon = (k: Record<string, string>): string => JSON.stringify(Object.keys(k).sort().map((f) => [f, k[f]]));

/** The truth's offenders of `rule` with ts in [fromMs, toMs): canonical key → invalid. */
export function expectedOffenders(e: RiskExpectation, ruleName: string, fromMs: number, toMs: number): Map<string, number> {
  const rule = e.rules.find((r) => r.name === ruleName);
  const out = new Map<string, number>();
  if (!rule) return out;
  for (const c of e.clicks) {
    if (e.verdicts.get(c.click_id) !== ruleName || c.ts < fromMs || c.ts >= toMs) continue;
    // Only the first copy of a click_id is in the verdicts' sense; e.clicks holds first copies.
    const k = canon(offenderKey(rule, c));
    out.set(k, (out.get(k) ?? 0) + 1);
  }
  return out;
}

/**
 * `/v1/risk/offenders` for `rule` (window minutes ending now, every key value): each returned key's
 * invalid equals the truth over the response's [from, to), the counts are in descending order and
 * every key of the truth is listed. Returns mismatch lines and the body.
 */
export async function verifyOffenders(url: string, e: RiskExpectation, rule: string, windowMinutes: number): Promise<{ mismatches: string[]; body: any }> {
  const { status, body } = await getJson(`${url}/v1/risk/offenders?rule=${encodeURIComponent(rule)}&window=${windowMinutes}&limit=1000`);
  if (status !== 200) return { mismatches: [`offenders ${rule}: ${status} ${JSON.stringify(body).slice(0, 200)}`], body };
  const exp = expectedOffenders(e, rule, Date.parse(body.from as string), Date.parse(body.to as string));
  const got = body.offenders as Array<{ key: Record<string, string>; invalid: number }>;
  const out: string[] = [];
  for (const o of got) {
    const k = canon(o.key);
    if (exp.get(k) !== o.invalid) out.push(`offenders ${rule} ${k}: want ${exp.get(k) ?? '(none)'} got ${o.invalid}`);
  }
  const gotKeys = new Set(got.map((o) => canon(o.key)));
  for (const [k, n] of exp) if (!gotKeys.has(k)) out.push(`offenders ${rule} ${k}: want ${n} got (missing)`);
  for (let i = 1; i < got.length; i++) if (got[i]!.invalid > got[i - 1]!.invalid) out.push(`offenders ${rule}: not in descending order at ${i}`);
  return { mismatches: out, body };
}

/** The truth's popular_ads over [fromMs, toMs): valid count desc, then ad_id asc. */
export function expectedTop(e: RiskExpectation, n: number, fromMs: number, toMs: number): Array<{ ad_id: string; count: number }> {
  const per = new Map<string, number>();
  for (const c of e.clicks) {
    if (c.ts < fromMs || c.ts >= toMs || e.verdicts.get(c.click_id) !== null) continue;
    per.set(c.ad_id, (per.get(c.ad_id) ?? 0) + 1);
  }
  return [...per]
    .map(([ad_id, count]) => ({ ad_id, count }))
    .sort((a, b) => b.count - a.count || (a.ad_id < b.ad_id ? -1 : 1))
    .slice(0, n);
}

/** The first `n` mismatch lines and how many more, for an assertion message. */
export function showMismatches(lines: readonly string[], n = 20): string {
  if (lines.length === 0) return '';
  return `${lines.length} mismatches${lines.length > n ? ` (first ${n})` : ''}:\n  ${lines.slice(0, n).join('\n  ')}`;
}

/** The last stream sequence on each shard subject. */
export async function lastSubjectSeqs(natsUrl: string, prefix: string, shards: number): Promise<number[]> {
  const nc = await connectNats(natsUrl, 'risk-test-seqs');
  try {
    const jsm = await jetstreamManager(nc);
    const topo = topology(prefix);
    return await Promise.all(
      [...Array(shards).keys()].map((s) => jsm.streams.getMessage(topo.clicksStream, { last_by_subj: topo.clickSubject(s) }).then((m) => m?.seq ?? 0, () => 0)),
    );
  } finally {
    await nc.close();
  }
}

/**
 * Waits until the stack is quiet: every minute up to `lastMinute` closed, and every shard committed
 * the last message of its subject, twice in a row with no new message in between (risk presence and
 * verdict messages the actors publish before their commits have all been applied).
 */
export async function waitRiskQuiet(url: string, natsUrl: string, prefix: string, shards: number, lastMinute: number, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  await waitAllClosed(url, lastMinute, timeoutMs);
  const nc = await connectNats(natsUrl, 'risk-test-quiet');
  try {
    const jsm = await jetstreamManager(nc);
    const topo = topology(prefix);
    const lastSeqs = async (): Promise<string> => {
      const seqs = await Promise.all(
        [...Array(shards).keys()].map((s) => jsm.streams.getMessage(topo.clicksStream, { last_by_subj: topo.clickSubject(s) }).then((m) => m?.seq ?? 0, () => 0)),
      );
      return seqs.join(',');
    };
    let before = '';
    let seen = '';
    await waitFor(
      'every shard committed its subject, with no new risk message after',
      async () => {
        before = await lastSeqs();
        await waitShardsCommitted({ url, opts: { prefix, shards } }, jsm, { timeoutMs: Math.max(1000, deadline - Date.now()) });
        seen = await lastSeqs();
        return seen === before;
      },
      { timeoutMs: Math.max(1000, deadline - Date.now()), everyMs: 200, detail: () => ({ before, seen }) },
    );
  } finally {
    await nc.close();
  }
}

/**
 * Runs `check` until it finds no mismatch (once the stack is quiet, the first run should) or
 * `timeoutMs` passes; returns the last mismatches.
 */
export async function untilExact(check: () => Promise<string[]>, timeoutMs = 20_000): Promise<string[]> {
  let last: string[] = [];
  try {
    await waitFor(
      'served counts equal to the truth',
      async () => {
        last = await check();
        return last.length === 0;
      },
      { timeoutMs, everyMs: 500 },
    );
  } catch (err) {
    if (!(err instanceof WaitTimeout)) throw err;
  }
  return last;
}

/** Publishes a rules document into every shard subject (as the CLI does at start or on SIGHUP). */
export async function publishRules(a: { natsUrl: string; redisUrl: string; prefix: string; shards: number }, doc: { rules: RiskRule[] }, source = 'test-rules.json'): Promise<boolean> {
  const nc = await connectNats(a.natsUrl, 'risk-test-publisher');
  const redis = new Redis(a.redisUrl, { maxRetriesPerRequest: 3 });
  try {
    return await publishRiskRules({ nc, redis, topology: topology(a.prefix), shards: a.shards, prefix: a.prefix, set: parseRiskRules(JSON.stringify(doc), source), log: silentLogger });
  } finally {
    redis.disconnect();
    await nc.close();
  }
}
