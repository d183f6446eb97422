/**
 * Options of an adagg process, from one table: each entry of {@link OPTIONS} gives an option's
 * default, environment variable, kind and bounds, and the text of the configuration table (docs/configuration.md).
 * The types (`AdaggOptions`, `CompiledOptions`), `DEFAULTS`, `ENV_VARS`, the checks of
 * `compileOptions` and the configuration table in docs/configuration.md (`npm run docs:options`) are all derived from it.
 *
 * @example
 * const o = compileOptions({ ...optionsFromEnv(), shards: 8 }); // throws ADAGG_E_BAD_OPTION naming a bad option
 */
import os from 'node:os';
import { OptionError } from './errors.ts';

interface Described {
  /** Environment variable that sets the option. */
  env: string;
  /** One line for the configuration table (docs/configuration.md). */
  doc: string;
  /** The table's default column, where the value alone says less (`7 days`). */
  docDefault?: string;
}

/** An integer option: a number, or a string of digits from the environment. */
export interface IntOption extends Described {
  kind: 'int';
  default: number;
  /** Smallest accepted value. */
  min: 0 | 1;
  /** Largest accepted value (none: any safe integer). */
  max?: number;
  /** The error for a value outside min..max, where `must be > 0` / `must be <= max` would say less. */
  rangeError?: string;
}

/** A non-empty string option, optionally matching a pattern. */
export interface StringOption extends Described {
  kind: 'string';
  default: string;
  pattern?: RegExp;
}

/** A list option: an array, or a comma-separated string from the environment. */
export interface ListOption extends Described {
  kind: 'list';
  default: readonly string[];
  /** Checks one item: an error message, or undefined when the item is good. */
  checkItem: (item: string) => string | undefined;
  /** The error when an item is listed twice. */
  duplicateError: string;
  /** The table's accepts column. */
  accepts: string;
}

/** A server URL with no default: unset, `npm start` starts a local server. */
export interface UrlOption extends Described {
  kind: 'url';
}

export type OptionSpec = IntOption | StringOption | ListOption | UrlOption;

const SECOND = 1000;
const DAY = 24 * 3600_000;
const NAME = /^[A-Za-z0-9_]{1,32}$/;

