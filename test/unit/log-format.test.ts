import { describe, expect, it } from 'vitest';
import { deriveClickId, isLogLine, parseLogLine } from '../../src/model/log-format.ts';
import { validateClick } from '../../src/model/validate.ts';

const EXAMPLE = '[AdClickEvent] ad001, 2024-07-09 00:00:01, user-1, 207.148.22.22, USA';
const TS = Date.UTC(2024, 6, 9, 0, 0, 1);
const limits = { nowMs: TS, correctionHorizonMs: 3_600_000, maxFutureMs: 300_000 };

function parsed(line: string, id = 'id-1'): Record<string, unknown> {
  const r = parseLogLine(line, id);
  if (!r.ok) throw new Error(`expected ok, got ${r.rejection.error}`);
  return r.value;
}

describe('isLogLine', () => {
  it('detects the prefix after optional leading whitespace', () => {
    expect(isLogLine(EXAMPLE)).toBe(true);
    expect(isLogLine('   \t' + EXAMPLE)).toBe(true);
    expect(isLogLine('{"ad_id":"x"}')).toBe(false);
    expect(isLogLine('AdClickEvent ad001')).toBe(false);
  });
});

describe('parseLogLine', () => {
  it('parses the example line', () => {
    expect(parsed(EXAMPLE)).toStrictEqual({
      click_id: 'id-1',
      ad_id: 'ad001',
      ts: TS,
      user_id: 'user-1',
      ip: '207.148.22.22',
      country: 'USA',
    });
  });

  it('produces a raw object that validateClick accepts', () => {
    const v = validateClick(parsed(EXAMPLE), limits);
    expect(v).toStrictEqual({
      ok: true,
      // The log's alpha-3 USA is counted as US (ADAGG_COUNTRY_ALPHA3=map, the default).
      click: { click_id: 'id-1', ad_id: 'ad001', ts: TS, user_id: 'user-1', ip: '207.148.22.22', country: 'US' },
    });
  });

  it('accepts ISO-8601 and epoch ms timestamps, trimming whitespace', () => {
    expect(parsed('[AdClickEvent] ad1,2024-07-09T00:00:01Z,u,1.2.3.4,DE').ts).toBe(TS);
    expect(parsed(`[AdClickEvent]   ad1 ,  ${TS}  , u , 1.2.3.4 , DE \r`)).toStrictEqual({
      click_id: 'id-1', ad_id: 'ad1', ts: TS, user_id: 'u', ip: '1.2.3.4', country: 'DE',
    });
  });

  it('keeps an unparsable ts as a string so validation reports invalid_ts', () => {
    const raw = parsed('[AdClickEvent] ad1, not-a-time, u, 1.2.3.4, DE');
    expect(raw.ts).toBe('not-a-time');
    const v = validateClick(raw, limits);
    expect(!v.ok && v.rejection.code).toBe('invalid_ts');
  });

  it('turns empty user_id/ip/country into absent fields', () => {
    const raw = parsed('[AdClickEvent] ad1, 2024-07-09 00:00:01, , , ');
    expect(raw).toStrictEqual({ click_id: 'id-1', ad_id: 'ad1', ts: TS });
    expect('user_id' in raw || 'ip' in raw || 'country' in raw).toBe(false);
  });

  it('rejects the wrong number of fields with invalid_field', () => {
    const r = parseLogLine('[AdClickEvent] ad1, 2024-07-09 00:00:01, u, 1.2.3.4', 'id');
    expect(r).toStrictEqual({
      ok: false,
      rejection: {
        code: 'invalid_field',
        error: 'log line must have 5 comma-separated fields: ad_id, ts, user_id, ip, country; got 4',
      },
    });
    const r6 = parseLogLine(EXAMPLE + ', extra', 'id');
    expect(!r6.ok && r6.rejection.error).toMatch(/got 6$/);
    expect(!r6.ok && r6.rejection.code).toBe('invalid_field');
  });

  it('rejects a line without the prefix', () => {
    const r = parseLogLine('ad1, 2024-07-09 00:00:01, u, 1.2.3.4, DE', 'id');
    expect(!r.ok && r.rejection.code).toBe('invalid_field');
  });

  it('lets validateClick report bad ip', () => {
    const v = validateClick(parsed('[AdClickEvent] ad1, 2024-07-09 00:00:01, u, 300.1.1.1, DE'), limits);
    expect(!v.ok && v.rejection.code).toBe('invalid_ip');
  });
});

describe('deriveClickId', () => {
  it('is deterministic and has the documented shape', () => {
    const a = deriveClickId('/var/log/clicks.log:inode-42', 1024);
    expect(deriveClickId('/var/log/clicks.log:inode-42', 1024)).toBe(a);
    expect(a).toMatch(/^log:[0-9a-f]{16}:1024$/);
    // sha256("abc") starts with ba7816bf8f01cfea
    expect(deriveClickId('abc', 0)).toBe('log:ba7816bf8f01cfea:0');
  });

  it('differs across offsets and files, and stays within 128 chars', () => {
    expect(deriveClickId('f', 0)).not.toBe(deriveClickId('f', 1));
    expect(deriveClickId('f', 0)).not.toBe(deriveClickId('g', 0));
    expect(deriveClickId('x'.repeat(10_000), Number.MAX_SAFE_INTEGER).length).toBeLessThanOrEqual(128);
  });
});
