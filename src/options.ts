/**
 * Options of an adagg process, from one table: each entry of {@link OPTIONS} gives an option's
 * default, environment variable, kind and bounds, and the text of the configuration table (docs/configuration.md).
 * The types (`AdaggOptions`, `CompiledOptions`), `DEFAULTS`, `ENV_VARS`, the checks of
 * `compileOptions` and the configuration table in docs/configuration.md (`npm run docs:options`) are all derived from it.
 *
 * @example
 * const o = compileOptions({ ...optionsFromEnv(), shards: 8 }); // throws ADAGG_E_BAD_OPTION naming a bad option
 */
import { OptionError } from './errors.ts';
import { ARCHIVE_OPTIONS } from './options/archive.ts';
import { CONNECTION_OPTIONS } from './options/connection.ts';
import { GATEWAY_OPTIONS } from './options/gateway.ts';
import { PROCESS_OPTIONS } from './options/process.ts';
import type { OptionSpec } from './options/spec.ts';
import { STREAM_OPTIONS } from './options/stream.ts';

export type { IntOption, ListOption, OptionSpec, StringOption, UrlOption } from './options/spec.ts';

/** Every option of an adagg process, in the order docs/configuration.md lists them (src/options/ holds them by area). */
export const OPTIONS = {
  ...CONNECTION_OPTIONS,
  ...GATEWAY_OPTIONS,
  ...STREAM_OPTIONS,
  ...PROCESS_OPTIONS,
  ...ARCHIVE_OPTIONS,
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
  // Node refuses a headers timeout longer than the whole-request timeout.
  { option: 'headersTimeoutMs', holds: (o) => o.headersTimeoutMs <= o.requestTimeoutMs, error: 'must not exceed requestTimeoutMs' },
  { option: 'wsMaxSubscriptions', holds: (o) => o.wsMaxSubscriptions <= o.wsMaxSpecsTotal, error: 'must not exceed wsMaxSpecsTotal' },
  // A WAIT outlasting the call deadline would fail as "Redis unavailable" instead of "too few replicas".
  { option: 'redisWaitTimeoutMs', holds: (o) => o.redisMinReplicas === 0 || o.redisWaitTimeoutMs < o.redisStateTimeoutMs, error: 'must be below redisStateTimeoutMs' },
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