/** Every option of an adagg process, in the order docs/configuration.md lists them. */
export const OPTIONS = {
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
    doc: 'Redis URL; `adagg node` and `adagg gateway` need it',
  },
  httpPort: { kind: 'int', env: 'ADAGG_HTTP_PORT', default: 8080, min: 0, max: 65535, rangeError: 'must be a TCP port', doc: 'gateway port (0: any free port)' },
  httpHost: { kind: 'string', env: 'ADAGG_HTTP_HOST', default: '0.0.0.0', doc: 'gateway address' },
  prefix: {
    kind: 'string',
    env: 'ADAGG_PREFIX',
    default: 'adagg',
    pattern: /^[A-Za-z][A-Za-z0-9_]{0,31}$/,
    doc: 'names the streams (`ADAGG_CLICKS`, `ADAGG_DLQ`), subjects and Redis keys',
  },
  shards: {
    kind: 'int',
    env: 'ADAGG_SHARDS',
    default: 16,
    min: 1,
    max: 1024,
    doc: 'shard count, fixed when the clicks stream is created (recorded in its description; a mismatch is refused)',
  },
  replicas: { kind: 'int', env: 'ADAGG_REPLICAS', default: 1, min: 1, doc: 'JetStream replicas (3 on a NATS cluster)' },
  dimensions: {
    kind: 'list',
    env: 'ADAGG_DIMENSIONS',
    default: ['country'],
    checkItem: (d) => (NAME.test(d) ? undefined : `bad dimension name "${d}"`),
    // A repeated dimension would be counted twice per click.
    duplicateError: 'lists a dimension twice',
    accepts: 'comma list of `[A-Za-z0-9_]{1,32}`',
    doc: 'pre-aggregated dimensions',
  },
  cubes: {
    kind: 'list',
    env: 'ADAGG_CUBES',
    default: [],
    checkItem: (c) => {
      const parts = c.split('+');
      const ok = parts.length >= 2 && parts.every((d) => NAME.test(d)) && new Set(parts).size === parts.length;
      return ok ? undefined : `bad cube "${c}" (expected names joined by +, e.g. country+device)`;
    },
    duplicateError: 'lists a cube twice',
    accepts: 'comma list of `a+b` names',
    docDefault: '(none)',
    doc: 'pre-aggregated combinations of dimensions (a star-schema cube), e.g. `country+device`',
  },
  topnDepth: { kind: 'int', env: 'ADAGG_TOPN_DEPTH', default: 100, min: 1, doc: "depth of each shard's streaming top-K (largest live `count`)" },
  maxLiveWindow: {
    kind: 'int',
    env: 'ADAGG_MAX_LIVE_WINDOW',
    default: 60,
    min: 1,
    doc: 'longest live top-N window in minutes; closed minutes kept in actor memory for it',
  },
  wsMaxBufferedBytes: {
    kind: 'int',
    env: 'ADAGG_WS_MAX_BUFFERED_BYTES',
    default: 256 * 1024,
    min: 1,
    doc: 'unsent bytes above which a WebSocket client only gets the newest ranking',
  },
  wsSlowClientTimeoutMs: {
    kind: 'int',
    env: 'ADAGG_WS_SLOW_CLIENT_TIMEOUT_MS',
    default: 10 * SECOND,
    min: 1,
    doc: 'a WebSocket client backed up this long is disconnected',
  },
  allowedLatenessMs: { kind: 'int', env: 'ADAGG_ALLOWED_LATENESS_MS', default: 10 * SECOND, min: 0, doc: 'watermark = highest event time − this' },
  idleTimeoutMs: {
    kind: 'int',
    env: 'ADAGG_IDLE_TIMEOUT_MS',
    default: 5 * SECOND,
    min: 1,
    doc: 'an idle, caught-up shard advances its watermark with the wall clock after this',
  },
  correctionHorizonMs: { kind: 'int', env: 'ADAGG_CORRECTION_HORIZON_MS', default: 3600_000, min: 1, doc: 'older clicks are refused as `too_old`' },
  maxFutureMs: { kind: 'int', env: 'ADAGG_MAX_FUTURE_MS', default: 300_000, min: 0, doc: 'clicks further ahead are refused as `in_future`' },
  snapshotIntervalMs: {
    kind: 'int',
    env: 'ADAGG_SNAPSHOT_INTERVAL_MS',
    default: 1 * SECOND,
    min: 1,
    doc: 'longest time between commits of a changed shard',
  },
  snapshotEveryMessages: { kind: 'int', env: 'ADAGG_SNAPSHOT_EVERY_MESSAGES', default: 1000, min: 1, doc: 'commit after this many stream messages' },
  rawRetentionMs: {
    kind: 'int',
    env: 'ADAGG_RAW_RETENTION_MS',
    default: 7 * DAY,
    docDefault: '7 days',
    min: 1,
    doc: 'raw clicks kept in JetStream (age-based) for replay',
  },
  duplicateWindowMs: { kind: 'int', env: 'ADAGG_DUPLICATE_WINDOW_MS', default: 120_000, min: 1, doc: 'JetStream publish dedupe window' },
  countTtlMs: { kind: 'int', env: 'ADAGG_COUNT_TTL_MS', default: 30 * DAY, docDefault: '30 days', min: 1, doc: 'final counts kept in Redis' },
  mailboxCapacity: {
    kind: 'int',
    env: 'ADAGG_MAILBOX_CAPACITY',
    default: 64,
    min: 1,
    doc: 'stream messages queued per shard actor (back-pressure beyond)',
  },
  tickIntervalMs: { kind: 'int', env: 'ADAGG_TICK_INTERVAL_MS', default: 500, min: 1, doc: 'actor tick (idle watermark, commits, lag)' },
  maxBodyBytes: {
    kind: 'int',
    env: 'ADAGG_MAX_BODY_BYTES',
    default: 16 * 1024 * 1024,
    docDefault: '16777216 (16 MiB)',
    min: 1,
    doc: 'largest POST body',
  },
  maxLines: { kind: 'int', env: 'ADAGG_MAX_LINES', default: 100_000, min: 1, doc: 'most clicks per POST' },
  maxQueryMinutes: { kind: 'int', env: 'ADAGG_MAX_QUERY_MINUTES', default: 10_080, docDefault: '10080 (7 days)', min: 1, doc: 'longest query range in minutes' },
  maxTopN: { kind: 'int', env: 'ADAGG_MAX_TOP_N', default: 1000, min: 1, doc: 'largest `count` of popular_ads' },
  queryTimeoutMs: {
    kind: 'int',
    env: 'ADAGG_QUERY_TIMEOUT_MS',
    default: 2 * SECOND,
    min: 1,
    doc: 'gateway → actor request timeout (retried while an owner restarts)',
  },
  dataDir: { kind: 'string', env: 'ADAGG_DATA_DIR', default: './data', doc: 'data of the local servers `npm start` runs' },
  workers: {
    kind: 'int',
    env: 'ADAGG_WORKERS',
    default: os.availableParallelism(),
    docDefault: 'cores (`os.availableParallelism()`)',
    min: 0,
    max: 256,
    rangeError: 'must be in 0..256',
    doc: 'worker threads a runtime node hosts its actors in; `0`: on the main thread',
  },
  heartbeatIntervalMs: { kind: 'int', env: 'ADAGG_HEARTBEAT_INTERVAL_MS', default: 1 * SECOND, min: 1, doc: 'node heartbeat period' },
  nodeTimeoutMs: {
    kind: 'int',
    env: 'ADAGG_NODE_TIMEOUT_MS',
    default: 5 * SECOND,
    min: 1,
    doc: 'a node silent this long is dead; its shards are reassigned (longer than the heartbeat period)',
  },
  maxMovesPerRound: { kind: 'int', env: 'ADAGG_MAX_MOVES_PER_ROUND', default: 4, min: 1, doc: 'handoffs started per placement round' },
  joinGraceMs: {
    kind: 'int',
    env: 'ADAGG_JOIN_GRACE_MS',
    default: 10 * SECOND,
    min: 0,
    doc: 'a node (re)started this recently gets no rebalanced shards',
  },
  minNodes: { kind: 'int', env: 'ADAGG_MIN_NODES', default: 1, min: 1, doc: 'nodes alive before shards are first assigned' },
  handoffTimeoutMs: {
    kind: 'int',
    env: 'ADAGG_HANDOFF_TIMEOUT_MS',
    default: 10 * SECOND,
    min: 1,
    doc: 'a handoff the old owner has not completed is forced (fencing keeps it safe)',
  },
  hotChildren: {
    kind: 'int',
    env: 'ADAGG_HOT_CHILDREN',
    default: 3,
    min: 0,
    max: 64,
    rangeError: 'must be in 0..64',
    doc: 'children of an automatically split hot ad; `0` turns automatic splitting off',
  },
  hotRatePerSec: { kind: 'int', env: 'ADAGG_HOT_RATE', default: 20_000, min: 1, doc: 'an ad with at least this many clicks/s, held for `hotForMs`, is hot…' },
  hotSharePct: {
    kind: 'int',
    env: 'ADAGG_HOT_SHARE_PCT',
    default: 50,
    min: 1,
    max: 100,
    doc: "…or one with at least this share (%) of its shard's clicks…",
  },
  hotMinRatePerSec: { kind: 'int', env: 'ADAGG_HOT_MIN_RATE', default: 2000, min: 1, doc: '…while at least this many clicks/s' },
  hotForMs: { kind: 'int', env: 'ADAGG_HOT_FOR_MS', default: 30 * SECOND, min: 1, doc: 'how long an ad must stay hot before it is split into `hotChildren` child actors' },
  coolRatePerSec: { kind: 'int', env: 'ADAGG_COOL_RATE', default: 5000, min: 0, doc: 'a split ad cools below this many clicks/s (below the hot rate)…' },
  coolSharePct: {
    kind: 'int',
    env: 'ADAGG_COOL_SHARE_PCT',
    default: 20,
    min: 0,
    doc: '…and below this share (%) of its shard (below the hot share)…',
  },
  coolForMs: { kind: 'int', env: 'ADAGG_COOL_FOR_MS', default: 120 * SECOND, min: 1, doc: '…held this long; then it is un-split' },
  hotLingerMs: {
    kind: 'int',
    env: 'ADAGG_HOT_LINGER_MS',
    default: 5 * SECOND,
    min: 0,
    doc: 'after an un-split, its children hand stragglers back this long before they stop',
  },
} as const satisfies Record<string, OptionSpec>;

