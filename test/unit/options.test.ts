import os from 'node:os';
import { describe, expect, it } from 'vitest';
import { ShardActor } from '../../src/actors/shard-actor.ts';
import { AdaggError, ErrorCode } from '../../src/errors.ts';
import { ManualClock } from '../../src/runtime/clock.ts';
import { compileOptions, DEFAULTS, ENV_VARS, OPTIONS, optionsFromEnv, type OptionSpec } from '../../src/options.ts';

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
      httpHost: '127.0.0.1',
      auth: 'on',
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

  it('every documented env variable names an option with a default (or one that may stay unset)', () => {
    for (const [name, key] of Object.entries(ENV_VARS)) {
      // NATS_* and REDIS_* are the servers' own settings: URLs, credentials, TLS files.
      expect(name, name).toMatch(/^(ADAGG|NATS|REDIS)_[A-Z0-9_]+$/);
      expect(key in DEFAULTS || (OPTIONS[key] as OptionSpec).kind === 'url', `${name} -> ${key}`).toBe(true);
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

describe('the options table (OPTIONS) drives types, defaults, env names and checks', () => {
  const table = Object.entries(OPTIONS) as Array<[string, OptionSpec]>;

  it('gives every option its own environment variable', () => {
    const names = table.map(([, spec]) => spec.env);
    expect(new Set(names).size).toBe(names.length);
    expect(Object.keys(ENV_VARS).sort()).toEqual([...names].sort());
    for (const [key, spec] of table) expect(ENV_VARS[spec.env]).toBe(key);
  });

  it('every default passes its own checks, and DEFAULTS holds exactly the options with one', () => {
    expect(() => compileOptions()).not.toThrow();
    expect(Object.keys(DEFAULTS).sort()).toEqual(table.filter(([, s]) => s.kind !== 'url').map(([k]) => k).sort());
    expect(Object.isFrozen(DEFAULTS)).toBe(true);
    expect(Object.isFrozen(DEFAULTS.dimensions)).toBe(true);
    // Compiled lists are copies: changing one never changes DEFAULTS or the next compile.
    const o = compileOptions();
    o.dimensions.push('device');
    expect(compileOptions().dimensions).toEqual(['country']);
  });

  it.each(table.filter(([, s]) => s.kind === 'int'))('%s: below its minimum and above its maximum is refused by name', (key, spec) => {
    if (spec.kind !== 'int') throw new Error('int options only');
    expect(failure({ [key]: spec.min - 1 })).toMatchObject({ code: ErrorCode.BadOption, option: key });
    // The bounds themselves pass their range check (a rule between options may still refuse them).
    const rangeError = /must be (>|<|in |a TCP)/;
    expect(failure({ [key]: String(spec.min) }).message).not.toMatch(rangeError);
    if (spec.max !== undefined) {
      expect(failure({ [key]: spec.max + 1 })).toMatchObject({ code: ErrorCode.BadOption, option: key });
      expect(failure({ [key]: spec.max }).message).not.toMatch(rangeError);
    }
  });

  it('keeps the error messages of each check', () => {
    expect(failure({ shards: 0 }).message).toBe('option shards: must be > 0');
    expect(failure({ shards: 1025 }).message).toBe('option shards: must be <= 1024');
    expect(failure({ joinGraceMs: -1 }).message).toBe('option joinGraceMs: must be >= 0');
    expect(failure({ workers: 257 }).message).toBe('option workers: must be in 0..256');
    expect(failure({ httpPort: -1 }).message).toBe('option httpPort: must be a TCP port');
    expect(failure({ hotSharePct: 101 }).message).toBe('option hotSharePct: must be <= 100');
    expect(failure({ shards: 'x' }).message).toBe('option shards: must be an integer, got "x"');
    expect(failure({ prefix: 'a.b' }).message).toBe('option prefix: must match [A-Za-z][A-Za-z0-9_]{0,31}');
    expect(failure({ httpHost: '' }).message).toBe('option httpHost: must be a non-empty string');
    expect(failure({ natsUrl: 3 }).message).toBe('option natsUrl: must be a non-empty URL string');
    expect(failure({ dimensions: {} }).message).toBe('option dimensions: must be a comma-separated list');
    expect(failure({ dimensions: 'a,a' }).message).toBe('option dimensions: lists a dimension twice');
    expect(failure({ cubes: 'a+b,a+b' }).message).toBe('option cubes: lists a cube twice');
    expect(failure({ cubes: 'country' }).message).toBe('option cubes: bad cube "country" (expected names joined by +, e.g. country+device)');
    expect(failure({ cubes: 'a+a' }).option).toBe('cubes');
    expect(compileOptions({ cubes: 'country+device' }).cubes).toEqual(['country+device']);
  });

  it('checks the rules between options', () => {
    expect(failure({ heartbeatIntervalMs: 5000 }).message).toBe('option nodeTimeoutMs: must be longer than heartbeatIntervalMs');
    expect(failure({ coolRatePerSec: 20_000 }).message).toBe('option coolRatePerSec: must be below hotRatePerSec');
    expect(failure({ coolSharePct: 50 }).message).toBe('option coolSharePct: must be below hotSharePct');
    expect(compileOptions({ heartbeatIntervalMs: 4999, coolRatePerSec: 19_999, coolSharePct: 49 }).nodeTimeoutMs).toBe(5000);
  });

  it('reports a malformed value before another option out of range', () => {
    expect(failure({ shards: 0, maxLines: 'lots' }).option).toBe('maxLines');
  });
});
