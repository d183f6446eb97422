/** Streams, shards, dimensions, event time and commits. Part of the one options table (src/options.ts). */
import { DAY, NAME, SECOND, type OptionSpec } from './spec.ts';

export const STREAM_OPTIONS = {
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
  riskRules: {
    kind: 'url',
    env: 'ADAGG_RISK_RULES',
    accepts: 'file path',
    docDefault: '(none: no click is invalid)',
    doc: 'JSON `{"rules":[...]}`: invalid-click rules (`ip_block`, `frequency`, `spread`), validated at start and re-read on SIGHUP; in effect from a recorded stream sequence. Turns hot-ad splitting off (ADAGG_HOT_CHILDREN=0). Example: `deploy/risk-rules.json`',
  },
  topnDepth: { kind: 'int', env: 'ADAGG_TOPN_DEPTH', default: 100, min: 1, doc: "depth of each shard's streaming top-K (largest live `count`)" },
  maxLiveWindow: {
    kind: 'int',
    env: 'ADAGG_MAX_LIVE_WINDOW',
    default: 60,
    min: 1,
    doc: 'longest live top-N window in minutes; closed minutes kept in actor memory for it',
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
  clicksMaxBytes: {
    kind: 'int',
    env: 'ADAGG_CLICKS_MAX_BYTES',
    default: 0,
    docDefault: '0 (no stream-level bound)',
    min: 0,
    doc: 'hard size bound of the raw clicks stream, `discard: new` (when full, ingest answers 503; an unread click is never deleted). `0`: bounded by age (ADAGG_RAW_RETENTION_MS) and by the JetStream server\'s store (`max_file_store`), which refuses new writes the same way; JetStream reserves a set bound against that store, so size it to clicks/s × ~80 B × the retention',
  },
  dlqMaxBytes: {
    kind: 'int',
    env: 'ADAGG_DLQ_MAX_BYTES',
    default: 128 * 1024 ** 2,
    docDefault: '134217728 (128 MiB)',
    min: 1,
    doc: 'size bound of the dead-letter stream (`discard: old`: the oldest records go first); each record is at most ~5 KB',
  },
  countTtlMs: { kind: 'int', env: 'ADAGG_COUNT_TTL_MS', default: 30 * DAY, docDefault: '30 days', min: 1, doc: 'final counts kept in Redis' },
  mailboxCapacity: {
    kind: 'int',
    env: 'ADAGG_MAILBOX_CAPACITY',
    default: 64,
    min: 1,
    doc: 'stream messages queued per shard actor (back-pressure beyond)',
  },
  tickIntervalMs: { kind: 'int', env: 'ADAGG_TICK_INTERVAL_MS', default: 500, min: 1, doc: 'actor tick (idle watermark, commits, lag)' },
} as const satisfies Record<string, OptionSpec>;
