/**
 * The one factory for adagg's Redis connections: the URL (`redis://`, `rediss://` for TLS, an ACL
 * `user:pass@`), credentials and TLS files from the options, a command timeout on every call, and
 * the retry policy of each role.
 *
 * A call that fails for lack of Redis (timed out, connection closed, retries exhausted) rejects
 * with ADAGG_E_REDIS_UNAVAILABLE (HTTP 503); Redis' own replies (`FENCED`, `WRONGPASS`, …) pass
 * through unchanged. A timed-out call may still run on the server later: a shard actor whose
 * commit timed out fails and restores from what is stored, and its restore waits until Redis has
 * answered that commit (the `state` connections' gate, redis-client.ts).
 *
 * With REDIS_SENTINELS the connection asks the Sentinels for the current primary of
 * REDIS_SENTINEL_NAME and follows a failover (REDIS_URL then gives credentials and `rediss://` only).
 * With ADAGG_REDIS_MIN_REPLICAS > 0 the connection carries that replica policy: the stores built on
 * it wait for replicas after every durable write (redis-replicas.ts, docs/redis-ha.md).
 *
 * @example
 * const redis = await openRedis(opts, 'gateway'); // rejects at once on refused credentials or TLS
 */
import type { ConnectionOptions } from 'node:tls';
import { ReplyError, type Redis, type RedisOptions } from 'ioredis';
import { AdaggError, ErrorCode, OptionError } from '../errors.ts';
import type { CompiledOptions } from '../options.ts';
import type { Logger } from './logger.ts';
import { CodedRedis, OverdueGate, type CallPolicy } from './redis-client.ts';
import { setReplicaPolicy } from './redis-replicas.ts';
import { readOptionFile } from './option-file.ts';

type RedisOptionKeys =
  | 'redisUsername'
  | 'redisPassword'
  | 'redisTlsCa'
  | 'redisTlsCert'
  | 'redisTlsKey'
  | 'redisCommandTimeoutMs'
  | 'redisStateTimeoutMs'
  | 'redisSentinels'
  | 'redisSentinelName'
  | 'redisSentinelPassword'
  | 'redisMinReplicas'
  | 'redisWaitTimeoutMs';

/** What the factory reads: the URL and, optionally, credentials, TLS files and timeouts. */
export type RedisConnectOptions = Partial<Pick<CompiledOptions, RedisOptionKeys>> & { redisUrl: string };

/**
 * Who the connection is for, which sets its timeout and retries:
 * - `gateway`: HTTP reads; a call fails after `redisCommandTimeoutMs` (503 rather than a hang).
 * - `state`: a runtime node's commits, restores and placement; reconnects forever, but each call
 *   fails after `redisStateTimeoutMs`, so a final commit at shutdown cannot wait forever.
 * - `ops`: a one-shot operator command; connects lazily and gives up after a few attempts.
 * - `ops-watch`: an operator command that redraws until stopped; keeps reconnecting.
 */
export type RedisRole = 'gateway' | 'state' | 'ops' | 'ops-watch';

const DEFAULT_COMMAND_TIMEOUT_MS = 2000;
const DEFAULT_STATE_TIMEOUT_MS = 10_000;
const DEFAULT_WAIT_TIMEOUT_MS = 2000;
const DEFAULT_SENTINEL_NAME = 'mymaster';

/**
 * The `state` connections opened with the same options object (one node's, in one thread) share a
 * gate: a shard's commits and its restores use different connections, and a restore must not
 * overtake an overdue commit (redis-client.ts). Another node in the process has its own.
 */
const stateGates = new WeakMap<object, OverdueGate>();
function stateGate(o: RedisConnectOptions): OverdueGate {
  let g = stateGates.get(o);
  if (!g) stateGates.set(o, (g = new OverdueGate()));
  return g;
}

/** Errors of a connection attempt that retrying cannot fix: refused credentials, bad certificates. */
const FATAL_REPLY = /^(WRONGPASS|NOAUTH|NOPERM|ERR AUTH|ERR invalid password|ERR Client sent AUTH)/;
const TLS_CODE = /^(ERR_SSL_|ERR_TLS_|CERT_|UNABLE_TO_|DEPTH_ZERO_|SELF_SIGNED_|HOSTNAME_MISMATCH|ERR_OSSL)/;

