import type { FastifyInstance, FastifyRequest, FastifySchema } from 'fastify';
import { AdaggError, ErrorCode } from '../../errors.ts';
import { errorResponses } from '../openapi.ts';
import { ANONYMOUS, principalOf } from '../principal.ts';
import type { JobReader, JobSubmitter, QueryJobs } from '../query-jobs.ts';

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
    summary: 'Start a query job (DuckDB over the raw archive, and a scan of the raw stream\'s tail) for a filter that is not pre-aggregated',
    tags: ['jobs'],
    body: jobs.bodySchema(),
    response: {
      202: {
        description: 'queued; poll links.self (also in the Location header)',
        type: 'object',
        properties: { id: { type: 'string' }, status: { type: 'string', enum: ['queued'] }, links: jobLinks },
      },
      ...errorResponses([ErrorCode.BadParam, ErrorCode.RangeTooLarge, ErrorCode.BodyTooLarge, ErrorCode.TooManyJobs, ErrorCode.JobQuota, ErrorCode.ScanFailed]),
    },
  };
}

const JOB_STATES = ['queued', 'running', 'done', 'failed', 'cancelled'];
const jobParams = { type: 'object', required: ['id'], properties: { id: { type: 'string', description: 'the job id (q_...)' } } };
/** The fields of a job both the job and the list show (the job adds its result and error). */
const jobSummaryProperties = {
  id: { type: 'string' },
  kind: { type: 'string', enum: ['aggregated_count', 'popular_ads'] },
  status: { type: 'string', enum: JOB_STATES },
  progress: { type: 'object', additionalProperties: { type: 'number' } },
  created_at: { type: 'string' },
  started_at: { type: 'string', nullable: true },
  finished_at: { type: 'string', nullable: true },
  links: jobLinks,
};

const JOB_SCHEMA: FastifySchema = {
  summary: 'A query job: status, progress, and its result once done',
  tags: ['jobs'],
  params: jobParams,
  response: {
    200: {
      description:
        'status queued | running | done | failed | cancelled; progress {scanned_messages, total_messages, scanned_clicks, matched_clicks, archive_files, archive_clicks, fraction}; result (done) in the shape of the matching REST query (an aggregated_count over more than 1440 minutes lists only the minutes with clicks); error {code, error} (failed: ADAGG_E_SCAN_LIMIT when the scan would read, count or hold more than the job limits, ADAGG_E_SCAN_FAILED when the scan failed or the gateway shut down; cancelled: ADAGG_E_JOB_CANCELLED). Only the token that submitted the job (or an admin) sees it: 404 for anyone else.',
      type: 'object',
      properties: {
        ...jobSummaryProperties,
        result: { type: 'object', nullable: true, additionalProperties: true },
        error: {
          type: 'object',
          nullable: true,
          properties: { code: { type: 'string', enum: [ErrorCode.ScanLimit, ErrorCode.ScanFailed, ErrorCode.JobCancelled, ErrorCode.Internal] }, error: { type: 'string' } },
        },
      },
    },
    ...errorResponses([ErrorCode.NotFound]),
  },
};

const LIST_SCHEMA: FastifySchema = {
  summary: "The caller's query jobs (an admin's: every job), oldest first, without results",
  tags: ['jobs'],
  response: {
    200: {
      description: 'jobs: {id, kind, status, progress, created_at, started_at, finished_at, links} each; read a result with GET links.self',
      type: 'object',
      properties: {
        jobs: {
          type: 'array',
          items: { type: 'object', properties: jobSummaryProperties },
        },
      },
    },
  },
};

const CANCEL_SCHEMA: FastifySchema = {
  summary: 'Cancel a queued or running query job (status cancelled), or delete a finished one and its result',
  tags: ['jobs'],
  params: jobParams,
  response: {
    200: {
      description: 'the job as it ended (a running scan is aborted and its slot freed at once)',
      type: 'object',
      additionalProperties: true,
    },
    ...errorResponses([ErrorCode.NotFound]),
  },
};

/** The caller as a job reader: an admin sees every job. */
function readerOf(req: FastifyRequest): JobReader {
  const p = principalOf(req);
  return { name: p.name, admin: p.scopes.has('admin') };
}

/**
 * The caller as a job submitter. Without authentication everyone is `anonymous`; their quota and
 * queue turn are then per client address, so one anonymous client cannot take everyone's quota.
 */
function submitterOf(req: FastifyRequest): JobSubmitter {
  const p = principalOf(req);
  return { owner: p.name, client: p === ANONYMOUS ? `${p.name}@${req.ip}` : `token:${p.name}` };
}

/**
 * Query jobs over the raw stream, for filters the actors do not pre-aggregate:
 * - `POST /v1/queries` `{kind: "aggregated_count", ad_id, from, to, filter}` or
 *   `{kind: "popular_ads", count, from, to, filter}` → 202 `{id, status: "queued", links: {self}}`;
 * - `GET /v1/queries/{id}` → `{id, kind, status, progress, result, error, created_at, started_at, finished_at, links}`,
 *   404 ADAGG_E_NOT_FOUND for an unknown (or expired) id, or another token's job;
 * - `GET /v1/queries` → `{jobs: [...]}`, the caller's jobs without results;
 * - `DELETE /v1/queries/{id}` → the job, cancelled (queued or running) or deleted (finished).
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
    const view = jobs.submit(jobs.parse(sentBodies.get(req)), submitterOf(req));
    return reply.code(202).header('location', view.links.self).send({ id: view.id, status: view.status, links: view.links });
  });

  const notFound = (id: string): AdaggError =>
    new AdaggError(ErrorCode.NotFound, `no query job ${id} of yours (finished jobs are kept for ${jobs.limits.finishedJobTtlMs / 1000} s)`);

  app.get('/v1/queries', { schema: LIST_SCHEMA }, async (req) => ({ jobs: jobs.list(readerOf(req)) }));

  app.get<{ Params: { id: string } }>('/v1/queries/:id', { schema: JOB_SCHEMA }, async (req) => {
    const view = jobs.get(req.params.id, readerOf(req));
    if (!view) throw notFound(req.params.id);
    return view;
  });

  app.delete<{ Params: { id: string } }>('/v1/queries/:id', { schema: CANCEL_SCHEMA }, async (req) => {
    const view = jobs.cancel(req.params.id, readerOf(req));
    if (!view) throw notFound(req.params.id);
    return view;
  });
}
