/**
 * Issue 11, defect 12 and "What to build" 1 (NATS and Redis): adagg reaches a nats-server and a
 * redis-server that demand credentials (user/password, token, NKEY, operator-mode creds; a Redis
 * ACL user with the default user off) and TLS with client certificates, and ingests and answers
 * counts through them; wrong credentials or certificates fail at start with a coded error instead
 * of hanging, and never print the password. Redis timeouts: redis-timeouts.test.ts.
 */
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { nkeys } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { actorRegistry } from '../../src/actors/index.ts';
import { ErrorCode } from '../../src/errors.ts';
import { GatewayService } from '../../src/gateway/gateway-service.ts';
import type { AdaggOptions } from '../../src/options.ts';
import { connectNats } from '../../src/runtime/nats.ts';
import { openRedis } from '../../src/runtime/redis-connect.ts';
import { RuntimeNode } from '../../src/runtime/runtime-node.ts';
import { makeCerts, makeOperatorAuth, startSecureNats, startSecureRedis, type Certs, type SecureServer } from '../helpers/secure-servers.ts';
import { CREDENTIALS, failing, ingestAndCount, NATS_USER as USER, REDIS_USER, rejection, TransportRig } from './transport-rig.ts';

const TOKEN = 'tok-3f9c2a71b5';
const BAD_PASSWORD = 'not-the-password-x9';

let rig: TransportRig;
let dir: string;
let certs: Certs;
const keep = (s: Promise<SecureServer>): Promise<SecureServer> => rig.keep(s);
const stackOn = (...args: Parameters<TransportRig['stackOn']>): ReturnType<TransportRig['stackOn']> => rig.stackOn(...args);

beforeAll(async () => {
  rig = await TransportRig.create();
  dir = rig.dir;
  certs = await makeCerts(dir);
}, 60_000);

afterAll(async () => {
  await rig?.close();
}, 60_000);

describe('NATS user/password and a Redis ACL user', () => {
  let nats: SecureServer;
  let redis: SecureServer;
  beforeAll(async () => {
    [nats, redis] = await Promise.all([
      keep(startSecureNats({ dir, auth: USER })),
      keep(startSecureRedis({ dir, users: [REDIS_USER] })),
    ]);
  }, 60_000);

  it('ingests and counts with credentials from the options (NATS_USER/PASSWORD, REDIS_USERNAME/PASSWORD)', async () => {
    const stack = await stackOn(nats, redis, CREDENTIALS);
    await ingestAndCount(stack, 'ad-opts', 5);
  }, 120_000);

  it('ingests and counts with credentials in the URLs (nats://user:pass@, redis://user:pass@)', async () => {
    const enc = encodeURIComponent;
    const natsUrl = nats.url.replace('nats://', `nats://${enc(USER.user)}:${enc(USER.password)}@`);
    const redisUrl = redis.url.replace('redis://', `redis://${enc(REDIS_USER.name)}:${enc(REDIS_USER.password)}@`);
    const stack = await stackOn(nats, redis, {}, { natsUrl, redisUrl });
    await ingestAndCount(stack, 'ad-url', 3);
  }, 120_000);

  it('refuses wrong or missing credentials at start with a coded error, without hanging', async () => {
    const goodRedis = { redisUsername: REDIS_USER.name, redisPassword: REDIS_USER.password };
    // NATS: no credentials, a wrong password, a wrong password in the URL (never printed back).
    const badUrl = nats.url.replace('nats://', `nats://${USER.user}:${BAD_PASSWORD}@`);
    for (const [natsUrl, extra] of [[nats.url, {}], [nats.url, { natsUser: USER.user, natsPassword: BAD_PASSWORD }], [badUrl, {}]] as const) {
      const gw = new GatewayService(failing(natsUrl, redis.url, { ...goodRedis, ...extra }), { actors: actorRegistry });
      const r = await rejection(gw.start());
      expect(r.err.code).toBe(ErrorCode.NatsUnavailable);
      expect(r.err.message).toMatch(/authorization/i);
      expect(r.err.message).not.toContain(BAD_PASSWORD);
      expect(r.ms).toBeLessThan(10_000);
      await gw.close();
    }
    // Redis: a wrong password, then no user (the default user is off); the node fails fast.
    for (const extra of [{ redisUsername: REDIS_USER.name, redisPassword: BAD_PASSWORD }, {}]) {
      const node = new RuntimeNode('bad-redis', failing(nats.url, redis.url, { natsUser: USER.user, natsPassword: USER.password, ...extra }), {
        actors: actorRegistry,
      });
      const r = await rejection(node.startManaged());
      expect(r.err.code).toBe(ErrorCode.RedisUnavailable);
      expect(r.err.message).toMatch(/WRONGPASS|NOAUTH/);
      expect(r.err.message).not.toContain(BAD_PASSWORD);
      expect(r.ms).toBeLessThan(10_000);
    }
    const inUrl = await rejection(openRedis({ redisUrl: redis.url.replace('redis://', `redis://${REDIS_USER.name}:${BAD_PASSWORD}@`) }, 'gateway'));
    expect(inUrl.err.code).toBe(ErrorCode.RedisUnavailable);
    expect(inUrl.err.message).not.toContain(BAD_PASSWORD);
  }, 120_000);

});

