import os from 'node:os';
import { OptionError } from './errors.ts';

/** Public options of an adagg process. Every field has a default; environment variables map onto them. */
export interface AdaggOptions {
  /** NATS servers, comma-separated. Unset with `npm start`: a local nats-server is started. Env NATS_URL. */
  natsUrl?: string;
  /** Redis URL. Unset with `npm start`: a local redis-server (AOF) is started. Env REDIS_URL. */
  redisUrl?: string;
  /** Names streams (`<PREFIX>_CLICKS`), subjects and Redis keys. @default 'adagg' Env ADAGG_PREFIX. */
  prefix?: string;
  /** Shard count, fixed when the clicks stream is created. @default 16 Env ADAGG_SHARDS. */
  shards?: number;
  /** Stream replicas (3 on a NATS cluster). @default 1 Env ADAGG_REPLICAS. */
  replicas?: number;
  /** Pre-aggregated dimensions. @default ['country'] Env ADAGG_DIMENSIONS (comma list). */
  dimensions?: string[];
  /**
   * Pre-aggregated combinations of dimensions (a star-schema cube), e.g. ['country+device'].
   * @default [] Env ADAGG_CUBES (comma list of `a+b` names).
   */
  cubes?: string[];
  /** Depth of each shard's streaming top-N (largest live `count`). @default 100 Env ADAGG_TOPN_DEPTH. */
  topnDepth?: number;
  /** Longest live top-N window in minutes (closed minutes kept in actor memory). @default 60 Env ADAGG_MAX_LIVE_WINDOW. */
  maxLiveWindow?: number;
  /** Unsent bytes above which a WebSocket client is slow and only gets the newest ranking. @default 262144 Env ADAGG_WS_MAX_BUFFERED_BYTES. */
  wsMaxBufferedBytes?: number;
  /** A WebSocket client slow for this long is disconnected. @default 10000 Env ADAGG_WS_SLOW_CLIENT_TIMEOUT_MS. */
  wsSlowClientTimeoutMs?: number;
  /** Node heartbeat period. @default 1000 Env ADAGG_HEARTBEAT_INTERVAL_MS. */
  heartbeatIntervalMs?: number;
  /** A node silent this long is dead and its shards are reassigned (≤ 10 s). @default 5000 Env ADAGG_NODE_TIMEOUT_MS. */
  nodeTimeoutMs?: number;
  /** Handoffs started per placement round. @default 4 Env ADAGG_MAX_MOVES_PER_ROUND. */
  maxMovesPerRound?: number;
  /** A node (re)started this recently gets no rebalanced shards (hysteresis). @default 10000 Env ADAGG_JOIN_GRACE_MS. */
  joinGraceMs?: number;
  /** Nodes that must be alive before shards are first assigned. @default 1 Env ADAGG_MIN_NODES. */
  minNodes?: number;
  /**
   * Worker threads a runtime node hosts its actors in (each shard or hot child runs in one); 0 hosts
   * them on the main thread. The node stays one member of the cluster either way.
   * @default os.availableParallelism() Env ADAGG_WORKERS.
   */
  workers?: number;
  /** A handoff not completed by the old owner in this time is forced (fencing keeps it safe). @default 10000 Env ADAGG_HANDOFF_TIMEOUT_MS. */
  handoffTimeoutMs?: number;
  /** Watermark = max event time − this. @default 10000 Env ADAGG_ALLOWED_LATENESS_MS. */
  allowedLatenessMs?: number;
  /** Wall-clock idle time after which an idle, caught-up shard advances its watermark. @default 5000 Env ADAGG_IDLE_TIMEOUT_MS. */
  idleTimeoutMs?: number;
  /** Clicks older than this are refused as too_old. @default 3600000 Env ADAGG_CORRECTION_HORIZON_MS. */
  correctionHorizonMs?: number;
  /** Clicks further ahead than this are refused as in_future. @default 300000 Env ADAGG_MAX_FUTURE_MS. */
  maxFutureMs?: number;
  /** Longest time between snapshots of a shard that changed. @default 1000 Env ADAGG_SNAPSHOT_INTERVAL_MS. */
  snapshotIntervalMs?: number;
  /** Snapshot after this many stream messages. @default 1000 Env ADAGG_SNAPSHOT_EVERY_MESSAGES. */
  snapshotEveryMessages?: number;
  /** Raw clicks kept in JetStream for replay. @default 7 days Env ADAGG_RAW_RETENTION_MS. */
  rawRetentionMs?: number;
  /** JetStream publish dedupe window. @default 120000 Env ADAGG_DUPLICATE_WINDOW_MS. */
  duplicateWindowMs?: number;
  /** Final counts kept in Redis. @default 30 days Env ADAGG_COUNT_TTL_MS. */
  countTtlMs?: number;
  /** Stream messages queued per shard actor. @default 64 Env ADAGG_MAILBOX_CAPACITY. */
  mailboxCapacity?: number;
  /** Actor tick period (idle watermark, snapshots, lag). @default 500 Env ADAGG_TICK_INTERVAL_MS. */
  tickIntervalMs?: number;
  /** @default 8080 Env ADAGG_HTTP_PORT. */
  httpPort?: number;
  /** @default '0.0.0.0' Env ADAGG_HTTP_HOST. */
  httpHost?: string;
  /** Largest POST /v1/clicks body. @default 16 MiB Env ADAGG_MAX_BODY_BYTES. */
  maxBodyBytes?: number;
  /** Most clicks in one POST. @default 100000 Env ADAGG_MAX_LINES. */
  maxLines?: number;
  /** Longest query range in minutes. @default 10080 (7 days) Env ADAGG_MAX_QUERY_MINUTES. */
  maxQueryMinutes?: number;
  /** Largest `count` of popular_ads. @default 1000 Env ADAGG_MAX_TOP_N. */
  maxTopN?: number;
  /** Timeout of a query to a shard actor. @default 2000 Env ADAGG_QUERY_TIMEOUT_MS. */
  queryTimeoutMs?: number;
  /** Where `npm start` keeps local nats/redis data. @default './data' Env ADAGG_DATA_DIR. */
  dataDir?: string;
  /** Children of an automatically split hot ad; 0 turns automatic splitting off. @default 3 Env ADAGG_HOT_CHILDREN. */
  hotChildren?: number;
  /** An ad whose events/s stays at or above this is hot. @default 20000 Env ADAGG_HOT_RATE. */
  hotRatePerSec?: number;
  /** ...or whose share of its shard's events stays at or above this percentage... @default 50 Env ADAGG_HOT_SHARE_PCT. */
  hotSharePct?: number;
  /** ...while at least this many events/s. @default 2000 Env ADAGG_HOT_MIN_RATE. */
  hotMinRatePerSec?: number;
  /** How long an ad must stay hot before it is split. @default 30000 Env ADAGG_HOT_FOR_MS. */
  hotForMs?: number;
  /** A split ad cools below this many events/s... @default 5000 Env ADAGG_COOL_RATE. */
  coolRatePerSec?: number;
  /** ...and below this share of its shard... @default 20 Env ADAGG_COOL_SHARE_PCT. */
  coolSharePct?: number;
  /** ...held this long; then it is un-split. @default 120000 Env ADAGG_COOL_FOR_MS. */
  coolForMs?: number;
  /** After an un-split completes, its children hand stragglers back this long before they stop. @default 5000 Env ADAGG_HOT_LINGER_MS. */
  hotLingerMs?: number;
}