type Table = typeof OPTIONS;
type ValueOf<S> = S extends { kind: 'int' } ? number : S extends { kind: 'list' } ? string[] : string;
type UrlKey = { [K in keyof Table]: Table[K] extends { kind: 'url' } ? K : never }[keyof Table];

/**
 * Public options of an adagg process. Every option but the server URLs has a default; each one's
 * default, environment variable and meaning are in {@link OPTIONS} (and the configuration table (docs/configuration.md)).
 */
export type AdaggOptions = { -readonly [K in keyof Table]?: ValueOf<Table[K]> };

/** Options after `compileOptions`: every default filled in and every value checked. */
export type CompiledOptions = Required<Omit<AdaggOptions, UrlKey>> & Pick<AdaggOptions, UrlKey>;

/** Cross-option rules, checked after each option's own. */
const RELATIONS: ReadonlyArray<{ option: keyof CompiledOptions; holds: (o: CompiledOptions) => boolean; error: string }> = [
  { option: 'nodeTimeoutMs', holds: (o) => o.nodeTimeoutMs > o.heartbeatIntervalMs, error: 'must be longer than heartbeatIntervalMs' },
  // Cooling must sit below heating (hysteresis), or a hot ad would flap.
  { option: 'coolRatePerSec', holds: (o) => o.coolRatePerSec < o.hotRatePerSec, error: 'must be below hotRatePerSec' },
  { option: 'coolSharePct', holds: (o) => o.coolSharePct < o.hotSharePct, error: 'must be below hotSharePct' },
];

