/** Where NATS and Redis are, and how to authenticate to them. Part of the one options table (src/options.ts). */
import { SECOND, type OptionSpec } from './spec.ts';

export const CONNECTION_OPTIONS = {
  natsUrl: {
    kind: 'url',
    env: 'NATS_URL',
    docDefault: 'local child server (`npm start`)',
    doc: 'NATS servers, comma-separated for a cluster; `adagg node` and `adagg gateway` need it',
  },
  redisUrl: {
    kind: 'url',
    env: 'REDIS_URL',
    docDefault: 'local child server (`npm start`)',
    doc: 'Redis URL; `adagg node` and `adagg gateway` need it, or REDIS_SENTINELS (then it only carries credentials and `rediss://`)',
  },
  // NATS and Redis credentials and TLS (src/runtime/nats.ts, src/runtime/redis-connect.ts; docs/security.md).
  natsUser: { kind: 'url', env: 'NATS_USER', accepts: 'user name', doc: 'NATS user (with NATS_PASSWORD); `nats://user:pass@host` in NATS_URL works too' },
  natsPassword: { kind: 'url', env: 'NATS_PASSWORD', accepts: 'password', doc: "NATS_USER's password" },
  natsToken: { kind: 'url', env: 'NATS_TOKEN', accepts: 'token', doc: 'NATS authorization token; `nats://token@host` in NATS_URL works too' },
  natsNkeySeedFile: { kind: 'url', env: 'NATS_NKEY_SEED_FILE', accepts: 'file path', doc: 'file holding a NATS user NKEY seed (`SU…`): NKEY authentication' },
  natsCreds: { kind: 'url', env: 'NATS_CREDS', accepts: 'file path', doc: 'NATS credentials file (user JWT + NKEY seed, decentralized auth)' },
  natsTlsCa: { kind: 'url', env: 'NATS_TLS_CA', accepts: 'file path', doc: 'PEM CA that signed the NATS server certificate; any NATS_TLS_* requires TLS' },
  natsTlsCert: { kind: 'url', env: 'NATS_TLS_CERT', accepts: 'file path', doc: 'PEM client certificate for mutual TLS (with NATS_TLS_KEY)' },
  natsTlsKey: { kind: 'url', env: 'NATS_TLS_KEY', accepts: 'file path', doc: 'PEM private key of NATS_TLS_CERT' },
  redisUsername: { kind: 'url', env: 'REDIS_USERNAME', accepts: 'user name', doc: 'Redis ACL user; `redis://user:pass@host` in REDIS_URL works too (and wins)' },
  redisPassword: { kind: 'url', env: 'REDIS_PASSWORD', accepts: 'password', doc: "the Redis ACL user's password (or the `requirepass` password)" },
  redisTlsCa: { kind: 'url', env: 'REDIS_TLS_CA', accepts: 'file path', doc: 'PEM CA that signed the Redis server certificate (REDIS_URL must be `rediss://`)' },
  redisTlsCert: { kind: 'url', env: 'REDIS_TLS_CERT', accepts: 'file path', doc: 'PEM client certificate for mutual TLS (with REDIS_TLS_KEY)' },
  redisTlsKey: { kind: 'url', env: 'REDIS_TLS_KEY', accepts: 'file path', doc: 'PEM private key of REDIS_TLS_CERT' },
  redisCommandTimeoutMs: {
    kind: 'int',
    env: 'ADAGG_REDIS_COMMAND_TIMEOUT_MS',
    default: 2 * SECOND,
    min: 1,
    doc: 'a gateway or operator-command Redis call unanswered this long fails (HTTP 503 `ADAGG_E_REDIS_UNAVAILABLE`)',
  },
  redisStateTimeoutMs: {
    kind: 'int',
    env: 'ADAGG_REDIS_STATE_TIMEOUT_MS',
    default: 10 * SECOND,
    min: 1,
    doc: "a runtime node's Redis call (commit, restore, placement) unanswered this long fails; the actor restarts from its last commit",
  },
  // Redis high availability (src/runtime/redis-connect.ts, docs/redis-ha.md).
  redisSentinels: {
    kind: 'list',
    env: 'REDIS_SENTINELS',
    default: [],
    checkItem: (s) => (/^[^\s:,]+:\d{1,5}$/.test(s) ? undefined : `bad sentinel "${s}" (expected host:port)`),
    duplicateError: 'lists a sentinel twice',
    accepts: 'comma list of `host:port`',
    docDefault: '(none: REDIS_URL is the server)',
    doc: 'Redis Sentinels to ask for the current primary of REDIS_SENTINEL_NAME; REDIS_URL then only gives credentials and `rediss://`, not the host',
  },
  redisSentinelName: { kind: 'string', env: 'REDIS_SENTINEL_NAME', default: 'mymaster', doc: 'the master name the Sentinels monitor (with REDIS_SENTINELS)' },
  redisSentinelPassword: { kind: 'url', env: 'REDIS_SENTINEL_PASSWORD', accepts: 'password', doc: "the Sentinels' own password (`requirepass` in sentinel.conf), if any" },
  redisMinReplicas: {
    kind: 'int',
    env: 'ADAGG_REDIS_MIN_REPLICAS',
    default: 0,
    min: 0,
    max: 16,
    doc: 'a commit, epoch or placement write counts only once this many replicas have it (`WAIT`); fewer within ADAGG_REDIS_WAIT_TIMEOUT_MS fails it and the actor restarts from its last commit. 0: no waiting',
  },
  redisWaitTimeoutMs: {
    kind: 'int',
    env: 'ADAGG_REDIS_WAIT_TIMEOUT_MS',
    default: 2 * SECOND,
    min: 1,
    doc: 'how long a write waits for ADAGG_REDIS_MIN_REPLICAS replicas; must be below ADAGG_REDIS_STATE_TIMEOUT_MS',
  },
} as const satisfies Record<string, OptionSpec>;
