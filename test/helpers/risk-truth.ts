import { BlockList, isIP } from 'node:net';
import type { Click } from '../../src/model/click.ts';
import type { RiskRule } from '../../src/model/risk-rules.ts';

/**
 * The independent truth of invalid-click filtering (issue 14, Contract), computed over the whole
 * set of clicks at once, with no code of the engine: its own field access, CIDR matching (Node's
 * BlockList, which matches IPv4-mapped IPv6 addresses against IPv4 ranges) and grouping.
 *
 * Duplicates (same click_id) are dropped first, the first occurrence kept. Then rule by rule, in
 * order, over the clicks still valid: a click's verdict is the name of the first rule that takes
 * it, or null.
 */
export function riskTruth(clicks: readonly Click[], rules: readonly RiskRule[]): Map<string, string | null> {
  const verdict = new Map<string, string | null>();
  const unique: Click[] = [];
  for (const c of clicks) {
    if (verdict.has(c.click_id)) continue;
    verdict.set(c.click_id, null);
    unique.push(c);
  }
  let valid = unique;
  for (const rule of rules) {
    const taken = new Set<Click>();
    if (rule.kind === 'ip_block') {
      const list = blockList(rule.cidrs);
      for (const c of valid) {
        const family = c.ip === undefined ? 0 : isIP(c.ip);
        if (family !== 0 && list.check(c.ip!, family === 4 ? 'ipv4' : 'ipv6')) taken.add(c);
      }
    } else {
      const groups = new Map<string, Click[]>();
      const windowMs = rule.window_seconds * 1000;
      for (const c of valid) {
        const values = rule.key.map((f) => field(c, f));
        if (values.some((v) => v === undefined)) continue;
        if (rule.kind === 'spread' && field(c, rule.distinct) === undefined) continue;
        const g = JSON.stringify([Math.floor(c.ts / windowMs), values]);
        const list = groups.get(g);
        if (list) list.push(c);
        else groups.set(g, [c]);
      }
      for (const members of groups.values()) {
        if (rule.kind === 'frequency') {
          const sorted = [...members].sort((a, b) => a.ts - b.ts || (a.click_id < b.click_id ? -1 : a.click_id > b.click_id ? 1 : 0));
          for (const c of sorted.slice(rule.max)) taken.add(c);
        } else {
          const distinct = new Set(members.map((c) => field(c, rule.distinct)));
          if (distinct.size > rule.max) for (const c of members) taken.add(c);
        }
      }
    }
    for (const c of taken) verdict.set(c.click_id, rule.name);
    valid = valid.filter((c) => !taken.has(c));
  }
  return verdict;
}

function field(c: Click, name: string): string | undefined {
  switch (name) {
    case 'ad_id': return c.ad_id;
    case 'click_id': return c.click_id;
    case 'user_id': return c.user_id;
    case 'ip': return c.ip;
    case 'country': return c.country;
    default: return c.attrs?.[name];
  }
}

function blockList(cidrs: readonly string[]): BlockList {
  const list = new BlockList();
  for (const cidr of cidrs) {
    const [addr, bits] = cidr.split('/');
    const family = isIP(addr!);
    list.addSubnet(addr!, Number(bits), family === 4 ? 'ipv4' : 'ipv6');
  }
  return list;
}

export interface TruthCounts {
  valid: number;
  invalid: number;
  byRule: Record<string, number>;
}

/**
 * Verdicts turned into counts per (ad, minute) and per (ad, minute, country): keys
 * `${ad}|${minute}` and `${ad}|${minute}|${country}` (clicks without country only in the first).
 * Only the first occurrence of each click_id counts, as in riskTruth.
 */
export function truthCounts(
  clicks: readonly Click[],
  verdicts: ReadonlyMap<string, string | null>,
): { byAdMinute: Map<string, TruthCounts>; byAdMinuteCountry: Map<string, TruthCounts> } {
  const byAdMinute = new Map<string, TruthCounts>();
  const byAdMinuteCountry = new Map<string, TruthCounts>();
  const bump = (map: Map<string, TruthCounts>, key: string, rule: string | null): void => {
    let e = map.get(key);
    if (!e) map.set(key, (e = { valid: 0, invalid: 0, byRule: {} }));
    if (rule === null) e.valid++;
    else {
      e.invalid++;
      e.byRule[rule] = (e.byRule[rule] ?? 0) + 1;
    }
  };
  const seen = new Set<string>();
  for (const c of clicks) {
    if (seen.has(c.click_id)) continue;
    seen.add(c.click_id);
    const rule = verdicts.get(c.click_id);
    if (rule === undefined) continue;
    const minute = Math.floor(c.ts / 60_000);
    bump(byAdMinute, `${c.ad_id}|${minute}`, rule);
    if (c.country !== undefined) bump(byAdMinuteCountry, `${c.ad_id}|${minute}|${c.country}`, rule);
  }
  return { byAdMinute, byAdMinuteCountry };
}