export type CompiledOptions = Required<Omit<AdaggOptions, 'natsUrl' | 'redisUrl'>> &
  Pick<AdaggOptions, 'natsUrl' | 'redisUrl'>;

const DAY = 24 * 3600_000;
export const DEFAULTS: CompiledOptions = {
  prefix: 'adagg',
  shards: 16,
  replicas: 1,
  dimensions: ['country'],
  cubes: [],
  topnDepth: 100,
  maxLiveWindow: 60,
  heartbeatIntervalMs: 1000,
  nodeTimeoutMs: 5000,
  maxMovesPerRound: 4,
  joinGraceMs: 10_000,
  minNodes: 1,
  workers: os.availableParallelism(),
  handoffTimeoutMs: 10_000,
  wsMaxBufferedBytes: 256 * 1024,
  wsSlowClientTimeoutMs: 10_000,
  allowedLatenessMs: 10_000,
  idleTimeoutMs: 5_000,
  correctionHorizonMs: 3600_000,
  maxFutureMs: 300_000,
  snapshotIntervalMs: 1_000,
  snapshotEveryMessages: 1_000,
  rawRetentionMs: 7 * DAY,
  duplicateWindowMs: 120_000,
  countTtlMs: 30 * DAY,
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
  hotChildren: 3,
  hotRatePerSec: 20_000,
  hotSharePct: 50,
  hotMinRatePerSec: 2000,
  hotForMs: 30_000,
  coolRatePerSec: 5000,
  coolSharePct: 20,
  coolForMs: 120_000,
  hotLingerMs: 5000,
};

