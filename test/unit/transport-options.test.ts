/**
 * How NATS_* and REDIS_* options become client options (src/runtime/nats.ts, redis-connect.ts):
 * credentials parsed out of URLs, option conflicts refused by name, passwords redacted. The real
 * servers are in test/security/transport-auth.test.ts.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ErrorCode } from '../../src/errors.ts';
import { natsConnectionOptions, redactServers } from '../../src/runtime/nats.ts';
import { redactRedisUrl, redisClientOptions } from '../../src/runtime/redis-connect.ts';

let dir: string;
let pem: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'adagg-transport-opts-'));
  pem = path.join(dir, 'ca.pem');
  await writeFile(pem, '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n');
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('NATS connection options', () => {
  it('takes user and password (percent-decoded) out of the first URL that has them, and strips every URL', () => {
    const o = natsConnectionOptions({ natsUrl: 'nats://127.0.0.1:4301, nats://svc%40x:p%3Aw%2F1@127.0.0.1:4302,nats://127.0.0.1:4303' });
    expect(o).toMatchObject({ servers: ['nats://127.0.0.1:4301', 'nats://127.0.0.1:4302', 'nats://127.0.0.1:4303'], user: 'svc@x', pass: 'p:w/1' });
  });

  it('reads a lone URL userinfo as a token; the options win over the URL', () => {
    expect(natsConnectionOptions({ natsUrl: 'nats://s3cr3t@h:4222' })).toMatchObject({ servers: ['nats://h:4222'], token: 's3cr3t' });
    const o = natsConnectionOptions({ natsUrl: 'nats://a:b@h:4222', natsUser: 'u', natsPassword: 'p' });
    expect(o).toMatchObject({ user: 'u', pass: 'p' });
  });

  it('refuses half a pair by option name, and unreadable files before connecting', () => {
    expect(() => natsConnectionOptions({ natsUrl: 'nats://h', natsPassword: 'p' })).toThrow(expect.objectContaining({ code: ErrorCode.BadOption, details: { option: 'natsUser' } }));
    expect(() => natsConnectionOptions({ natsUrl: 'nats://h', natsUser: 'u' })).toThrow(expect.objectContaining({ details: { option: 'natsPassword' } }));
    expect(() => natsConnectionOptions({ natsUrl: 'nats://h', natsTlsCert: pem })).toThrow(expect.objectContaining({ details: { option: 'natsTlsKey' } }));
    expect(() => natsConnectionOptions({ natsUrl: 'nats://h', natsTlsCa: path.join(dir, 'missing.pem') })).toThrow(
      expect.objectContaining({ details: { option: 'natsTlsCa' } }),
    );
    expect(() => natsConnectionOptions({ natsUrl: 'nats://h', natsNkeySeedFile: pem })).toThrow(expect.objectContaining({ details: { option: 'natsNkeySeedFile' } }));
  });

  it('requires TLS as soon as a CA is given', () => {
    expect(natsConnectionOptions({ natsUrl: 'nats://h', natsTlsCa: pem }).tls).toMatchObject({ ca: expect.stringContaining('BEGIN CERTIFICATE') });
    expect(natsConnectionOptions({ natsUrl: 'nats://h' }).tls).toBeUndefined();
  });

  it('never shows a credential in a server list', () => {
    expect(redactServers('nats://u:p@h1:1,nats://tok@h2:2,nats://h3:3')).toBe('nats://***@h1:1,nats://***@h2:2,nats://h3:3');
  });
});

describe('Redis connection options', () => {
  it('gives each role its retries; credentials from options, TLS files only with rediss://', () => {
    expect(redisClientOptions({ redisUrl: 'redis://h' }, 'state')).toMatchObject({ maxRetriesPerRequest: null });
    expect(redisClientOptions({ redisUrl: 'redis://h' }, 'gateway')).toMatchObject({ maxRetriesPerRequest: 3 });
    expect(redisClientOptions({ redisUrl: 'redis://h' }, 'ops')).toMatchObject({ lazyConnect: true, maxRetriesPerRequest: 1 });
    expect(redisClientOptions({ redisUrl: 'redis://h', redisUsername: 'u', redisPassword: 'p' }, 'state')).toMatchObject({ username: 'u', password: 'p' });
    expect(redisClientOptions({ redisUrl: 'rediss://h', redisTlsCa: pem }, 'state').tls).toMatchObject({ ca: expect.any(Buffer) });
    expect(() => redisClientOptions({ redisUrl: 'redis://h', redisTlsCa: pem }, 'state')).toThrow(expect.objectContaining({ details: { option: 'redisUrl' } }));
    expect(() => redisClientOptions({ redisUrl: 'rediss://h', redisTlsKey: pem }, 'state')).toThrow(expect.objectContaining({ details: { option: 'redisTlsCert' } }));
  });

  it('never shows a password in a URL', () => {
    expect(redactRedisUrl('rediss://adagg:s3cret@h:6380/0')).toBe('rediss://adagg:***@h:6380/0');
  });
});
