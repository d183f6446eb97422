import { createHash } from 'node:crypto';
import ipaddr from 'ipaddr.js';
import { AdaggError, ErrorCode } from '../errors.ts';
import { CUBE_SEPARATOR, dimensionValue, type Click } from './click.ts';
import { fnv1a32Utf8 } from './partition.ts';

/**
 * Invalid-click rules (ADAGG_RISK_RULES): types, parsing and validation, compiled form. Pure: the
 * file is read by src/runtime/risk-rules-file.ts.
 *
 * @example
 * const set = parseRiskRules('{"rules":[{"name":"bad-net","kind":"ip_block","cidrs":["203.0.113.0/24"]}]}', 'rules.json');
 * compileRiskRules(set).rules[0]!.matchesIp!('203.0.113.7'); // true
 */
export type RiskRule =
  | { name: string; kind: 'ip_block'; cidrs: string[] }
  | { name: string; kind: 'frequency'; key: string[]; max: number; window_seconds: number }
  | { name: string; kind: 'spread'; key: string[]; distinct: string; max: number; window_seconds: number };

export interface RiskRuleSet {
  /** sha256 (first 16 hex chars) of the canonical JSON of `rules`. */
  version: string;
  rules: RiskRule[];
}

/** A rule ready to evaluate: CIDRs parsed once. `id` = `${name}#${first 8 hex of sha256 of the rule's canonical JSON}`. */
export interface CompiledRule {
  readonly rule: RiskRule;
  readonly index: number;
  readonly id: string;
  /** ip_block only. */
  matchesIp?(ip: string): boolean;
}

export interface CompiledRiskRules {
  readonly version: string;
  readonly rules: readonly CompiledRule[];
  /** Whether any rule is a frequency or spread rule (needs the clicks of its windows). */
  readonly stateful: boolean;
}


/** Bounds of a rules document: it travels whole in one stream message to every shard. */
export const RISK_RULE_LIMITS = { rules: 64, cidrsPerRule: 4096, keyFields: 8 } as const;

const NAME_RE = /^[A-Za-z0-9_.-]{1,64}$/;
const FIELD_RE = /^[a-z][a-z0-9_]{0,31}$/;
const MAX_WINDOW_SECONDS = 7 * 86_400;
const KINDS = ['ip_block', 'frequency', 'spread'] as const;
const PROPERTIES: Record<RiskRule['kind'], readonly string[]> = {
  ip_block: ['name', 'kind', 'cidrs'],
  frequency: ['name', 'kind', 'key', 'max', 'window_seconds'],
  spread: ['name', 'kind', 'key', 'distinct', 'max', 'window_seconds'],
};

/**
 * Parses and validates a rules document `{"rules": [...]}`. Throws ADAGG_E_RISK_RULES naming the
 * file (`source`), the rule (1-based position in the file and name) and the field, e.g.
 * `risk rules deploy/x.json: rule 2 "per-ip": key must contain "ad_id"`. Unknown properties are
 * refused: a misspelt field must not silently disable a rule.
 */
export function parseRiskRules(text: string, source: string): RiskRuleSet {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw new AdaggError(ErrorCode.RiskRulesInvalid, `risk rules ${source}: not valid JSON (${(err as Error).message})`, { cause: err, details: { file: source } });
  }
  const top = (field: string, what: string): AdaggError =>
    new AdaggError(ErrorCode.RiskRulesInvalid, `risk rules ${source}: ${field} ${what}`, { details: { file: source, field } });
  if (!isRecord(doc)) throw top('document', 'must be an object {"rules": [...]}');
  for (const k of Object.keys(doc)) if (k !== 'rules') throw top(`property ${JSON.stringify(k)}`, 'is unknown (expected only "rules")');
  if (!Array.isArray(doc.rules)) throw top('rules', 'must be an array');
  if (doc.rules.length > RISK_RULE_LIMITS.rules) throw top('rules', `must have at most ${RISK_RULE_LIMITS.rules} entries`);
  const rules: RiskRule[] = [];
  const seen = new Map<string, number>();
  doc.rules.forEach((raw: unknown, i) => {
    const rule = parseRule(raw, i + 1, source);
    const earlier = seen.get(rule.name);
    if (earlier !== undefined) throw ruleError(source, i + 1, rule.name, 'name', `is already used by rule ${earlier}`);
    seen.set(rule.name, i + 1);
    rules.push(rule);
  });
  return { version: sha256Hex(canonicalJson(rules)).slice(0, 16), rules };
}