const ENV: Record<string, keyof AdaggOptions> = {
  NATS_URL: 'natsUrl',
  REDIS_URL: 'redisUrl',
  ADAGG_PREFIX: 'prefix',
  ADAGG_SHARDS: 'shards',
  ADAGG_REPLICAS: 'replicas',
  ADAGG_DIMENSIONS: 'dimensions',
  ADAGG_CUBES: 'cubes',
  ADAGG_TOPN_DEPTH: 'topnDepth',
  ADAGG_MAX_LIVE_WINDOW: 'maxLiveWindow',
  ADAGG_HEARTBEAT_INTERVAL_MS: 'heartbeatIntervalMs',
  ADAGG_NODE_TIMEOUT_MS: 'nodeTimeoutMs',
  ADAGG_MAX_MOVES_PER_ROUND: 'maxMovesPerRound',
  ADAGG_JOIN_GRACE_MS: 'joinGraceMs',
  ADAGG_MIN_NODES: 'minNodes',
  ADAGG_WORKERS: 'workers',
  ADAGG_HANDOFF_TIMEOUT_MS: 'handoffTimeoutMs',
  ADAGG_WS_MAX_BUFFERED_BYTES: 'wsMaxBufferedBytes',
  ADAGG_WS_SLOW_CLIENT_TIMEOUT_MS: 'wsSlowClientTimeoutMs',
  ADAGG_ALLOWED_LATENESS_MS: 'allowedLatenessMs',
  ADAGG_IDLE_TIMEOUT_MS: 'idleTimeoutMs',
  ADAGG_CORRECTION_HORIZON_MS: 'correctionHorizonMs',
  ADAGG_MAX_FUTURE_MS: 'maxFutureMs',
  ADAGG_SNAPSHOT_INTERVAL_MS: 'snapshotIntervalMs',
  ADAGG_SNAPSHOT_EVERY_MESSAGES: 'snapshotEveryMessages',
  ADAGG_RAW_RETENTION_MS: 'rawRetentionMs',
  ADAGG_DUPLICATE_WINDOW_MS: 'duplicateWindowMs',
  ADAGG_COUNT_TTL_MS: 'countTtlMs',
  ADAGG_MAILBOX_CAPACITY: 'mailboxCapacity',
  ADAGG_TICK_INTERVAL_MS: 'tickIntervalMs',
  ADAGG_HTTP_PORT: 'httpPort',
  ADAGG_HTTP_HOST: 'httpHost',
  ADAGG_MAX_BODY_BYTES: 'maxBodyBytes',
  ADAGG_MAX_LINES: 'maxLines',
  ADAGG_MAX_QUERY_MINUTES: 'maxQueryMinutes',
  ADAGG_MAX_TOP_N: 'maxTopN',
  ADAGG_QUERY_TIMEOUT_MS: 'queryTimeoutMs',
  ADAGG_DATA_DIR: 'dataDir',
  ADAGG_HOT_CHILDREN: 'hotChildren',
  ADAGG_HOT_RATE: 'hotRatePerSec',
  ADAGG_HOT_SHARE_PCT: 'hotSharePct',
  ADAGG_HOT_MIN_RATE: 'hotMinRatePerSec',
  ADAGG_HOT_FOR_MS: 'hotForMs',
  ADAGG_COOL_RATE: 'coolRatePerSec',
  ADAGG_COOL_SHARE_PCT: 'coolSharePct',
  ADAGG_COOL_FOR_MS: 'coolForMs',
  ADAGG_HOT_LINGER_MS: 'hotLingerMs',
};

/** Env variable names, for README and error messages. */
export const ENV_VARS: Readonly<Record<string, keyof AdaggOptions>> = ENV;

/** Reads options from environment variables (strings are converted and checked by compileOptions). */
export function optionsFromEnv(env: NodeJS.ProcessEnv = process.env): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, key] of Object.entries(ENV)) {
    const v = env[name];
    if (v !== undefined && v !== '') out[key] = v;
  }
  return out;
}

