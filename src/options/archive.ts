/** The raw archive (docs/history.md#raw-archive): where, whether, and how often files are written. Part of the one options table (src/options.ts). */
import type { OptionSpec } from './spec.ts';

export const ARCHIVE_OPTIONS = {
  archive: {
    kind: 'string',
    env: 'ADAGG_ARCHIVE',
    default: 'on',
    pattern: /^(on|off)$/,
    doc: 'raw archive: each shard\'s clicks (and the dead letters) written exactly once to Parquet files under `ADAGG_ARCHIVE_DIR` by an archiver beside the shard actor; `off`: none',
  },
  archiveDir: {
    kind: 'string',
    env: 'ADAGG_ARCHIVE_DIR',
    default: './data/archive',
    doc: 'folder of the archive (Hive layout `raw/date=…/hour=…/`); a relative path is taken from the working directory. Nodes that share shards must share it',
  },
  archiveFlushMs: {
    kind: 'int',
    env: 'ADAGG_ARCHIVE_FLUSH_MS',
    default: 300_000,
    docDefault: '5 min',
    min: 1,
    doc: 'an archiver writes its buffered clicks to files (and records its progress) at least this often',
  },
  archiveFileClicks: {
    kind: 'int',
    env: 'ADAGG_ARCHIVE_FILE_CLICKS',
    default: 1_000_000,
    min: 1,
    doc: 'an archiver writes its files once it buffers this many clicks (memory: about 100 bytes each)',
  },
  archiveStopMs: {
    kind: 'int',
    env: 'ADAGG_ARCHIVE_STOP_MS',
    default: 5000,
    min: 1,
    doc: 'an archiver\'s final flush at a stop gives up after this long (Redis or NATS unreachable): its buffer is dropped and the next owner archives that range (nothing lost or doubled); keeps a stop within the worker close deadline',
  },
  hotRetentionMs: {
    kind: 'int',
    env: 'ADAGG_HOT_RETENTION',
    default: 48 * 3_600_000,
    docDefault: '172800000 (48 h)',
    min: 1,
    doc: 'milliseconds: an hour of counts archived to Parquet (`agg/`, with `ADAGG_ARCHIVE=on`) is deleted from Redis once it ended this long ago; queries read it from the archive (never before it is archived)',
  },
  aggArchiveIntervalMs: {
    kind: 'int',
    env: 'ADAGG_AGG_ARCHIVE_INTERVAL_MS',
    default: 60_000,
    docDefault: '1 min',
    min: 1,
    doc: 'how often the aggregate archiver (one gateway of many, by a Redis lock) looks for hours every shard has sealed, archives them and evicts old ones',
  },
  reconcileAt: {
    kind: 'string',
    env: 'ADAGG_RECONCILE_AT',
    default: 'off',
    docDefault: 'off (none)',
    pattern: /^(off|([01]\d|2[0-3]):[0-5]\d)$/,
    doc: '`HH:MM` (UTC): once a day after that time, a gateway reconciles the previous UTC day (like `adagg reconcile`; one gateway of many, by a Redis lock) and stores the report; `off`: never',
  },
} as const satisfies Record<string, OptionSpec>;