/**
 * The Redis URL a process connects with: REDIS_URL, or, with REDIS_SENTINELS set and no REDIS_URL,
 * a plain `redis://` (the Sentinels name the primary; the URL would only carry credentials and the
 * `rediss://` scheme, which REDIS_USERNAME/REDIS_PASSWORD can give as well).
 */
export function redisUrlOf(o: { redisUrl?: string | undefined; redisSentinels?: readonly string[] | undefined }): string | undefined {
  if (o.redisUrl) return o.redisUrl;
  return o.redisSentinels !== undefined && o.redisSentinels.length > 0 ? 'redis://' : undefined;
}

/**
 * A connection for `role`; commands queue until it is ready. Prefer {@link openRedis} at start.
 * Connection errors go to `log`, each distinct one once per outage (ioredis would print every
 * retry to the console); without a logger they are left to the failing calls to report.
 */
export function createRedis(o: RedisConnectOptions, role: RedisRole, log?: Logger): Redis {
  const timeoutMs = role === 'state' ? (o.redisStateTimeoutMs ?? DEFAULT_STATE_TIMEOUT_MS) : (o.redisCommandTimeoutMs ?? DEFAULT_COMMAND_TIMEOUT_MS);
  const where = redisWhere(o);
  // One-shot operator commands fail rather than connect again; the long-lived roles never give up.
  const revive = role !== 'ops';
  const policy: CallPolicy = role === 'state' ? { timeoutMs, failFast: false, gate: stateGate(o), revive } : { timeoutMs, failFast: true, revive };
  const redis = new CodedRedis(o.redisUrl, redisClientOptions(o, role), where, policy);
  setReplicaPolicy(redis, { minReplicas: o.redisMinReplicas ?? 0, waitTimeoutMs: o.redisWaitTimeoutMs ?? DEFAULT_WAIT_TIMEOUT_MS });
  let last: string | undefined;
  redis.on('error', (err: Error) => {
    if (err.message === last) return;
    last = err.message;
    log?.warn({ err, redis: where, role }, 'redis connection error');
  });
  redis.on('ready', () => (last = undefined));
  return redis;
}

/**
 * A connection for `role`, once it is ready. Refused credentials or a failed TLS handshake reject
 * at once with ADAGG_E_REDIS_UNAVAILABLE (and the connection is closed). An unreachable server is
 * waited for by `gateway` and `state` (it may start later), and fails the operator roles at once.
 */
export async function openRedis(o: RedisConnectOptions, role: RedisRole, log?: Logger): Promise<Redis> {
  const redis = createRedis(o, role, log);
  const where = redisWhere(o);
  try {
    await new Promise<void>((resolve, reject) => {
      let last: Error | undefined;
      const onReady = (): void => done();
      const onError = (err: Error): void => {
        last = err;
        if (isFatalConnectError(err)) done(err);
      };
      const onEnd = (): void => done(last ?? new Error('the connection closed'));
      const done = (err?: Error): void => {
        redis.off('ready', onReady).off('error', onError).off('end', onEnd);
        if (err) reject(err);
        else resolve();
      };
      redis.on('ready', onReady).on('error', onError).on('end', onEnd);
      // Operator roles connect lazily and fail on the first refused attempt, as a command should.
      if (redis.status === 'wait') redis.connect().catch((err: unknown) => done(last ?? (err as Error)));
    });
  } catch (err) {
    redis.disconnect();
    const why = err instanceof Error ? err.message : String(err);
    throw new AdaggError(ErrorCode.RedisUnavailable, `cannot use Redis at ${where}: ${why}`, { cause: err });
  }
  return redis;
}

/** Whether a connection error is one that retrying will not fix. */
export function isFatalConnectError(err: Error): boolean {
  if (err instanceof ReplyError) return FATAL_REPLY.test(err.message);
  const code = (err as { code?: unknown }).code;
  return typeof code === 'string' && TLS_CODE.test(code);
}