describe('NATS token and NKEY', () => {
  let redis: SecureServer;
  beforeAll(async () => {
    redis = await keep(startSecureRedis({ dir, users: [REDIS_USER] }));
  }, 60_000);
  const redisCreds = (): AdaggOptions => ({ redisUsername: REDIS_USER.name, redisPassword: REDIS_USER.password });

  it('ingests and counts with a token in the URL, and connects with NATS_TOKEN; a wrong token is refused', async () => {
    const nats = await keep(startSecureNats({ dir, auth: { token: TOKEN } }));
    const stack = await stackOn(nats, redis, redisCreds(), { natsUrl: nats.url.replace('nats://', `nats://${TOKEN}@`), redisUrl: redis.url });
    await ingestAndCount(stack, 'ad-token', 3);
    const nc = await connectNats({ natsUrl: nats.url, natsToken: TOKEN }, 'token-test');
    await nc.flush();
    await nc.close();
    const r = await rejection(connectNats({ natsUrl: nats.url, natsToken: 'not-it' }, 'token-test'));
    expect(r.err.code).toBe(ErrorCode.NatsUnavailable);
  }, 120_000);

  it('ingests and counts with an NKEY seed file; another key is refused; a missing file is a bad option', async () => {
    const user = nkeys.createUser();
    const nats = await keep(startSecureNats({ dir, auth: { nkey: user.getPublicKey() } }));
    const seedFile = path.join(dir, 'user.nk');
    await writeFile(seedFile, `${new TextDecoder().decode(user.getSeed())}\n`, { mode: 0o600 });
    const stack = await stackOn(nats, redis, { ...redisCreds(), natsNkeySeedFile: seedFile });
    await ingestAndCount(stack, 'ad-nkey', 3);

    const otherFile = path.join(dir, 'other.nk');
    await writeFile(otherFile, new TextDecoder().decode(nkeys.createUser().getSeed()));
    const r = await rejection(connectNats({ natsUrl: nats.url, natsNkeySeedFile: otherFile }, 'nkey-test'));
    expect(r.err.code).toBe(ErrorCode.NatsUnavailable);
    const missing = await rejection(connectNats({ natsUrl: nats.url, natsNkeySeedFile: path.join(dir, 'nope.nk') }, 'nkey-test'));
    expect(missing.err).toMatchObject({ code: ErrorCode.BadOption, message: expect.stringMatching(/natsNkeySeedFile/) });
  }, 120_000);
});

