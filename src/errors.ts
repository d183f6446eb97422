/**
 * Base of every typed adagg error. `code` is stable (`ADAGG_E_...`) and is what callers match on,
 * never the message text. The gateway maps codes to HTTP statuses (src/gateway/error-status.ts).
 */
export class AdaggError extends Error {
  readonly code: string;
  readonly details: Record<string, unknown> | undefined;
  constructor(code: string, message: string, opts: { cause?: unknown; details?: Record<string, unknown> } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = new.target.name;
    this.code = code;
    this.details = opts.details;
  }
}

/** Stable error codes. docs/api.md lists them with their HTTP statuses. */
export const ErrorCode = {
  BadOption: 'ADAGG_E_BAD_OPTION',
  BadParam: 'ADAGG_E_BAD_PARAM',
  RangeTooLarge: 'ADAGG_E_RANGE_TOO_LARGE',
  FilterNotPreaggregated: 'ADAGG_E_FILTER_NOT_PREAGGREGATED',
  BodyTooLarge: 'ADAGG_E_BODY_TOO_LARGE',
  TooManyLines: 'ADAGG_E_TOO_MANY_LINES',
  NoValidClicks: 'ADAGG_E_NO_VALID_CLICKS',
  UnsupportedMediaType: 'ADAGG_E_UNSUPPORTED_MEDIA_TYPE',
  PublishFailed: 'ADAGG_E_PUBLISH_FAILED',
  ShardUnavailable: 'ADAGG_E_SHARD_UNAVAILABLE',
  Fenced: 'ADAGG_E_FENCED',
  PlacementConflict: 'ADAGG_E_PLACEMENT_CONFLICT',
  UnknownShard: 'ADAGG_E_UNKNOWN_SHARD',
  UnknownNode: 'ADAGG_E_UNKNOWN_NODE',
  NodeNotAlive: 'ADAGG_E_NODE_NOT_ALIVE',
  MailboxFull: 'ADAGG_E_MAILBOX_FULL',
  MailboxClosed: 'ADAGG_E_MAILBOX_CLOSED',
  IllegalTransition: 'ADAGG_E_ILLEGAL_TRANSITION',
  AlreadyStarted: 'ADAGG_E_ALREADY_STARTED',
  SnapshotCorrupt: 'ADAGG_E_SNAPSHOT_CORRUPT',
  BatchCorrupt: 'ADAGG_E_BATCH_CORRUPT',
  ServerStart: 'ADAGG_E_SERVER_START',
  StreamMismatch: 'ADAGG_E_STREAM_MISMATCH',
  FeedStalled: 'ADAGG_E_FEED_STALLED',
  NotFound: 'ADAGG_E_NOT_FOUND',
  TooManyJobs: 'ADAGG_E_TOO_MANY_JOBS',
  ScanLimit: 'ADAGG_E_SCAN_LIMIT',
  ScanFailed: 'ADAGG_E_SCAN_FAILED',
  Internal: 'ADAGG_E_INTERNAL',
  // Issue 11: authentication, bounds and hostile input.
  Unauthenticated: 'ADAGG_E_UNAUTHENTICATED',
  Forbidden: 'ADAGG_E_FORBIDDEN',
  OriginNotAllowed: 'ADAGG_E_ORIGIN_NOT_ALLOWED',
  TooManyConnections: 'ADAGG_E_TOO_MANY_CONNECTIONS',
  RateLimited: 'ADAGG_E_RATE_LIMITED',
  TooManySubscriptions: 'ADAGG_E_TOO_MANY_SUBSCRIPTIONS',
  JobQuota: 'ADAGG_E_JOB_QUOTA',
  JobCancelled: 'ADAGG_E_JOB_CANCELLED',
  BadEncoding: 'ADAGG_E_BAD_ENCODING',
  UriTooLong: 'ADAGG_E_URI_TOO_LONG',
  HeadersTooLarge: 'ADAGG_E_HEADERS_TOO_LARGE',
  RequestTimeout: 'ADAGG_E_REQUEST_TIMEOUT',
  NatsUnavailable: 'ADAGG_E_NATS_UNAVAILABLE',
  RedisUnavailable: 'ADAGG_E_REDIS_UNAVAILABLE',
  InstanceLocked: 'ADAGG_E_INSTANCE_LOCKED',
  // Issue 14: invalid-click filtering.
  /** The ADAGG_RISK_RULES file cannot be read or is not a valid rules document (refused at start; a bad reload keeps the old rules). */
  RiskRulesInvalid: 'ADAGG_E_RISK_RULES',
  // Issue 14: invalid-click filtering (gateway queries).
  UnknownRule: 'ADAGG_E_UNKNOWN_RULE',
  WindowBeyondHorizon: 'ADAGG_E_WINDOW_BEYOND_HORIZON',
  // Issue 10: reconciliation.
  /** A shard's archiver has not archived every message its actor applied; `adagg reconcile` waited --wait-ms for it. */
  ArchiveBehind: 'ADAGG_E_ARCHIVE_BEHIND',
  /** No reconciliation report is stored for that day. */
  NoReconciliation: 'ADAGG_E_NO_RECONCILIATION',
  // Issue 10: the raw archive (logged by archivers, never an HTTP answer).
  /** A file the archiver's last commit names is neither at its final path nor staged: its range is archived again. */
  ArchiveFileMissing: 'ADAGG_E_ARCHIVE_FILE_MISSING',
  /** Stream retention removed messages before they were archived (ADAGG_RAW_RETENTION_MS too short for an archiver outage). */
  ArchiveGap: 'ADAGG_E_ARCHIVE_GAP',
  /** An archiver's DuckDB buffer was used after its close (a flush that gave up at a stop; never an HTTP answer). */
  ArchiveClosed: 'ADAGG_E_ARCHIVE_CLOSED',
  // Issue 10: recompute, audit log, backfill (CLI errors, never an HTTP answer).
  /** Recompute refused: the deployment has invalid-click rules, whose rules and verdicts are not archived. */
  RecomputeRisk: 'ADAGG_E_RECOMPUTE_RISK',
  /** Recompute --apply: a shard's stored fields kept moving under the compare-and-set step (another recompute or backfill ran). */
  RecomputeConflict: 'ADAGG_E_RECOMPUTE_CONFLICT',
  /** A backfill line is not a valid click (details: line number); valid lines beside it are kept. */
  BackfillBadLine: 'ADAGG_E_BACKFILL_BAD_LINE',
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

export class OptionError extends AdaggError {
  constructor(option: string, message: string) {
    super(ErrorCode.BadOption, `option ${option}: ${message}`, { details: { option } });
  }
}