function parseRule(raw: unknown, n: number, source: string): RiskRule {
  if (!isRecord(raw)) throw ruleError(source, n, undefined, 'rule', 'must be an object');
  const name = raw.name;
  if (typeof name !== 'string') throw ruleError(source, n, undefined, 'name', 'is required (a string)');
  const fail = (field: string, what: string): AdaggError => ruleError(source, n, name, field, what);
  if (!NAME_RE.test(name)) throw fail('name', `must match ${NAME_RE.source}`);
  const kind = raw.kind;
  if (!KINDS.includes(kind as RiskRule['kind'])) throw fail('kind', `must be one of ${KINDS.join(', ')}`);
  const k = kind as RiskRule['kind'];
  for (const prop of Object.keys(raw)) {
    if (!PROPERTIES[k].includes(prop)) throw fail(prop, `is not a property of a ${k} rule (expected ${PROPERTIES[k].join(', ')})`);
  }
  if (k === 'ip_block') return { name, kind: k, cidrs: cidrList(raw.cidrs, fail) };
  const key = fieldList(raw.key, fail);
  const max = integerIn(raw.max, 'max', 0, Number.MAX_SAFE_INTEGER, fail);
  const windowSeconds = integerIn(raw.window_seconds, 'window_seconds', 1, MAX_WINDOW_SECONDS, fail);
  if (k === 'frequency') {
    if (!key.includes('ad_id')) throw fail('key', 'must contain "ad_id"');
    return { name, kind: k, key, max, window_seconds: windowSeconds };
  }
  const distinct = raw.distinct;
  if (distinct === undefined) throw fail('distinct', 'is required (a field name)');
  if (!isFieldName(distinct)) throw fail('distinct', `${JSON.stringify(distinct)} is not a field name (${FIELD_RE.source}, not "ts")`);
  if (key.includes(distinct)) throw fail('distinct', `"${distinct}" must not be one of the key fields`);
  return { name, kind: k, key, distinct, max, window_seconds: windowSeconds };
}

type Fail = (field: string, what: string) => AdaggError;

function ruleError(source: string, n: number, name: string | undefined, field: string, what: string): AdaggError {
  const shown = name === undefined ? '' : ` ${JSON.stringify(name.length > 64 ? `${name.slice(0, 64)}…` : name)}`;
  return new AdaggError(ErrorCode.RiskRulesInvalid, `risk rules ${source}: rule ${n}${shown}: ${field} ${what}`, {
    details: { file: source, rule: n, ...(name === undefined ? {} : { name }), field },
  });
}

function fieldList(v: unknown, fail: Fail): string[] {
  if (v === undefined) throw fail('key', 'is required (a non-empty array of field names)');
  if (!Array.isArray(v) || v.length === 0) throw fail('key', 'must be a non-empty array of field names');
  if (v.length > RISK_RULE_LIMITS.keyFields) throw fail('key', `must have at most ${RISK_RULE_LIMITS.keyFields} fields`);
  const out: string[] = [];
  v.forEach((f: unknown, i) => {
    if (!isFieldName(f)) throw fail(`key[${i}]`, `${JSON.stringify(f)} is not a field name (${FIELD_RE.source}, not "ts")`);
    if (out.includes(f)) throw fail('key', `lists "${f}" twice`);
    out.push(f);
  });
  return out;
}

function cidrList(v: unknown, fail: Fail): string[] {
  if (v === undefined) throw fail('cidrs', 'is required (a non-empty array of CIDR ranges)');
  if (!Array.isArray(v) || v.length === 0) throw fail('cidrs', 'must be a non-empty array of CIDR ranges');
  if (v.length > RISK_RULE_LIMITS.cidrsPerRule) throw fail('cidrs', `must have at most ${RISK_RULE_LIMITS.cidrsPerRule} ranges`);
  return v.map((c: unknown, i) => {
    if (typeof c !== 'string' || !isCidr(c)) throw fail(`cidrs[${i}]`, `${JSON.stringify(c)} is not a CIDR range (e.g. 203.0.113.0/24, 2001:db8::/32)`);
    return c;
  });
}

function integerIn(v: unknown, field: string, min: number, max: number, fail: Fail): number {
  if (v === undefined) throw fail(field, 'is required (an integer)');
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min || v > max) {
    throw fail(field, max === Number.MAX_SAFE_INTEGER ? `must be an integer >= ${min}` : `must be an integer in ${min}..${max}`);
  }
  return v;
}

function isFieldName(f: unknown): f is string {
  return typeof f === 'string' && FIELD_RE.test(f) && f !== 'ts';
}