describe('NATS creds file (JWT, operator mode)', () => {
  it('ingests and counts with NATS_CREDS; a user of an unknown account is refused', async () => {
    const operator = await makeOperatorAuth(dir);
    const [nats, redis] = await Promise.all([
      keep(startSecureNats({ dir, auth: { operator } })),
      keep(startSecureRedis({ dir, users: [REDIS_USER] })),
    ]);
    const stack = await stackOn(nats, redis, { natsCreds: operator.credsFile, redisUsername: REDIS_USER.name, redisPassword: REDIS_USER.password });
    await ingestAndCount(stack, 'ad-creds', 3);
    const r = await rejection(connectNats({ natsUrl: nats.url, natsCreds: operator.strangerCredsFile }, 'creds-test'));
    expect(r.err.code).toBe(ErrorCode.NatsUnavailable);
  }, 120_000);
});

describe('TLS with client certificates (NATS and Redis)', () => {
  let nats: SecureServer;
  let redis: SecureServer;
  beforeAll(async () => {
    [nats, redis] = await Promise.all([
      keep(startSecureNats({ dir, auth: USER, tls: { certs, verifyClients: true } })),
      keep(startSecureRedis({ dir, users: [REDIS_USER], tls: { certs, verifyClients: true } })),
    ]);
  }, 60_000);
  const tlsOpts = (): AdaggOptions => ({
    natsUser: USER.user,
    natsPassword: USER.password,
    natsTlsCa: certs.ca,
    natsTlsCert: certs.clientCert,
    natsTlsKey: certs.clientKey,
    redisUsername: REDIS_USER.name,
    redisPassword: REDIS_USER.password,
    redisTlsCa: certs.ca,
    redisTlsCert: certs.clientCert,
    redisTlsKey: certs.clientKey,
  });

  it('ingests and counts over mutual TLS (rediss:// and NATS_TLS_*)', async () => {
    expect(redis.url).toMatch(/^rediss:\/\//);
    const stack = await stackOn(nats, redis, tlsOpts());
    await ingestAndCount(stack, 'ad-tls', 4);
  }, 120_000);

  it('refuses an untrusted server certificate and a missing client certificate, with coded errors', async () => {
    const base = { ...tlsOpts(), natsUrl: nats.url, redisUrl: redis.url };
    const untrustedNats = await rejection(connectNats({ ...base, natsTlsCa: certs.otherCa }, 'tls-test'));
    expect(untrustedNats.err.code).toBe(ErrorCode.NatsUnavailable);
    // The client is not told that its missing certificate was refused: it waits out its 10 s connect timeout.
    const noClientCert = await rejection(connectNats({ ...base, natsTlsCert: undefined, natsTlsKey: undefined }, 'tls-test'));
    expect(noClientCert.err.code).toBe(ErrorCode.NatsUnavailable);
    expect(noClientCert.ms).toBeLessThan(20_000);

    const untrustedRedis = await rejection(openRedis({ ...base, redisTlsCa: certs.otherCa }, 'gateway'));
    expect(untrustedRedis.err.code).toBe(ErrorCode.RedisUnavailable);
    expect(untrustedRedis.ms).toBeLessThan(10_000);
    const noClientCertRedis = await rejection(openRedis({ ...base, redisTlsCert: undefined, redisTlsKey: undefined }, 'state'));
    expect(noClientCertRedis.err.code).toBe(ErrorCode.RedisUnavailable);
    expect(noClientCertRedis.ms).toBeLessThan(10_000);
    const plainToTls = await rejection(openRedis({ ...base, redisUrl: redis.url.replace('rediss://', 'redis://') }, 'gateway'));
    expect(plainToTls.err.code).toBe(ErrorCode.BadOption); // TLS files with a redis:// URL is a contradiction

    // The whole service fails at start too, rather than waiting for a Redis it cannot use.
    const gw = new GatewayService(failing(nats.url, redis.url, { ...tlsOpts(), redisTlsCa: certs.otherCa }), { actors: actorRegistry });
    const r = await rejection(gw.start());
    expect(r.err.code).toBe(ErrorCode.RedisUnavailable);
    expect(r.ms).toBeLessThan(10_000);
    await gw.close();
  }, 120_000);
});
