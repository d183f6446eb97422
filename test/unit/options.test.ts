import os from 'node:os';
import { describe, expect, it } from 'vitest';
import { ShardActor } from '../../src/actors/shard-actor.ts';
import { AdaggError, ErrorCode } from '../../src/errors.ts';
import { ManualClock } from '../../src/runtime/clock.ts';
import { compileOptions, DEFAULTS, ENV_VARS, optionsFromEnv } from '../../src/options.ts';

/** The AdaggError a compile throws (its code, option and message), or a marker if it did not throw. */
function failure(input: Record<string, unknown>): { code: string; option: unknown; message: string } {
  try {
    compileOptions(input);
  } catch (e) {
    if (!(e instanceof AdaggError)) return { code: `not an AdaggError: ${String(e)}`, option: undefined, message: '' };
    return { code: e.code, option: e.details?.option, message: e.message };
  }
  return { code: 'no error', option: undefined, message: '' };
}

describe('compileOptions: defaults', () => {
  it('fills the documented defaults', () => {
    const o = compileOptions();
    expect(o).toMatchObject({
      prefix: 'adagg',
      shards: 16,
      replicas: 1,
      dimensions: ['country'],
      allowedLatenessMs: 10_000,
      idleTimeoutMs: 5_000,
      correctionHorizonMs: 3_600_000,
      maxFutureMs: 300_000,
      snapshotIntervalMs: 1_000,
      snapshotEveryMessages: 1_000,
      rawRetentionMs: 7 * 24 * 3600_000,
      duplicateWindowMs: 120_000,
      countTtlMs: 30 * 24 * 3600_000,
      mailboxCapacity: 64,
      tickIntervalMs: 500,
      httpPort: 8080,
      httpHost: '0.0.0.0',
      maxBodyBytes: 16 * 1024 * 1024,
      maxLines: 100_000,
      maxQueryMinutes: 10_080,
      maxTopN: 1000,
      queryTimeoutMs: 2000,
      dataDir: './data',
    });
    expect(o.natsUrl).toBeUndefined();
    expect(o.redisUrl).toBeUndefined();
    expect(compileOptions({})).toEqual(o);
  });

  it('returns a new object each time and leaves DEFAULTS alone', () => {
    const a = compileOptions({ shards: 4 });
    expect(a.shards).toBe(4);
    expect(DEFAULTS.shards).toBe(16);
    expect(compileOptions().shards).toBe(16);
    expect(compileOptions()).not.toBe(compileOptions());
  });
});

describe('optionsFromEnv + compileOptions', () => {
  it('maps environment variables onto options and converts them', () => {
    const env = optionsFromEnv({
      ADAGG_SHARDS: '8',
      ADAGG_DIMENSIONS: 'country,device',
      ADAGG_PREFIX: 'ads_eu',
      ADAGG_ALLOWED_LATENESS_MS: '0',
      ADAGG_HTTP_PORT: '9090',
      NATS_URL: 'nats://a:4222,nats://b:4222',
      REDIS_URL: 'redis://r:6379',
      ADAGG_MAX_LINES: '', // empty means unset
      UNRELATED: 'x',
    });
    expect(env).toEqual({
      shards: '8',
      dimensions: 'country,device',
      prefix: 'ads_eu',
      allowedLatenessMs: '0',
      httpPort: '9090',
      natsUrl: 'nats://a:4222,nats://b:4222',
      redisUrl: 'redis://r:6379',
    });
    const o = compileOptions(env);
    expect(o.shards).toBe(8);
    expect(o.dimensions).toEqual(['country', 'device']);
    expect(o.prefix).toBe('ads_eu');
    expect(o.allowedLatenessMs).toBe(0);
    expect(o.httpPort).toBe(9090);
    expect(o.natsUrl).toBe('nats://a:4222,nats://b:4222');
    expect(o.redisUrl).toBe('redis://r:6379');
    expect(o.maxLines).toBe(100_000);
  });

  it('every documented env variable names an option with a default (or a URL)', () => {
    for (const [name, key] of Object.entries(ENV_VARS)) {
      expect(name, name).toMatch(/^(ADAGG_[A-Z0-9_]+|NATS_URL|REDIS_URL)$/);
      expect(key in DEFAULTS || key === 'natsUrl' || key === 'redisUrl', `${name} -> ${key}`).toBe(true);
    }
  });

  it('trims list items and drops empty ones; accepts arrays and whitespace around integers', () => {
    expect(compileOptions({ dimensions: ' country , device ,, ' }).dimensions).toEqual(['country', 'device']);
    expect(compileOptions({ dimensions: ['country', 'os'] }).dimensions).toEqual(['country', 'os']);
    expect(compileOptions({ shards: ' 12 ' }).shards).toBe(12);
    expect(compileOptions({ shards: 12 }).shards).toBe(12);
  });
});

