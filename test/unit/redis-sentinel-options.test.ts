import { describe, expect, it } from 'vitest';
import { compileOptions } from '../../src/options.ts';
import { redisClientOptions, redisUrlOf, redisWhere } from '../../src/runtime/redis-connect.ts';

/** REDIS_SENTINELS and friends (issue 13, Redis HA) onto ioredis' sentinel options. */
describe('Redis Sentinel options', () => {
  const base = { ...compileOptions({}), redisUrl: 'redis://app:secret@ignored:6379' };

  it('leaves a plain connection as it was when no Sentinel is named', () => {
    const o = redisClientOptions(base, 'state');
    expect(o.sentinels).toBeUndefined();
    expect(o.name).toBeUndefined();
    expect(redisWhere(base)).toBe('redis://app:***@ignored:6379');
  });

  it('asks the Sentinels for the named primary, for every role', () => {
    const o = compileOptions({ redisSentinels: 's1:26379,10.0.0.2:26380', redisSentinelName: 'adagg', redisSentinelPassword: 'sp' });
    for (const role of ['gateway', 'state', 'ops', 'ops-watch'] as const) {
      const c = redisClientOptions({ ...o, redisUrl: base.redisUrl }, role);
      expect(c.sentinels).toEqual([
        { host: 's1', port: 26379 },
        { host: '10.0.0.2', port: 26380 },
      ]);
      expect(c.name).toBe('adagg');
      expect(c.sentinelPassword).toBe('sp');
      expect(c.role).toBe('master');
    }
    // A one-shot operator command gives up on unreachable Sentinels; the others keep trying.
    expect(redisClientOptions({ ...o, redisUrl: base.redisUrl }, 'ops').sentinelRetryStrategy?.(3)).toBeNull();
    expect(redisClientOptions({ ...o, redisUrl: base.redisUrl }, 'state').sentinelRetryStrategy).toBeUndefined();
    expect(redisWhere({ ...o, redisUrl: base.redisUrl })).toBe('sentinel master adagg via s1:26379,10.0.0.2:26380');
  });

  it('refuses a Sentinel that is not host:port, with the option named', () => {
    expect(() => compileOptions({ redisSentinels: 's1' })).toThrow(/redisSentinels/);
    expect(() => compileOptions({ redisSentinels: 's1:1,s1:1' })).toThrow(/redisSentinels/);
    expect(() => compileOptions({ redisMinReplicas: -1 })).toThrow(/redisMinReplicas/);
  });

  it('REDIS_URL may be left out when Sentinels are named (they find the primary)', () => {
    expect(redisUrlOf(compileOptions({}))).toBeUndefined();
    expect(redisUrlOf(compileOptions({ redisSentinels: 's1:26379,s2:26379' }))).toBe('redis://');
    expect(redisUrlOf(compileOptions({ redisUrl: 'rediss://u:p@h:6380', redisSentinels: 's1:26379' }))).toBe('rediss://u:p@h:6380');
  });
});
