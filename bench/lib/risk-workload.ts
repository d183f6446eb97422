/**
 * The benchmark workload with invalid traffic in it, shaped by a rules file (docs/risk.md): the
 * ordinary Zipf stream of workload.ts, where every user has its own IP (ordinary traffic is not
 * caught by the rules), mixed with a few percent of abusive clicks built from the rules:
 * - `ip_block`: clicks from addresses inside the rule's ranges (`blockedShare` of the originals);
 * - `frequency`: a few identities (the key's fields other than `ad_id`) each hammering one ad
 *   (`hammerShare` per rule), far over `max` per window;
 * - `spread`: a few identities (the key's fields) clicking the usual Zipf ads (`spreadShare` per
 *   rule), far over `max` distinct values per window.
 * The stream, its duplicates and its per-ad truth (all clicks, valid or not) stay those of
 * Workload; a click changed to another ad moves its truth along.
 */
import ipaddr from 'ipaddr.js';
import type { Click } from '../../src/model/click.ts';
import { compileRiskRules, type RiskRule, type RiskRuleSet } from '../../src/model/risk-rules.ts';
import { COUNTRIES, COUNTRY_TRUTH_RANKS, Workload, rankOf, type WorkloadSpec } from './workload.ts';
import { rng } from '../../test/helpers/click-stream.ts';

export interface AbuseShares {
  /** Share of original clicks sent from a blocked network, per ip_block rule. */
  blockedShare: number;
  /** Share of original clicks from the hammering identities, per frequency rule. */
  hammerShare: number;
  /** Share of original clicks from the spreading identities, per spread rule. */
  spreadShare: number;
  /** Identities per frequency or spread rule. */
  identities: number;
}

/** About 3.5% abusive originals; one identity per 50,000 events, so each stays far over its rule's bound. */
export function defaultAbuse(events: number): AbuseShares {
  return { blockedShare: 0.01, hammerShare: 0.01, spreadShare: 0.005, identities: Math.max(4, Math.round(events / 50_000)) };
}

/** What the generator injected (original clicks, duplicates not included). */
export interface AbuseCounts {
  blocked: number;
  hammer: Record<string, number>;
  spread: Record<string, number>;
}

type Injector = { share: number; apply: (c: Click, k: number) => void; count: () => void };

export class RiskWorkload extends Workload {
  readonly abuse: AbuseCounts = { blocked: 0, hammer: {}, spread: {} };
  private readonly injectors: Injector[] = [];
  private readonly pick: () => number;

  constructor(
    spec: WorkloadSpec,
    rules: RiskRuleSet,
    readonly shares: AbuseShares = defaultAbuse(spec.events),
  ) {
    super(spec);
    this.pick = rng(spec.seed ^ 0x5eed);
    const compiled = compileRiskRules(rules);
    const blocked = (ip: string): boolean => compiled.rules.some((r) => r.matchesIp?.(ip) === true);
    rules.rules.forEach((rule, i) => this.injectors.push(this.injector(rule, i, blocked)));
  }

  override nextClick(): Click | null {
    const before = this.duplicates;
    const c = super.nextClick();
    if (!c || this.duplicates !== before) return c;
    // An original: give it its user's address, then maybe make it abusive (in place: the
    // duplicate ring holds the same object, so re-sent copies stay identical).
    c.ip = userIp(c.user_id!);
    let u = this.pick();
    for (const inj of this.injectors) {
      if (u < inj.share) {
        inj.apply(c, Math.floor(this.pick() * this.shares.identities));
        inj.count();
        break;
      }
      u -= inj.share;
    }
    return c;
  }

  private injector(rule: RiskRule, i: number, blocked: (ip: string) => boolean): Injector {
    const name = rule.name;
    if (rule.kind === 'ip_block') {
      const addrs = rule.cidrs.map((c) => insideCidr(c));
      return {
        share: this.shares.blockedShare,
        apply: (c, k) => void (c.ip = addrs[k % addrs.length]!(k)),
        count: () => void this.abuse.blocked++,
      };
    }
    const key = rule.key.filter((f) => f !== 'ad_id');
    const spread = rule.kind === 'spread';
    this.abuse[spread ? 'spread' : 'hammer'][name] = 0;
    const ipBase = spread ? 0x64600000 : 0x64400000 + (i << 12); // 100.96.0.0 / 100.64.x.0: never a user's
    const ipOf = (k: number): string => {
      for (let n = ipBase + k + 1; ; n += 4096) {
        const ip = v4(n);
        if (!blocked(ip)) return ip;
      }
    };
    return {
      share: spread ? this.shares.spreadShare : this.shares.hammerShare,
      apply: (c, k) => {
        if (!spread) this.moveTo(c, 1000 + 131 * i + 7 * k);
        for (const f of key) setField(c, f, f === 'ip' ? ipOf(k) : `${spread ? 's' : 'h'}${i}-${k}`);
        if (spread && rule.distinct !== 'ad_id') setField(c, rule.distinct, `d${Math.floor(this.pick() * 1e6)}`);
      },
      count: () => void (this.abuse[spread ? 'spread' : 'hammer'][name]!++),
    };
  }

  /** Changes a fresh click's ad, keeping the per-ad truth right. */
  private moveTo(c: Click, rank: number): void {
    const from = rankOf(c.ad_id);
    const ci = COUNTRIES.indexOf(c.country as (typeof COUNTRIES)[number]);
    this.truth[from]!--;
    this.truth[rank]!++;
    if (from < COUNTRY_TRUTH_RANKS && ci >= 0) this.countryTruth[from * COUNTRIES.length + ci]!--;
    c.ad_id = `ad-${rank}`;
  }
}

/** `u123` → 10.0.0.123: one address per user, none shared. */
export function userIp(user: string): string {
  return v4(0x0a000000 + Number(user.slice(1)));
}

function v4(n: number): string {
  return `${(n >>> 24) & 255}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
}

/** Addresses inside a CIDR range: network + 1 + k (within the range). */
function insideCidr(cidr: string): (k: number) => string {
  const [addr, bits] = ipaddr.parseCIDR(cidr);
  if (addr instanceof ipaddr.IPv4) {
    const [a = 0, b = 0, c = 0, d = 0] = addr.octets;
    const net = (((a << 24) | (b << 16) | (c << 8) | d) >>> 0) & (bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0);
    const size = bits >= 31 ? 1 : Math.min(2 ** (32 - bits) - 2, 250);
    return (k) => v4(net + 1 + (k % size));
  }
  const parts = (addr as ipaddr.IPv6).parts.slice();
  return (k) => {
    parts[7] = 1 + (k % 250);
    return new ipaddr.IPv6(parts).toString();
  };
}

function setField(c: Click, f: string, v: string): void {
  if (f === 'user_id') c.user_id = v;
  else if (f === 'ip') c.ip = v;
  else if (f === 'country') c.country = v;
  else if (f !== 'ad_id' && f !== 'click_id') c.attrs = { ...c.attrs, [f]: v };
}
