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
          'Real-time exactly-once ad-click aggregator. Every error body is `{"code": "...", "error": "..."}`: match on `code`, never on the text.',
      },
      tags: [
        { name: 'ingest', description: 'click ingestion' },
        { name: 'queries', description: 'counts and rankings' },
        { name: 'jobs', description: 'query jobs over the raw stream' },
        { name: 'live', description: 'WebSocket feeds' },
        { name: 'ops', description: 'health, metrics, status' },
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
