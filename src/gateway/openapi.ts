import swagger from '@fastify/swagger';
import type { FastifyInstance } from 'fastify';
import { ErrorCode } from '../errors.ts';
import { httpStatusOf } from './error-status.ts';

declare module 'fastify' {
  interface FastifySchema {
    /**
     * The request body as /openapi.json shows it, for a route whose body fastify must not validate
     * (POST /v1/clicks: NDJSON, checked line by line). Same form as `body` (may use `content`).
     */
    openapiBody?: Record<string, unknown>;
  }
}

/** When each code reaches a client (docs/api.md, "Error codes"); the OpenAPI responses quote it. */
const WHEN: Partial<Record<ErrorCode, string>> = {
  [ErrorCode.BadParam]: 'a parameter or body field is missing or malformed (the message names it)',
  [ErrorCode.RangeTooLarge]: 'the range is longer than allowed (ADAGG_MAX_QUERY_MINUTES; 24 h for query jobs)',
  [ErrorCode.FilterNotPreaggregated]: 'the filter is not a configured dimension or cube (e.g. user_id); use POST /v1/queries',
  [ErrorCode.NoValidClicks]: 'the body holds no valid click (the reply still lists every rejected line)',
  [ErrorCode.BodyTooLarge]: 'the body is over ADAGG_MAX_BODY_BYTES',
  [ErrorCode.TooManyLines]: 'more clicks than ADAGG_MAX_LINES',
  [ErrorCode.UnsupportedMediaType]: 'a content type other than NDJSON, JSON or text',
  [ErrorCode.NotFound]: 'no such route, file, or an unknown or expired query job',
  [ErrorCode.TooManyJobs]: 'the most query jobs are kept and none has finished',
  [ErrorCode.ScanFailed]: 'the gateway is shutting down (a job that fails carries it in error.code)',
  [ErrorCode.PublishFailed]: 'JetStream did not acknowledge the clicks; retry the same request (never double counts)',
  [ErrorCode.ShardUnavailable]: 'no owner of the shard answered (restarting or moving); retry',
  [ErrorCode.MailboxFull]: 'the shard actor is over its mailbox capacity; retry',
  [ErrorCode.Internal]: 'a bug; logged with details',
  [ErrorCode.BadEncoding]: 'the body (or a compressed body) is not valid UTF-8 / not valid gzip or deflate',
  [ErrorCode.NatsUnavailable]: 'NATS is unreachable; the clicks were not stored (answered within ADAGG_PUBLISH_TIMEOUT_MS); retry',
  [ErrorCode.RedisUnavailable]: 'Redis did not answer within ADAGG_REDIS_COMMAND_TIMEOUT_MS; retry',
  [ErrorCode.JobQuota]: 'the token has ADAGG_JOB_QUOTA_PER_TOKEN jobs queued or running',
  [ErrorCode.JobCancelled]: 'the job was cancelled (DELETE /v1/queries/{id})',
  [ErrorCode.RateLimited]: 'too many heavy queries (windows of ADAGG_HEAVY_QUERY_MINUTES or more) for this token; see Retry-After',
  [ErrorCode.TooManySubscriptions]: 'over ADAGG_WS_MAX_SUBSCRIPTIONS on the socket or ADAGG_WS_MAX_SPECS_TOTAL on the gateway',
  [ErrorCode.TooManyConnections]: 'over ADAGG_MAX_CONNECTIONS_PER_CLIENT for this address or ADAGG_MAX_CONNECTIONS in all',
  [ErrorCode.RequestTimeout]: 'headers or body not received within ADAGG_HEADERS_TIMEOUT_MS / ADAGG_REQUEST_TIMEOUT_MS',
  [ErrorCode.UriTooLong]: 'the URL or a path parameter is longer than the router accepts',
  [ErrorCode.HeadersTooLarge]: 'the request headers are larger than the server accepts',
  [ErrorCode.UnknownRule]: 'no risk rule of that name was ever published (ADAGG_RISK_RULES)',
  [ErrorCode.WindowBeyondHorizon]: 'the window is longer than the correction horizon (ADAGG_CORRECTION_HORIZON_MS), beyond which the actors keep no clicks',
  [ErrorCode.NoReconciliation]: 'no reconciliation report is stored for that day (adagg reconcile, ADAGG_RECONCILE_AT)',
};

/** The body of every error. */
export const errorBodySchema = {
  type: 'object',
  required: ['code', 'error'],
  properties: {
    code: { type: 'string', description: 'stable ADAGG_E_... code: match on it, never on the text' },
    error: { type: 'string', description: 'human-readable message' },
  },
} as const;

/**
 * Route `response` entries for the error codes a route can answer, one per HTTP status, whose
 * description names each code. ADAGG_E_INTERNAL (500) is always included.
 */
export function errorResponses(codes: readonly ErrorCode[], body: Record<string, unknown> = errorBodySchema): Record<number, Record<string, unknown>> {
  const byStatus = new Map<number, ErrorCode[]>();
  for (const code of [...codes, ErrorCode.Internal]) {
    const status = httpStatusOf(code);
    const list = byStatus.get(status) ?? [];
    if (!list.includes(code)) list.push(code);
    byStatus.set(status, list);
  }
  const out: Record<number, Record<string, unknown>> = {};
  for (const [status, list] of [...byStatus].sort((a, b) => a[0] - b[0])) {
    out[status] = { ...body, description: list.map((c) => `${c}: ${WHEN[c] ?? c}`).join('; ') };
  }
  return out;
}

async function openApi(app: FastifyInstance): Promise<void> {
  await app.register(swagger, {
    transform: ({ schema, url }) => {
      if (schema?.openapiBody === undefined) return { schema, url };
      const { openapiBody, ...rest } = schema;
      return { schema: { ...rest, body: openapiBody }, url };
    },
    openapi: {
      openapi: '3.0.3',
      info: {
        title: 'adagg',
        version: '0.1.0',
        description:
          'Real-time exactly-once ad-click aggregator. Every error body is `{"code": "...", "error": "..."}`: match on `code`, never on the text. ' +
          'Any request may also get, before it reaches a route: 503 ADAGG_E_TOO_MANY_CONNECTIONS (connection caps), 408 ADAGG_E_REQUEST_TIMEOUT ' +
          '(slow headers or body), 414 ADAGG_E_URI_TOO_LONG, 431 ADAGG_E_HEADERS_TOO_LARGE, 400 ADAGG_E_BAD_PARAM (a malformed request).',
      },
      tags: [
        { name: 'ingest', description: 'click ingestion' },
        { name: 'queries', description: 'counts and rankings' },
        { name: 'jobs', description: 'query jobs over the raw stream' },
        { name: 'live', description: 'WebSocket feeds' },
        { name: 'ops', description: 'health, metrics, status' },
        { name: 'history', description: 'reconciliation of the raw archive with the stored counts' },
        { name: 'dashboard', description: 'the live dashboard' },
      ],
    },
  });
  app.get(
    '/openapi.json',
    { schema: { summary: 'This OpenAPI document', tags: ['ops'], response: { 200: { description: 'the OpenAPI 3 document', type: 'object' } } } },
    async () => app.swagger(),
  );
}

/**
 * The OpenAPI document of every route registered after it, served at `GET /openapi.json` (no
 * auth). Not encapsulated, so that @fastify/swagger sees the routes of sibling plugins: register
 * it before them (src/gateway/server.ts).
 */
export const openApiRoutes: (app: FastifyInstance) => Promise<void> = Object.assign(openApi, {
  [Symbol.for('skip-override')]: true,
  [Symbol.for('fastify.display-name')]: 'adagg-openapi',
});