const entries = Object.entries(OPTIONS) as Array<[keyof Table, OptionSpec]>;

/** Every option's default (the server URLs have none). */
export const DEFAULTS: Readonly<CompiledOptions> = Object.freeze(
  Object.fromEntries(
    entries.flatMap(([key, spec]) =>
      spec.kind === 'url' ? [] : [[key, spec.kind === 'list' ? Object.freeze([...spec.default]) : spec.default]],
    ),
  ) as unknown as CompiledOptions,
);

/** Environment variable → option name, for the docs and error messages. */
export const ENV_VARS: Readonly<Record<string, keyof AdaggOptions>> = Object.freeze(
  Object.fromEntries(entries.map(([key, spec]) => [spec.env, key] as const)),
);

/** Reads options from environment variables (strings are converted and checked by compileOptions). */
export function optionsFromEnv(env: NodeJS.ProcessEnv = process.env): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [key, spec] of entries) {
    const v = env[spec.env];
    if (v !== undefined && v !== '') out[key] = v;
  }
  return out;
}

/** Fills defaults and checks every option once; a bad option fails here with its name. */
export function compileOptions(input: AdaggOptions | Record<string, unknown> = {}): CompiledOptions {
  const raw = input as Record<string, unknown>;
  const out: Record<string, unknown> = {};
  // Every value is converted before any is range-checked, so a malformed value is reported first.
  for (const [key, spec] of entries) {
    const v = raw[key];
    if (v !== undefined) out[key] = convert(key, spec, v);
    else if (spec.kind === 'list') out[key] = [...spec.default];
    else if (spec.kind !== 'url') out[key] = spec.default;
  }
  for (const [key, spec] of entries) {
    const error = out[key] === undefined ? undefined : check(spec, out[key]);
    if (error !== undefined) throw new OptionError(key, error);
  }
  const o = out as CompiledOptions;
  for (const r of RELATIONS) if (!r.holds(o)) throw new OptionError(r.option, r.error);
  return o;
}

/** A value as the option's type: numbers from digit strings, lists from comma lists. */
function convert(key: string, spec: OptionSpec, v: unknown): unknown {
  switch (spec.kind) {
    case 'int': {
      const n = typeof v === 'number' ? v : typeof v === 'string' && /^-?\d+$/.test(v.trim()) ? Number(v) : NaN;
      if (!Number.isSafeInteger(n)) throw new OptionError(key, `must be an integer, got ${JSON.stringify(v)}`);
      return n;
    }
    case 'list':
      if (Array.isArray(v)) return v.map(String);
      if (typeof v === 'string') return v.split(',').map((s) => s.trim()).filter(Boolean);
      throw new OptionError(key, 'must be a comma-separated list');
    case 'string':
      if (typeof v !== 'string' || v === '') throw new OptionError(key, 'must be a non-empty string');
      return v;
    case 'url':
      if (typeof v !== 'string' || v === '') throw new OptionError(key, 'must be a non-empty URL string');
      return v;
  }
}

/** The error message of a converted value outside the option's bounds, or undefined. */
function check(spec: OptionSpec, v: unknown): string | undefined {
  switch (spec.kind) {
    case 'int': {
      const n = v as number;
      if (n >= spec.min && (spec.max === undefined || n <= spec.max)) return undefined;
      if (spec.rangeError !== undefined) return spec.rangeError;
      if (n < spec.min) return spec.min === 1 ? 'must be > 0' : `must be >= ${spec.min}`;
      return `must be <= ${spec.max}`;
    }
    case 'string':
      return spec.pattern && !spec.pattern.test(v as string) ? `must match ${spec.pattern.source.slice(1, -1)}` : undefined;
    case 'list': {
      const items = v as string[];
      for (const item of items) {
        const error = spec.checkItem(item);
        if (error !== undefined) return error;
      }
      return new Set(items).size === items.length ? undefined : spec.duplicateError;
    }
    case 'url':
      return undefined;
  }
}

/** Every dimension the actors aggregate: single dimensions and configured cubes. */
export function aggregatedDimensions(o: Pick<CompiledOptions, 'dimensions' | 'cubes'>): string[] {
  return [...o.dimensions, ...o.cubes];
}