function isCidr(c: string): boolean {
  // Four-part decimal only: ipaddr.js would also read `10.1/8` as 10.0.0.1/8.
  return c.includes(':') ? ipaddr.IPv6.isValidCIDR(c) : ipaddr.IPv4.isValidCIDRFourPartDecimal(c);
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** JSON with object keys sorted at every level: the same text whatever the key order or whitespace. */
export function canonicalJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map((x) => canonicalJson(x)).join(',')}]`;
  if (isRecord(v)) {
    const keys = Object.keys(v).filter((k) => v[k] !== undefined).sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(v[k])}`).join(',')}}`;
  }
  return JSON.stringify(v) ?? 'null';
}

function sha256Hex(s: string): string {
  return createHash('sha256').update(s, 'utf8').digest('hex');
}

/**
 * Compiles validated rules (from {@link parseRiskRules}, or from a `rules` stream message, which
 * the publisher only sends once validated). Throws ADAGG_E_RISK_RULES for a CIDR it cannot read.
 */
export function compileRiskRules(set: RiskRuleSet): CompiledRiskRules {
  const rules = set.rules.map((rule, index): CompiledRule => {
    const id = `${rule.name}#${sha256Hex(canonicalJson(rule)).slice(0, 8)}`;
    if (rule.kind !== 'ip_block') return { rule, index, id };
    const matchesIp = ipMatcher(rule.name, rule.cidrs);
    return { rule, index, id, matchesIp };
  });
  return { version: set.version, rules, stateful: rules.some((r) => r.rule.kind !== 'ip_block') };
}

/** An IPv4 range as 32-bit network and mask. */
type V4Range = { net: number; mask: number };

/**
 * A matcher over CIDR ranges. An IPv4 address and its IPv4-mapped IPv6 form (`::ffff:a.b.c.d`) are
 * the same host: each matches IPv4 ranges and the IPv6 ranges that cover the mapped space. IPv4
 * goes through integer masks (the hot path); other IPv6 addresses through ipaddr.js. An address
 * that does not parse matches nothing.
 */
function ipMatcher(ruleName: string, cidrs: readonly string[]): (ip: string) => boolean {
  const v4: V4Range[] = [];
  const v6: Array<[ipaddr.IPv6, number]> = [];
  const mapped = ipaddr.IPv6.parse('::ffff:0:0');
  for (const c of cidrs) {
    if (!isCidr(c)) throw new AdaggError(ErrorCode.RiskRulesInvalid, `risk rule "${ruleName}": cidrs ${JSON.stringify(c)} is not a CIDR range`);
    const [addr, bits] = ipaddr.parseCIDR(c);
    if (addr instanceof ipaddr.IPv4) {
      v4.push(v4Range(addr, bits));
      continue;
    }
    const a6 = addr as ipaddr.IPv6;
    v6.push([a6, bits]);
    // The part of the range inside ::ffff:0:0/96, as an IPv4 range.
    if (bits <= 96 && mapped.match(a6, bits)) v4.push({ net: 0, mask: 0 });
    else if (bits > 96 && a6.isIPv4MappedAddress()) v4.push(v4Range(a6.toIPv4Address(), bits - 96));
  }
  return (ip) => {
    const n = ipv4Int(ip);
    if (n !== undefined) return v4.some((r) => ((n & r.mask) >>> 0) === r.net);
    if (!ip.includes(':') || !ipaddr.IPv6.isValid(ip)) return false;
    const a = ipaddr.IPv6.parse(ip);
    if (a.isIPv4MappedAddress()) {
      const m = v4Range(a.toIPv4Address(), 32).net;
      return v4.some((r) => ((m & r.mask) >>> 0) === r.net);
    }
    return v6.some((r) => a.match(r));
  };
}

function v4Range(addr: ipaddr.IPv4, bits: number): V4Range {
  const mask = bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0;
  const [a = 0, b = 0, c = 0, d = 0] = addr.octets;
  return { net: ((((a << 24) | (b << 16) | (c << 8) | d) & mask) >>> 0), mask };
}

/** A strict dotted-quad IPv4 address as an unsigned 32-bit integer, else undefined. */
function ipv4Int(s: string): number | undefined {
  const parts = s.split('.');
  if (parts.length !== 4) return undefined;
  let n = 0;
  for (const p of parts) {
    if (!/^(0|[1-9][0-9]{0,2})$/.test(p)) return undefined;
    const v = Number(p);
    if (v > 255) return undefined;
    n = n * 256 + v;
  }
  return n;
}

/** A click's field for the rules: `ad_id`, `click_id`, `user_id`, `ip`, `country`, else the attribute of that name. */
export function clickField(c: Click, field: string): string | undefined {
  if (field === 'ad_id') return c.ad_id;
  if (field === 'click_id') return c.click_id;
  // Rule fields never contain '+', so this is one dimension, never a cube.
  return dimensionValue(c, field);
}

/** Key tuple string (values joined by CUBE_SEPARATOR), undefined when a key field is missing. */
export function keyValue(c: Click, key: readonly string[]): string | undefined {
  if (key.length === 1) return clickField(c, key[0]!);
  const values: string[] = [];
  for (const f of key) {
    const v = clickField(c, f);
    if (v === undefined) return undefined;
    values.push(v);
  }
  return values.join(CUBE_SEPARATOR);
}

/** Risk partition of a spread group key value: fnv1a32Utf8(keyValue) % partitions. */
export function riskPartition(keyValue: string, partitions: number): number {
  return fnv1a32Utf8(keyValue) % partitions;
}
