import { AdaggError, ErrorCode } from '../errors.ts';

const STATUS: Partial<Record<string, number>> = {
  [ErrorCode.BadParam]: 400,
  [ErrorCode.RangeTooLarge]: 400,
  [ErrorCode.FilterNotPreaggregated]: 400,
  [ErrorCode.NoValidClicks]: 400,
  [ErrorCode.BodyTooLarge]: 413,
  [ErrorCode.TooManyLines]: 413,
  [ErrorCode.UnsupportedMediaType]: 415,
  [ErrorCode.NotFound]: 404,
  [ErrorCode.TooManyJobs]: 429,
  [ErrorCode.ScanLimit]: 422,
  [ErrorCode.ScanFailed]: 503,
  [ErrorCode.PlacementConflict]: 409,
  [ErrorCode.UnknownShard]: 404,
  [ErrorCode.UnknownNode]: 404,
  [ErrorCode.NodeNotAlive]: 409,
  [ErrorCode.PublishFailed]: 503,
  [ErrorCode.ShardUnavailable]: 503,
  [ErrorCode.MailboxFull]: 503,
  [ErrorCode.Unauthenticated]: 401,
  [ErrorCode.Forbidden]: 403,
  [ErrorCode.OriginNotAllowed]: 403,
  [ErrorCode.TooManyConnections]: 503,
  [ErrorCode.RateLimited]: 429,
  [ErrorCode.TooManySubscriptions]: 429,
  [ErrorCode.JobQuota]: 429,
  [ErrorCode.JobCancelled]: 409,
  [ErrorCode.BadEncoding]: 400,
  [ErrorCode.UriTooLong]: 414,
  [ErrorCode.HeadersTooLarge]: 431,
  [ErrorCode.RequestTimeout]: 408,
  [ErrorCode.NatsUnavailable]: 503,
  [ErrorCode.RedisUnavailable]: 503,
  [ErrorCode.UnknownRule]: 404,
  [ErrorCode.WindowBeyondHorizon]: 400,
  [ErrorCode.NoReconciliation]: 404,
};

/** HTTP status of an error code (500 for anything unexpected). */
export function httpStatusOf(code: string): number {
  return STATUS[code] ?? 500;
}

/** Normalises any thrown value (including fastify's own errors) to `{status, code, error}`. */
export function toHttpError(err: unknown): { status: number; code: string; error: string } {
  if (err instanceof AdaggError) return { status: httpStatusOf(err.code), code: err.code, error: err.message };
  const e = err as { code?: string; statusCode?: number; message?: string };
  if (e?.code === 'FST_ERR_CTP_BODY_TOO_LARGE' || e?.statusCode === 413) {
    return { status: 413, code: ErrorCode.BodyTooLarge, error: 'request body is larger than ADAGG_MAX_BODY_BYTES' };
  }
  if (e?.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE' || e?.statusCode === 415) {
    return { status: 415, code: ErrorCode.UnsupportedMediaType, error: e.message ?? 'unsupported media type' };
  }
  // fastify's own 4xx (the router's 414 for an over-long path parameter, say) keep their status
  // and get the code that names it.
  const byStatus: Partial<Record<number, string>> = { 408: ErrorCode.RequestTimeout, 414: ErrorCode.UriTooLong, 431: ErrorCode.HeadersTooLarge };
  if (typeof e?.statusCode === 'number' && e.statusCode >= 400 && e.statusCode < 500) {
    return { status: e.statusCode, code: byStatus[e.statusCode] ?? ErrorCode.BadParam, error: e.message ?? 'bad request' };
  }
  return { status: 500, code: ErrorCode.Internal, error: 'internal error' };
}
