import type { FastifyInstance, FastifyRequest, FastifySchema } from 'fastify';
import { AdaggError, ErrorCode } from '../../errors.ts';
import { errorResponses } from '../openapi.ts';
import type { QueryJobs } from '../query-jobs.ts';

/** The body as JSON: the gateway hands bodies over as strings (its own parser); objects are accepted too. */
function jsonBody(body: unknown): unknown {
  if (typeof body !== 'string') return body ?? undefined;
  if (body.trim() === '') throw new AdaggError(ErrorCode.BadParam, 'body must be a JSON object', { details: { param: 'body' } });
  try {
    return JSON.parse(body) as unknown;
  } catch (err) {
    const msg = err instanceof Error ? err.message : String(err);
    throw new AdaggError(ErrorCode.BadParam, `body is not valid JSON: ${msg}`, { details: { param: 'body' } });
  }
}

/** Each request's body as the client sent it, parsed (see the preValidation hook). */
const sentBodies = new WeakMap<FastifyRequest, unknown>();

const jobLinks = { type: 'object', properties: { self: { type: 'string' } } };

function submitSchema(jobs: QueryJobs): FastifySchema {
  return {
    summary: 'Start a query job (a scan of the raw stream) for a filter that is not pre-aggregated',
    tags: ['jobs'],
    body: jobs.bodySchema(),
    response: {
      202: {
        description: 'queued; poll links.self (also in the Location header)',
        type: 'object',
        properties: { id: { type: 'string' }, status: { type: 'string', enum: ['queued'] }, links: jobLinks },
      },
      ...errorResponses([ErrorCode.BadParam, ErrorCode.RangeTooLarge, ErrorCode.BodyTooLarge, ErrorCode.TooManyJobs, ErrorCode.ScanFailed]),
    },
  };
}

const JOB_SCHEMA: FastifySchema = {
  summary: 'A query job: status, progress, and its result once done',
  tags: ['jobs'],
  params: { type: 'object', required: ['id'], properties: { id: { type: 'string', description: 'the job id (q_...)' } } },
  response: {
    200: {
      description:
        'status queued | running | done | failed; progress {scanned_messages, total_messages, scanned_clicks, matched_clicks, fraction}; result (done) in the shape of the matching REST query; error {code, error} (failed: ADAGG_E_SCAN_LIMIT when the scan would read more than the job limit, ADAGG_E_SCAN_FAILED when the scan failed or the gateway shut down)',
      type: 'object',
      properties: {
        id: { type: 'string' },
        kind: { type: 'string', enum: ['aggregated_count', 'popular_ads'] },
        status: { type: 'string', enum: ['queued', 'running', 'done', 'failed'] },
        progress: { type: 'object', additionalProperties: { type: 'number' } },
        result: { type: 'object', nullable: true, additionalProperties: true },
        error: {
          type: 'object',
          nullable: true,
          properties: { code: { type: 'string', enum: [ErrorCode.ScanLimit, ErrorCode.ScanFailed, ErrorCode.Internal] }, error: { type: 'string' } },
        },
        created_at: { type: 'string' },
        started_at: { type: 'string', nullable: true },
        finished_at: { type: 'string', nullable: true },
        links: jobLinks,
      },
    },
    ...errorResponses([ErrorCode.NotFound]),
  },
};

/**
 * Query jobs over the raw stream, for filters the actors do not pre-aggregate:
 * - `POST /v1/queries` `{kind: "aggregated_count", ad_id, from, to, filter}` or
 *   `{kind: "popular_ads", count, from, to, filter}` → 202 `{id, status: "queued", links: {self}}`;
 * - `GET /v1/queries/{id}` → `{id, kind, status, progress, result, error, created_at, started_at, finished_at, links}`,
 *   404 ADAGG_E_NOT_FOUND for an unknown (or expired) id.
 */
export function queryJobRoutes(app: FastifyInstance, jobs: QueryJobs): void {
  // The body arrives as a string (adaggHttp): parse it before validation so the schema checks the
  // JSON. Fastify's Ajv may coerce types while validating (its default `coerceTypes: 'array'`
  // makes a 7 a "7"), so the schema gets a copy and the job is built from the body as sent.
  const parseJson = async (req: FastifyRequest): Promise<void> => {
    const sent = jsonBody(req.body);
    sentBodies.set(req, sent);
    req.body = structuredClone(sent);
  };

  app.post('/v1/queries', { schema: submitSchema(jobs), preValidation: parseJson }, async (req, reply) => {
    const view = jobs.submit(jobs.parse(sentBodies.get(req)));
    return reply.code(202).header('location', view.links.self).send({ id: view.id, status: view.status, links: view.links });
  });

  app.get<{ Params: { id: string } }>('/v1/queries/:id', { schema: JOB_SCHEMA }, async (req) => {
    const view = jobs.get(req.params.id);
    if (!view) {
      throw new AdaggError(ErrorCode.NotFound, `no query job ${req.params.id} (finished jobs are kept for ${jobs.limits.finishedJobTtlMs / 1000} s)`);
    }
    return view;
  });
}