describe('compileOptions: bad values fail with ADAGG_E_BAD_OPTION naming the option', () => {
  const cases: Array<[string, Record<string, unknown>, string]> = [
    ['shards 0', { shards: '0' }, 'shards'],
    ['shards abc', { shards: 'abc' }, 'shards'],
    ['shards negative', { shards: '-3' }, 'shards'],
    ['shards fractional', { shards: '1.5' }, 'shards'],
    ['shards fractional number', { shards: 2.5 }, 'shards'],
    ['shards > 1024', { shards: 1025 }, 'shards'],
    ['shards unsafe integer', { shards: '99999999999999999999' }, 'shards'],
    ['replicas 0', { replicas: 0 }, 'replicas'],
    ['mailbox 0', { mailboxCapacity: '0' }, 'mailboxCapacity'],
    ['maxLines not a number', { maxLines: 'lots' }, 'maxLines'],
    ['lateness negative', { allowedLatenessMs: '-1' }, 'allowedLatenessMs'],
    ['maxFuture negative', { maxFutureMs: -5 }, 'maxFutureMs'],
    ['port too high', { httpPort: 70000 }, 'httpPort'],
    ['prefix starts with a digit', { prefix: '1adagg' }, 'prefix'],
    ['prefix with a dot', { prefix: 'ad.agg' }, 'prefix'],
    ['prefix with a dash', { prefix: 'ad-agg' }, 'prefix'],
    ['prefix too long', { prefix: 'a'.repeat(33) }, 'prefix'],
    ['prefix empty', { prefix: '' }, 'prefix'],
    ['prefix not a string', { prefix: 7 }, 'prefix'],
    ['dimension with a dash', { dimensions: 'country,dev-ice' }, 'dimensions'],
    ['dimension with a space inside', { dimensions: 'country,my dim' }, 'dimensions'],
    ['dimension too long', { dimensions: 'x'.repeat(33) }, 'dimensions'],
    ['dimensions not a list', { dimensions: 5 }, 'dimensions'],
    ['natsUrl empty', { natsUrl: '' }, 'natsUrl'],
    ['redisUrl not a string', { redisUrl: 42 }, 'redisUrl'],
  ];
  it.each(cases)('%s', (_label, input, option) => {
    const f = failure(input);
    expect(f.code).toBe(ErrorCode.BadOption);
    expect(f.option).toBe(option);
    expect(f.message).toContain(option);
  });

  it('the same checks apply to values coming from the environment', () => {
    expect(failure(optionsFromEnv({ ADAGG_SHARDS: '0' }))).toMatchObject({ code: ErrorCode.BadOption, option: 'shards' });
    expect(failure(optionsFromEnv({ ADAGG_SHARDS: 'abc' }))).toMatchObject({ code: ErrorCode.BadOption, option: 'shards' });
    expect(failure(optionsFromEnv({ ADAGG_PREFIX: 'bad prefix' }))).toMatchObject({ code: ErrorCode.BadOption, option: 'prefix' });
    expect(failure(optionsFromEnv({ ADAGG_DIMENSIONS: 'country,de/vice' }))).toMatchObject({
      code: ErrorCode.BadOption,
      option: 'dimensions',
    });
    expect(failure(optionsFromEnv({ ADAGG_SHARDS: '8' })).code).toBe('no error');
  });

  it('boundary values are accepted', () => {
    expect(compileOptions({ shards: 1 }).shards).toBe(1);
    expect(compileOptions({ shards: 1024 }).shards).toBe(1024);
    expect(compileOptions({ httpPort: 0 }).httpPort).toBe(0);
    expect(compileOptions({ httpPort: 65535 }).httpPort).toBe(65535);
    expect(compileOptions({ prefix: 'A'.repeat(32) }).prefix).toBe('A'.repeat(32));
    expect(compileOptions({ maxFutureMs: 0 }).maxFutureMs).toBe(0);
  });

  // Regression: a repeated dimension was accepted and then counted twice per click.
  it('a repeated dimension is rejected (or de-duplicated) instead of double counting', async () => {
    let dims: string[];
    try {
      dims = compileOptions(optionsFromEnv({ ADAGG_DIMENSIONS: 'country,country' })).dimensions;
    } catch (e) {
      expect((e as AdaggError).code).toBe(ErrorCode.BadOption);
      return;
    }
    const actor = new ShardActor(
      { shard: 0, dimensions: dims, allowedLatenessMs: 10_000, idleTimeoutMs: 5_000, retentionMs: 3600_000 },
      { clock: new ManualClock(0), readClosed: async (r) => r.map(() => 0) },
    );
    const ts = Date.UTC(2024, 6, 9);
    await actor.applyBatch(1, [{ click_id: 'c1', ad_id: 'a1', ts, country: 'US' }]);
    const m = Math.floor(ts / 60_000);
    // One click from US; currently answered as 2.
    expect(actor.queryAd({ adId: 'a1', fromMinute: m, toMinute: m + 1, dim: 'country', value: 'US' }).minutes).toEqual([[m, 1]]);
  });
});

describe('workers (ADAGG_WORKERS)', () => {
  it('defaults to the cores this process may use', () => {
    expect(compileOptions().workers).toBe(os.availableParallelism());
    expect(DEFAULTS.workers).toBe(os.availableParallelism());
  });

  it('comes from ADAGG_WORKERS; 0 hosts actors on the main thread', () => {
    expect(optionsFromEnv({ ADAGG_WORKERS: '3' })).toEqual({ workers: '3' });
    expect(compileOptions(optionsFromEnv({ ADAGG_WORKERS: '3' })).workers).toBe(3);
    expect(compileOptions(optionsFromEnv({ ADAGG_WORKERS: '0' })).workers).toBe(0);
    expect(compileOptions({ workers: 256 }).workers).toBe(256);
  });

  it.each([['-1'], ['257'], ['two'], ['1.5']])('refuses %s naming the option', (v) => {
    expect(failure(optionsFromEnv({ ADAGG_WORKERS: v }))).toMatchObject({ code: ErrorCode.BadOption, option: 'workers' });
  });
});