/** Fills defaults and checks every option once; a bad option fails here with its name. */
export function compileOptions(input: AdaggOptions | Record<string, unknown> = {}): CompiledOptions {
  const raw = input as Record<string, unknown>;
  const out: Record<string, unknown> = { ...DEFAULTS };
  for (const [key, def] of Object.entries(DEFAULTS)) {
    const v = raw[key];
    if (v === undefined) continue;
    if (typeof def === 'number') out[key] = toInt(key, v);
    else if (Array.isArray(def)) out[key] = toList(key, v);
    else if (typeof v !== 'string' || v === '') throw new OptionError(key, 'must be a non-empty string');
    else out[key] = v;
  }
  for (const key of ['natsUrl', 'redisUrl'] as const) {
    const v = raw[key];
    if (v !== undefined) {
      if (typeof v !== 'string' || v === '') throw new OptionError(key, 'must be a non-empty URL string');
      out[key] = v;
    }
  }
  const o = out as CompiledOptions;
  positive(o, ['shards', 'replicas', 'idleTimeoutMs', 'correctionHorizonMs', 'snapshotIntervalMs', 'snapshotEveryMessages',
    'rawRetentionMs', 'duplicateWindowMs', 'countTtlMs', 'mailboxCapacity', 'tickIntervalMs', 'maxBodyBytes', 'maxLines',
    'maxQueryMinutes', 'maxTopN', 'queryTimeoutMs', 'topnDepth', 'maxLiveWindow', 'wsMaxBufferedBytes', 'wsSlowClientTimeoutMs',
    'heartbeatIntervalMs', 'nodeTimeoutMs', 'maxMovesPerRound', 'minNodes', 'handoffTimeoutMs']);
  if (o.joinGraceMs < 0) throw new OptionError('joinGraceMs', 'must be >= 0');
  if (o.workers < 0 || o.workers > 256) throw new OptionError('workers', 'must be in 0..256');
  if (o.nodeTimeoutMs <= o.heartbeatIntervalMs) throw new OptionError('nodeTimeoutMs', 'must be longer than heartbeatIntervalMs');
  for (const c of o.cubes) {
    const parts = c.split('+');
    if (parts.length < 2 || parts.some((d) => !/^[A-Za-z0-9_]{1,32}$/.test(d)) || new Set(parts).size !== parts.length) {
      throw new OptionError('cubes', `bad cube "${c}" (expected names joined by +, e.g. country+device)`);
    }
  }
  if (o.allowedLatenessMs < 0) throw new OptionError('allowedLatenessMs', 'must be >= 0');
  if (o.maxFutureMs < 0) throw new OptionError('maxFutureMs', 'must be >= 0');
  if (o.shards > 1024) throw new OptionError('shards', 'must be <= 1024');
  if (o.httpPort < 0 || o.httpPort > 65535) throw new OptionError('httpPort', 'must be a TCP port');
  if (!/^[A-Za-z][A-Za-z0-9_]{0,31}$/.test(o.prefix)) throw new OptionError('prefix', 'must match [A-Za-z][A-Za-z0-9_]{0,31}');
  for (const d of o.dimensions) {
    if (!/^[A-Za-z0-9_]{1,32}$/.test(d)) throw new OptionError('dimensions', `bad dimension name "${d}"`);
  }
  // A repeated dimension would be counted twice per click.
  if (new Set(o.dimensions).size !== o.dimensions.length) throw new OptionError('dimensions', 'lists a dimension twice');
  if (new Set(o.cubes).size !== o.cubes.length) throw new OptionError('cubes', 'lists a cube twice');
  checkHotOptions(o);
  return o;
}

/** Hot-ad thresholds: cooling must sit below heating (hysteresis), or a hot ad would flap. */
function checkHotOptions(o: CompiledOptions): void {
  if (o.hotChildren < 0 || o.hotChildren > 64) throw new OptionError('hotChildren', 'must be in 0..64');
  positive(o, ['hotRatePerSec', 'hotSharePct', 'hotMinRatePerSec', 'hotForMs', 'coolForMs']);
  for (const k of ['coolRatePerSec', 'coolSharePct', 'hotLingerMs'] as const) if (o[k] < 0) throw new OptionError(k, 'must be >= 0');
  if (o.hotSharePct > 100) throw new OptionError('hotSharePct', 'must be <= 100');
  if (o.coolRatePerSec >= o.hotRatePerSec) throw new OptionError('coolRatePerSec', 'must be below hotRatePerSec');
  if (o.coolSharePct >= o.hotSharePct) throw new OptionError('coolSharePct', 'must be below hotSharePct');
}

function toInt(key: string, v: unknown): number {
  const n = typeof v === 'number' ? v : typeof v === 'string' && /^-?\d+$/.test(v.trim()) ? Number(v) : NaN;
  if (!Number.isSafeInteger(n)) throw new OptionError(key, `must be an integer, got ${JSON.stringify(v)}`);
  return n;
}

function toList(key: string, v: unknown): string[] {
  if (Array.isArray(v)) return v.map(String);
  if (typeof v === 'string') return v.split(',').map((s) => s.trim()).filter(Boolean);
  throw new OptionError(key, 'must be a comma-separated list');
}

function positive(o: CompiledOptions, keys: Array<keyof CompiledOptions>): void {
  for (const k of keys) if (!((o[k] as number) > 0)) throw new OptionError(k, 'must be > 0');
}

/** Every dimension the actors aggregate: single dimensions and configured cubes. */
export function aggregatedDimensions(o: Pick<CompiledOptions, 'dimensions' | 'cubes'>): string[] {
  return [...o.dimensions, ...o.cubes];
}
