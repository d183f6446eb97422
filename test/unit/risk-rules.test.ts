import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { AdaggError, ErrorCode } from '../../src/errors.ts';
import { CUBE_SEPARATOR, type Click } from '../../src/model/click.ts';
import { fnv1a32Utf8 } from '../../src/model/partition.ts';
import {
  canonicalJson,
  clickField,
  compileRiskRules,
  keyValue,
  parseRiskRules,
  riskPartition,
  RISK_RULE_LIMITS,
  type RiskRule,
} from '../../src/model/risk-rules.ts';
import { readRiskRulesFile } from '../../src/runtime/risk-rules-file.ts';

const EXAMPLE = path.resolve(import.meta.dirname, '../../deploy/risk-rules.json');
const SRC = 'deploy/x.json';

const doc = (rules: unknown[]): string => JSON.stringify({ rules });
const freq = (over: Record<string, unknown> = {}): Record<string, unknown> => ({ name: 'per-ip', kind: 'frequency', key: ['ip', 'ad_id'], max: 5, window_seconds: 60, ...over });
const spread = (over: Record<string, unknown> = {}): Record<string, unknown> => ({ name: 'spread', kind: 'spread', key: ['ip'], distinct: 'ad_id', max: 3, window_seconds: 600, ...over });
const block = (over: Record<string, unknown> = {}): Record<string, unknown> => ({ name: 'nets', kind: 'ip_block', cidrs: ['203.0.113.0/24'], ...over });

/** The error parseRiskRules throws for a document (fails the test if it parses). */
function errorOf(text: string): AdaggError {
  try {
    parseRiskRules(text, SRC);
  } catch (err) {
    expect(err).toBeInstanceOf(AdaggError);
    expect((err as AdaggError).code).toBe(ErrorCode.RiskRulesInvalid);
    expect((err as AdaggError).code).toBe('ADAGG_E_RISK_RULES');
    return err as AdaggError;
  }
  throw new Error(`expected ${text} to be refused`);
}

function matcher(cidrs: string[]): (ip: string) => boolean {
  const set = parseRiskRules(doc([block({ cidrs })]), SRC);
  const m = compileRiskRules(set).rules[0]!.matchesIp;
  if (!m) throw new Error('ip_block rule without matchesIp');
  return m;
}

describe('risk rules: the example file', () => {
  it('parses deploy/risk-rules.json: one rule of each kind, in file order', async () => {
    const set = await readRiskRulesFile(EXAMPLE);
    expect(set.version).toMatch(/^[0-9a-f]{16}$/);
    expect(set.rules.map((r) => [r.name, r.kind])).toEqual([
      ['blocked-networks', 'ip_block'],
      ['ip-ad-cap', 'frequency'],
      ['user-ad-cap', 'frequency'],
      ['ip-spread', 'spread'],
    ]);
    const c = compileRiskRules(set);
    expect(c.version).toBe(set.version);
    expect(c.stateful).toBe(true);
    expect(c.rules.map((r) => r.index)).toEqual([0, 1, 2, 3]);
    for (const r of c.rules) expect(r.id).toMatch(new RegExp(`^${r.rule.name}#[0-9a-f]{8}$`));
    expect(c.rules[0]!.matchesIp!('203.0.113.9')).toBe(true);
    expect(c.rules[0]!.matchesIp!('2001:db8:1::7')).toBe(true);
    expect(c.rules[1]!.matchesIp).toBeUndefined();
  });

  it('reading a missing or invalid file fails with the code and the path', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'adagg-risk-'));
    try {
      const missing = path.join(dir, 'none.json');
      await expect(readRiskRulesFile(missing)).rejects.toMatchObject({ code: 'ADAGG_E_RISK_RULES', message: expect.stringContaining(missing) });
      const bad = path.join(dir, 'bad.json');
      await writeFile(bad, doc([freq({ key: ['ip'] })]));
      await expect(readRiskRulesFile(bad)).rejects.toMatchObject({ code: 'ADAGG_E_RISK_RULES', message: `risk rules ${bad}: rule 1 "per-ip": key must contain "ad_id"` });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('an empty rule list is valid (no click is invalid) and not stateful', () => {
    const set = parseRiskRules('{"rules": []}', SRC);
    expect(set.rules).toEqual([]);
    expect(compileRiskRules(set)).toMatchObject({ rules: [], stateful: false });
    expect(compileRiskRules(parseRiskRules(doc([block()]), SRC)).stateful).toBe(false);
  });
});

