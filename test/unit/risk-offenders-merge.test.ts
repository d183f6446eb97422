import { describe, expect, it } from 'vitest';
import { invalidField, mergeOffenders } from '../../src/gateway/risk-fields.ts';

/** The gateway's part of `GET /v1/risk/offenders` and of the invalid counts: pure functions. */
describe('risk fields', () => {
  it('sums a key value across shards, orders by invalid desc then key JSON asc, cuts to the limit', () => {
    const ip = (v: string): Record<string, string> => ({ ip: v });
    const merged = mergeOffenders(
      [
        { offenders: [{ key: ip('10.0.0.2'), invalid: 5 }, { key: ip('10.0.0.1'), invalid: 3 }], horizonFromMs: 0 },
        { offenders: [{ key: ip('10.0.0.1'), invalid: 2 }, { key: ip('10.0.0.3'), invalid: 4 }], horizonFromMs: 0 },
        { offenders: [], horizonFromMs: 0 },
        { offenders: [{ key: ip('10.0.0.0'), invalid: 1 }], horizonFromMs: 0 },
      ],
      3,
    );
    expect(merged).toEqual([
      { key: ip('10.0.0.1'), invalid: 5 },
      { key: ip('10.0.0.2'), invalid: 5 },
      { key: ip('10.0.0.3'), invalid: 4 },
    ]);
    expect(mergeOffenders([], 10)).toEqual([]);
  });

  it('names the invalid field of a rule, alone or within a filter', () => {
    expect(invalidField('freq', undefined)).toEqual({ dim: '!inv', value: 'freq' });
    expect(invalidField('freq', { dim: 'country+device', value: 'US\u001fmobile' })).toEqual({ dim: '!inv:freq:country+device', value: 'US\u001fmobile' });
  });
});
