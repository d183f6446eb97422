import { describe, expect, it } from 'vitest';
import { parseJsonLine, validateClick, type RejectCode, type ValidationLimits } from '../../src/model/validate.ts';

const NOW = Date.UTC(2024, 6, 9, 12, 0, 0);
const HORIZON = 60 * 60_000;
const FUTURE = 5 * 60_000;
const limits: ValidationLimits = { nowMs: NOW, correctionHorizonMs: HORIZON, maxFutureMs: FUTURE };

const base = { click_id: 'c-1', ad_id: 'ad001', ts: NOW };

function codeOf(raw: unknown): RejectCode | 'ok' {
  const r = validateClick(raw, limits);
  return r.ok ? 'ok' : r.rejection.code;
}

function ok(raw: unknown) {
  const r = validateClick(raw, limits);
  if (!r.ok) throw new Error(`expected ok, got ${r.rejection.code}: ${r.rejection.error}`);
  return r.click;
}

describe('validateClick: accepted clicks', () => {
  it('accepts a minimal click and omits optional keys', () => {
    const c = ok(base);
    expect(c).toStrictEqual({ click_id: 'c-1', ad_id: 'ad001', ts: NOW });
    expect(Object.keys(c).sort()).toEqual(['ad_id', 'click_id', 'ts']);
  });

  it('accepts all optional fields and normalises country to upper-case alpha-2', () => {
    const c = ok({ ...base, user_id: 'user-1', ip: '207.148.22.22', country: 'usa' });
    expect(c).toStrictEqual({ click_id: 'c-1', ad_id: 'ad001', ts: NOW, user_id: 'user-1', ip: '207.148.22.22', country: 'US' });
    expect(ok({ ...base, country: 'de' }).country).toBe('DE');
  });

  it('accepts IPv6 and treats null optionals as absent', () => {
    expect(ok({ ...base, ip: '2001:db8::1' }).ip).toBe('2001:db8::1');
    expect(ok({ ...base, user_id: null, ip: null, country: null })).toStrictEqual({ click_id: 'c-1', ad_id: 'ad001', ts: NOW });
  });

  it('parses ts given as ISO-8601, digit string and number', () => {
    expect(ok({ ...base, ts: '2024-07-09T12:00:00Z' }).ts).toBe(NOW);
    expect(ok({ ...base, ts: '2024-07-09T11:59:00' }).ts).toBe(NOW - 60_000); // no zone => UTC
    expect(ok({ ...base, ts: String(NOW - 1000) }).ts).toBe(NOW - 1000);
    expect(ok({ ...base, ts: NOW + 1 }).ts).toBe(NOW + 1);
  });

  it('collects extra short string properties into attrs', () => {
    const c = ok({ ...base, device: 'mobile', os: 'ios', n: 5, flag: true, empty: '', 'bad-key': 'x', long: 'x'.repeat(65) });
    expect(c.attrs).toStrictEqual({ device: 'mobile', os: 'ios' });
  });

  it('keeps at most 16 attrs', () => {
    const raw: Record<string, unknown> = { ...base };
    for (let i = 0; i < 20; i++) raw[`a${i}`] = `v${i}`;
    const attrs = ok(raw).attrs ?? {};
    expect(Object.keys(attrs)).toHaveLength(16);
    expect(attrs.a0).toBe('v0');
    expect(attrs.a15).toBe('v15');
    expect(attrs.a16).toBeUndefined();
  });

  it('ignores a __proto__ key from JSON', () => {
    const parsed = parseJsonLine('{"click_id":"c","ad_id":"a","ts":' + NOW + ',"__proto__":"x"}');
    expect(parsed.ok).toBe(true);
    if (parsed.ok) expect(ok(parsed.value).attrs).toBeUndefined();
  });
});