/** The ioredis options of a role (exported for tests). URL credentials win over the options'. */
export function redisClientOptions(o: RedisConnectOptions, role: RedisRole): RedisOptions {
  // Call timeouts are CodedRedis' own (they also mark the connection overdue), not commandTimeout.
  const out: RedisOptions = { connectionName: `adagg-${role}` };
  switch (role) {
    case 'gateway':
      Object.assign(out, { maxRetriesPerRequest: 3 });
      break;
    case 'state':
      Object.assign(out, { maxRetriesPerRequest: null });
      break;
    case 'ops':
      Object.assign(out, {
        lazyConnect: true,
        connectTimeout: 3000,
        maxRetriesPerRequest: 1,
        retryStrategy: (times: number) => (times > 2 ? null : 200),
      });
      break;
    case 'ops-watch':
      Object.assign(out, {
        lazyConnect: true,
        connectTimeout: 3000,
        maxRetriesPerRequest: null,
        retryStrategy: (times: number) => Math.min(times * 250, 2000),
      });
      break;
  }
  if (o.redisUsername !== undefined) out.username = o.redisUsername;
  if (o.redisPassword !== undefined) out.password = o.redisPassword;
  const tls = tlsOptions(o);
  if (tls) out.tls = tls;
  if (o.redisSentinels !== undefined && o.redisSentinels.length > 0) Object.assign(out, sentinelOptions(o, role, tls));
  return out;
}

/**
 * Sentinel mode: ioredis asks the Sentinels for the primary of the name, checks that the server it
 * reaches is a primary, and asks again whenever the connection drops (a killed primary) or a
 * Sentinel announces a switch (`failoverDetector`: a demoted one that is still up).
 */
function sentinelOptions(o: RedisConnectOptions, role: RedisRole, tls: ConnectionOptions | undefined): RedisOptions {
  const out: RedisOptions = {
    sentinels: o.redisSentinels!.map(parseHostPort),
    name: o.redisSentinelName ?? DEFAULT_SENTINEL_NAME,
    role: 'master',
    failoverDetector: true,
    // A write refused by a demoted primary fails (never resent: the caller decides) and the
    // connection goes back to the Sentinels for the new one.
    reconnectOnError: (err: Error) => (err.message.startsWith('READONLY') ? 1 : false),
  };
  if (o.redisSentinelPassword !== undefined) out.sentinelPassword = o.redisSentinelPassword;
  if (tls) Object.assign(out, { enableTLSForSentinelMode: true, sentinelTLS: tls });
  // Operator commands fail after a few rounds of unreachable Sentinels rather than retry forever.
  if (role === 'ops') out.sentinelRetryStrategy = (times: number) => (times > 2 ? null : 200);
  return out;
}

function parseHostPort(hp: string): { host: string; port: number } {
  const i = hp.lastIndexOf(':');
  return { host: hp.slice(0, i), port: Number(hp.slice(i + 1)) };
}

/** Where a connection goes, for messages: the URL (redacted) or the Sentinels and master name. */
export function redisWhere(o: RedisConnectOptions): string {
  if (o.redisSentinels === undefined || o.redisSentinels.length === 0) return redactRedisUrl(o.redisUrl);
  return `sentinel master ${o.redisSentinelName ?? DEFAULT_SENTINEL_NAME} via ${o.redisSentinels.join(',')}`;
}

function tlsOptions(o: RedisConnectOptions): ConnectionOptions | undefined {
  if (o.redisTlsCa === undefined && o.redisTlsCert === undefined && o.redisTlsKey === undefined) return undefined;
  if (!/^rediss:\/\//i.test(o.redisUrl)) throw new OptionError('redisUrl', 'must be rediss://… when REDIS_TLS_* is set');
  if ((o.redisTlsCert === undefined) !== (o.redisTlsKey === undefined)) {
    throw new OptionError(o.redisTlsCert === undefined ? 'redisTlsCert' : 'redisTlsKey', 'REDIS_TLS_CERT and REDIS_TLS_KEY go together');
  }
  const tls: ConnectionOptions = {};
  if (o.redisTlsCa !== undefined) tls.ca = readOptionFile('redisTlsCa', o.redisTlsCa);
  if (o.redisTlsCert !== undefined) tls.cert = readOptionFile('redisTlsCert', o.redisTlsCert);
  if (o.redisTlsKey !== undefined) tls.key = readOptionFile('redisTlsKey', o.redisTlsKey);
  return tls;
}

/** `redis://user:secret@host` → `redis://user:***@host`: never print a password. */
export function redactRedisUrl(url: string): string {
  return url.replace(/\/\/([^:@/]*):[^@/]*@/, '//$1:***@');
}