describe('risk rules: validation', () => {
  // [document, exact message]: the file, the rule (1-based, name) and the field are named.
  const cases: Array<[string, string, string]> = [
    ['not JSON', '{"rules": [', 'risk rules deploy/x.json: not valid JSON ('],
    ['not an object', '[]', 'risk rules deploy/x.json: document must be an object {"rules": [...]}'],
    ['unknown top-level property', '{"rules": [], "rulez": []}', 'risk rules deploy/x.json: property "rulez" is unknown (expected only "rules")'],
    ['rules not an array', '{"rules": {}}', 'risk rules deploy/x.json: rules must be an array'],
    ['rules missing', '{}', 'risk rules deploy/x.json: rules must be an array'],
    ['too many rules', doc(Array.from({ length: RISK_RULE_LIMITS.rules + 1 }, (_, i) => block({ name: `r${i}` }))), `risk rules deploy/x.json: rules must have at most ${RISK_RULE_LIMITS.rules} entries`],
    ['rule not an object', doc([block(), 'x']), 'risk rules deploy/x.json: rule 2: rule must be an object'],
    ['name missing', doc([{ kind: 'ip_block', cidrs: ['10.0.0.0/8'] }]), 'risk rules deploy/x.json: rule 1: name is required (a string)'],
    ['bad name', doc([block({ name: 'no spaces' })]), 'risk rules deploy/x.json: rule 1 "no spaces": name must match ^[A-Za-z0-9_.-]{1,64}$'],
    ['name too long', doc([block({ name: 'a'.repeat(65) })]), `risk rules deploy/x.json: rule 1 "${'a'.repeat(64)}…": name must match ^[A-Za-z0-9_.-]{1,64}$`],
    ['duplicate name', doc([freq(), block(), freq()]), 'risk rules deploy/x.json: rule 3 "per-ip": name is already used by rule 1'],
    ['unknown kind', doc([block({ kind: 'geo_block' })]), 'risk rules deploy/x.json: rule 1 "nets": kind must be one of ip_block, frequency, spread'],
    ['misspelt property', doc([freq({ windows_seconds: 60 })]), 'risk rules deploy/x.json: rule 1 "per-ip": windows_seconds is not a property of a frequency rule (expected name, kind, key, max, window_seconds)'],
    ['property of another kind', doc([freq({ distinct: 'ad_id' })]), 'risk rules deploy/x.json: rule 1 "per-ip": distinct is not a property of a frequency rule (expected name, kind, key, max, window_seconds)'],
    ['cidrs missing', doc([{ name: 'nets', kind: 'ip_block' }]), 'risk rules deploy/x.json: rule 1 "nets": cidrs is required (a non-empty array of CIDR ranges)'],
    ['cidrs empty', doc([block({ cidrs: [] })]), 'risk rules deploy/x.json: rule 1 "nets": cidrs must be a non-empty array of CIDR ranges'],
    ['bare address', doc([block({ cidrs: ['203.0.113.0/24', '203.0.113.5'] })]), 'risk rules deploy/x.json: rule 1 "nets": cidrs[1] "203.0.113.5" is not a CIDR range (e.g. 203.0.113.0/24, 2001:db8::/32)'],
    ['prefix too long', doc([block({ cidrs: ['10.0.0.0/33'] })]), 'risk rules deploy/x.json: rule 1 "nets": cidrs[0] "10.0.0.0/33" is not a CIDR range (e.g. 203.0.113.0/24, 2001:db8::/32)'],
    ['short IPv4 form', doc([block({ cidrs: ['10.1/16'] })]), 'risk rules deploy/x.json: rule 1 "nets": cidrs[0] "10.1/16" is not a CIDR range (e.g. 203.0.113.0/24, 2001:db8::/32)'],
    ['bad IPv6', doc([block({ cidrs: ['2001:db8::g/32'] })]), 'risk rules deploy/x.json: rule 1 "nets": cidrs[0] "2001:db8::g/32" is not a CIDR range (e.g. 203.0.113.0/24, 2001:db8::/32)'],
    ['cidr not a string', doc([block({ cidrs: [24] })]), 'risk rules deploy/x.json: rule 1 "nets": cidrs[0] 24 is not a CIDR range (e.g. 203.0.113.0/24, 2001:db8::/32)'],
    ['frequency key without ad_id', doc([block(), freq({ key: ['ip'] })]), 'risk rules deploy/x.json: rule 2 "per-ip": key must contain "ad_id"'],
    ['key missing', doc([freq({ key: undefined })]), 'risk rules deploy/x.json: rule 1 "per-ip": key is required (a non-empty array of field names)'],
    ['key empty', doc([freq({ key: [] })]), 'risk rules deploy/x.json: rule 1 "per-ip": key must be a non-empty array of field names'],
    ['key a string', doc([freq({ key: 'ad_id' })]), 'risk rules deploy/x.json: rule 1 "per-ip": key must be a non-empty array of field names'],
    ['key repeats a field', doc([freq({ key: ['ad_id', 'ip', 'ad_id'] })]), 'risk rules deploy/x.json: rule 1 "per-ip": key lists "ad_id" twice'],
    ['key field ts', doc([freq({ key: ['ad_id', 'ts'] })]), 'risk rules deploy/x.json: rule 1 "per-ip": key[1] "ts" is not a field name (^[a-z][a-z0-9_]{0,31}$, not "ts")'],
    ['key field upper case', doc([freq({ key: ['ad_id', 'IP'] })]), 'risk rules deploy/x.json: rule 1 "per-ip": key[1] "IP" is not a field name (^[a-z][a-z0-9_]{0,31}$, not "ts")'],
    ['key too long', doc([freq({ key: ['ad_id', 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h'] })]), `risk rules deploy/x.json: rule 1 "per-ip": key must have at most ${RISK_RULE_LIMITS.keyFields} fields`],
    ['max missing', doc([freq({ max: undefined })]), 'risk rules deploy/x.json: rule 1 "per-ip": max is required (an integer)'],
    ['max negative', doc([freq({ max: -1 })]), 'risk rules deploy/x.json: rule 1 "per-ip": max must be an integer >= 0'],
    ['max fractional', doc([freq({ max: 1.5 })]), 'risk rules deploy/x.json: rule 1 "per-ip": max must be an integer >= 0'],
    ['max a string', doc([spread({ max: '3' })]), 'risk rules deploy/x.json: rule 1 "spread": max must be an integer >= 0'],
    ['window zero', doc([freq({ window_seconds: 0 })]), 'risk rules deploy/x.json: rule 1 "per-ip": window_seconds must be an integer in 1..604800'],
    ['window over a week', doc([spread({ window_seconds: 604801 })]), 'risk rules deploy/x.json: rule 1 "spread": window_seconds must be an integer in 1..604800'],
    ['window missing', doc([spread({ window_seconds: undefined })]), 'risk rules deploy/x.json: rule 1 "spread": window_seconds is required (an integer)'],
    ['distinct missing', doc([spread({ distinct: undefined })]), 'risk rules deploy/x.json: rule 1 "spread": distinct is required (a field name)'],
    ['distinct not a field', doc([spread({ distinct: 'Ad' })]), 'risk rules deploy/x.json: rule 1 "spread": distinct "Ad" is not a field name (^[a-z][a-z0-9_]{0,31}$, not "ts")'],
    ['distinct in key', doc([spread({ key: ['ip', 'ad_id'] })]), 'risk rules deploy/x.json: rule 1 "spread": distinct "ad_id" must not be one of the key fields'],
    ['spread key repeats', doc([spread({ key: ['ip', 'ip'] })]), 'risk rules deploy/x.json: rule 1 "spread": key lists "ip" twice'],
  ];
  it.each(cases)('%s', (_what, text, message) => {
    const err = errorOf(text);
    if (message.endsWith('(')) expect(err.message.startsWith(message)).toBe(true);
    else expect(err.message).toBe(message);
    expect(err.details).toMatchObject({ file: SRC });
  });

  it('the error details name the rule and the field', () => {
    expect(errorOf(doc([block(), freq({ key: ['ip'] })])).details).toEqual({ file: SRC, rule: 2, name: 'per-ip', field: 'key' });
  });

  it('accepts the edges: max 0, a one-week window, a frequency key of ad_id alone, a spread over any distinct field', () => {
    const set = parseRiskRules(
      doc([freq({ max: 0, window_seconds: 604800, key: ['ad_id'] }), spread({ key: ['user_id', 'country'], distinct: 'device', window_seconds: 1 })]),
      SRC,
    );
    expect(set.rules).toEqual([
      { name: 'per-ip', kind: 'frequency', key: ['ad_id'], max: 0, window_seconds: 604800 },
      { name: 'spread', kind: 'spread', key: ['user_id', 'country'], distinct: 'device', max: 3, window_seconds: 1 },
    ]);
  });
});

describe('risk rules: ip_block matching', () => {
  it('IPv4 ranges', () => {
    const m = matcher(['203.0.113.0/24', '10.0.0.0/8', '192.0.2.7/32']);
    for (const ip of ['203.0.113.0', '203.0.113.255', '10.200.3.4', '192.0.2.7']) expect(m(ip), ip).toBe(true);
    for (const ip of ['203.0.114.0', '203.0.112.255', '11.0.0.0', '192.0.2.8', '2001:db8::1']) expect(m(ip), ip).toBe(false);
  });

  it('IPv6 ranges', () => {
    const m = matcher(['2001:db8::/32', 'fe80::/10']);
    for (const ip of ['2001:db8::1', '2001:0db8:ffff:ffff::', '2001:DB8::abcd', 'fe80::1']) expect(m(ip), ip).toBe(true);
    for (const ip of ['2001:db9::1', '2002:db8::1', '::1', '203.0.113.1']) expect(m(ip), ip).toBe(false);
  });

  it('an IPv4-mapped IPv6 address matches IPv4 ranges, and IPv6 ranges over the mapped space match IPv4 addresses', () => {
    const m = matcher(['203.0.113.0/24']);
    expect(m('::ffff:203.0.113.9')).toBe(true);
    expect(m('::ffff:cb00:7109')).toBe(true); // the same address in hex
    expect(m('::ffff:198.51.100.1')).toBe(false);
    const mapped = matcher(['::ffff:198.51.100.0/120']);
    expect(mapped('198.51.100.77')).toBe(true);
    expect(mapped('::ffff:198.51.100.77')).toBe(true);
    expect(mapped('198.51.101.77')).toBe(false);
    const all = matcher(['::/0']);
    expect(all('192.0.2.1')).toBe(true);
    expect(all('2001:db8::1')).toBe(true);
    expect(matcher(['0.0.0.0/0'])('::ffff:1.2.3.4')).toBe(true);
    expect(matcher(['0.0.0.0/0'])('2001:db8::1')).toBe(false);
  });

  it('an unparsable ip matches nothing', () => {
    const m = matcher(['0.0.0.0/0', '::/0']);
    for (const ip of ['', 'not-an-ip', '203.0.113', '203.0.113.1.2', '203.0.113.07', '256.1.1.1', '1', '0x7f.0.0.1', ':::', '2001:db8::g']) {
      expect(m(ip), JSON.stringify(ip)).toBe(false);
    }
  });
});

describe('risk rules: versions and ids', () => {
  const rules = [block(), freq(), spread()];
  it('the version does not change with whitespace or key order', () => {
    const a = parseRiskRules(doc(rules), SRC);
    const reordered = rules.map((r) => Object.fromEntries(Object.entries(r).reverse()));
    const b = parseRiskRules(JSON.stringify({ rules: reordered }, null, 4), SRC);
    expect(b.version).toBe(a.version);
    expect(b.rules).toEqual(a.rules);
    expect(compileRiskRules(b).rules.map((r) => r.id)).toEqual(compileRiskRules(a).rules.map((r) => r.id));
  });

  it('the version changes with the rules, their order and any value; a rule id only with that rule', () => {
    const a = parseRiskRules(doc(rules), SRC);
    const swapped = parseRiskRules(doc([rules[1], rules[0], rules[2]]), SRC);
    const changed = parseRiskRules(doc([block(), freq({ max: 6 }), spread()]), SRC);
    expect(new Set([a.version, swapped.version, changed.version]).size).toBe(3);
    const ids = (s: typeof a): string[] => compileRiskRules(s).rules.map((r) => r.id);
    expect(ids(changed)[0]).toBe(ids(a)[0]);
    expect(ids(changed)[1]).not.toBe(ids(a)[1]);
    expect(ids(changed)[1]!.startsWith('per-ip#')).toBe(true);
    expect(ids(swapped)).toEqual([ids(a)[1], ids(a)[0], ids(a)[2]]);
  });

  it('canonicalJson sorts keys at every level and keeps array order', () => {
    expect(canonicalJson({ b: [{ y: 1, x: 2 }, 3], a: 'z', c: undefined })).toBe('{"a":"z","b":[{"x":2,"y":1},3]}');
  });
});

describe('risk rules: click fields and keys', () => {
  const c: Click = { click_id: 'c1', ad_id: 'ad-7', ts: 1, user_id: 'u1', ip: '203.0.113.5', country: 'US', attrs: { device: 'ios', empty: '' } };
  it('clickField reads the built-in fields and attributes', () => {
    expect(['ad_id', 'click_id', 'user_id', 'ip', 'country', 'device', 'empty', 'missing'].map((f) => clickField(c, f))).toEqual([
      'ad-7',
      'c1',
      'u1',
      '203.0.113.5',
      'US',
      'ios',
      '',
      undefined,
    ]);
    expect(clickField({ click_id: 'c2', ad_id: 'a', ts: 1 }, 'ip')).toBeUndefined();
  });

  it('keyValue joins the values in key order, undefined when one is missing', () => {
    expect(keyValue(c, ['ip', 'ad_id'])).toBe(`203.0.113.5${CUBE_SEPARATOR}ad-7`);
    expect(keyValue(c, ['ad_id', 'ip'])).toBe(`ad-7${CUBE_SEPARATOR}203.0.113.5`);
    expect(keyValue(c, ['user_id'])).toBe('u1');
    expect(keyValue(c, ['device', 'country', 'ad_id'])).toBe(['ios', 'US', 'ad-7'].join(CUBE_SEPARATOR));
    expect(keyValue(c, ['ip', 'browser'])).toBeUndefined();
    expect(keyValue({ click_id: 'c2', ad_id: 'a', ts: 1 }, ['user_id', 'ad_id'])).toBeUndefined();
  });

  it('riskPartition is fnv1a32Utf8 modulo the partitions', () => {
    for (const k of ['203.0.113.5', `u1${CUBE_SEPARATOR}ad-7`, 'é€😀']) {
      for (const n of [1, 4, 16, 1024]) {
        const p = riskPartition(k, n);
        expect(p).toBe(fnv1a32Utf8(k) % n);
        expect(p >= 0 && p < n).toBe(true);
      }
    }
  });
});

// Typed as the contract says (a compile-time check that RiskRule stays a union of the three kinds).
const _kinds: Array<RiskRule['kind']> = ['ip_block', 'frequency', 'spread'];
void _kinds;