describe('validateClick: rejections', () => {
  it('rejects non-objects with invalid_field', () => {
    for (const raw of [null, 5, 'x', [base], undefined]) {
      const r = validateClick(raw, limits);
      expect(r).toStrictEqual({ ok: false, rejection: { code: 'invalid_field', error: 'click must be a JSON object' } });
    }
  });

  it('click_id: missing vs invalid', () => {
    expect(codeOf({ ad_id: 'a', ts: NOW })).toBe('missing_field');
    expect(codeOf({ ...base, click_id: null })).toBe('missing_field');
    expect(codeOf({ ...base, click_id: 7 })).toBe('invalid_field');
    expect(codeOf({ ...base, click_id: '' })).toBe('invalid_field');
    expect(codeOf({ ...base, click_id: 'x'.repeat(129) })).toBe('invalid_field');
    expect(codeOf({ ...base, click_id: 'x'.repeat(128) })).toBe('ok');
    const r = validateClick({ ...base, click_id: 7 }, limits);
    expect(!r.ok && r.rejection.error).toContain('click_id');
  });

  it('ad_id: missing vs invalid, with a message naming the field', () => {
    expect(codeOf({ click_id: 'c', ts: NOW })).toBe('missing_field');
    expect(codeOf({ ...base, ad_id: 'has space' })).toBe('invalid_field');
    expect(codeOf({ ...base, ad_id: 'x'.repeat(129) })).toBe('invalid_field');
    expect(codeOf({ ...base, ad_id: 'a-b_c.d:e' })).toBe('ok');
    const r = validateClick({ ...base, ad_id: 'bad/id' }, limits);
    expect(r).toStrictEqual({ ok: false, rejection: { code: 'invalid_field', error: 'field ad_id must match [A-Za-z0-9_.:-]{1,128}' } });
  });

  it('ts: missing vs invalid_ts', () => {
    expect(codeOf({ click_id: 'c', ad_id: 'a' })).toBe('missing_field');
    expect(codeOf({ ...base, ts: null })).toBe('missing_field');
    for (const ts of ['yesterday', '', 1.5, -1, '-5', Number.NaN, Infinity, true, {}, '2024-13-45T00:00:00Z']) {
      expect(codeOf({ ...base, ts }), String(ts)).toBe('invalid_ts');
    }
  });

  it('user_id, ip and country validation', () => {
    expect(codeOf({ ...base, user_id: '' })).toBe('invalid_field');
    expect(codeOf({ ...base, user_id: 'u'.repeat(257) })).toBe('invalid_field');
    expect(codeOf({ ...base, user_id: 3 })).toBe('invalid_field');
    expect(codeOf({ ...base, ip: '999.1.1.1' })).toBe('invalid_ip');
    expect(codeOf({ ...base, ip: 'localhost' })).toBe('invalid_ip');
    expect(codeOf({ ...base, ip: 1234 })).toBe('invalid_ip');
    expect(codeOf({ ...base, country: 'U' })).toBe('invalid_field');
    expect(codeOf({ ...base, country: 'USAA' })).toBe('invalid_field');
    expect(codeOf({ ...base, country: 'U1' })).toBe('invalid_field');
  });

  it('too_old / in_future with inclusive boundaries', () => {
    expect(codeOf({ ...base, ts: NOW - HORIZON })).toBe('ok');
    expect(codeOf({ ...base, ts: NOW - HORIZON - 1 })).toBe('too_old');
    expect(codeOf({ ...base, ts: NOW + FUTURE })).toBe('ok');
    expect(codeOf({ ...base, ts: NOW + FUTURE + 1 })).toBe('in_future');
  });

  it('reports structural errors before range errors', () => {
    expect(codeOf({ ...base, ts: 0, ip: 'nope' })).toBe('invalid_ip');
    expect(codeOf({ ...base, ts: NOW + 10 * FUTURE, country: '12' })).toBe('invalid_field');
    expect(codeOf({ ad_id: '!', ts: 'x' })).toBe('missing_field');
  });
});

describe('parseJsonLine', () => {
  it('parses valid JSON', () => {
    expect(parseJsonLine('{"a":1}')).toStrictEqual({ ok: true, value: { a: 1 } });
  });

  it('rejects malformed JSON with invalid_json and the parser message', () => {
    const r = parseJsonLine('{"a":');
    expect(r.ok).toBe(false);
    if (!r.ok) {
      expect(r.rejection.code).toBe('invalid_json');
      expect(r.rejection.error).toMatch(/^invalid JSON: .+/);
    }
  });
});
