import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ALPHA3_TO_ALPHA2, normalizeCountry } from '../../src/model/country.ts';
import { validateClick } from '../../src/model/validate.ts';

const limits = { nowMs: 1_720_483_200_000, correctionHorizonMs: 3600_000, maxFutureMs: 300_000 };
const click = (country: string, countryAlpha3?: string): unknown => {
  const v = validateClick({ click_id: 'c1', ad_id: 'ad1', ts: limits.nowMs, country }, { ...limits, ...(countryAlpha3 ? { countryAlpha3 } : {}) });
  return v.ok ? v.click.country : v.rejection.code;
};

describe('ISO 3166 alpha-3 → alpha-2', () => {
  it('holds every officially assigned code (249), each mapping to a distinct alpha-2 code', () => {
    const entries = Object.entries(ALPHA3_TO_ALPHA2);
    expect(entries).toHaveLength(249);
    for (const [a3, a2] of entries) {
      expect(a3).toMatch(/^[A-Z]{3}$/);
      expect(a2).toMatch(/^[A-Z]{2}$/);
    }
    expect(new Set(entries.map(([, a2]) => a2)).size).toBe(249);
  });

  it('agrees with the iso-codes data of the system, where installed', () => {
    let data: { '3166-1': Array<{ alpha_2: string; alpha_3: string }> };
    try {
      data = JSON.parse(readFileSync('/usr/share/iso-codes/json/iso_3166-1.json', 'utf8'));
    } catch {
      return; // not installed: the table above is the reference
    }
    expect(Object.fromEntries(data['3166-1'].map((c) => [c.alpha_3, c.alpha_2]))).toEqual(ALPHA3_TO_ALPHA2);
  });

  it('maps well-known codes, any case; keeps alpha-2 and unassigned codes, upper-cased', () => {
    expect(['USA', 'usa', 'DEU', 'GBR', 'JPN', 'FRA', 'CHE', 'KOR', 'ALA'].map((c) => normalizeCountry(c))).toEqual(['US', 'US', 'DE', 'GB', 'JP', 'FR', 'CH', 'KR', 'AX']);
    expect(normalizeCountry('us')).toBe('US');
    expect(normalizeCountry('XYZ')).toBe('XYZ');
    expect(normalizeCountry('USA', 'keep')).toBe('USA');
  });

  it('validateClick stores USA as US by default and as USA with countryAlpha3 keep', () => {
    expect(click('USA')).toBe('US');
    expect(click('deu')).toBe('DE');
    expect(click('US')).toBe('US');
    expect(click('USA', 'map')).toBe('US');
    expect(click('USA', 'keep')).toBe('USA');
    expect(click('U1A')).toBe('invalid_field');
  });
});
