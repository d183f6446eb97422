import type { FastifyInstance } from 'fastify';
import { AdaggError, ErrorCode } from '../../errors.ts';
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

/**
 * Query jobs over the raw stream, for filters the actors do not pre-aggregate:
 * - `POST /v1/queries` `{kind: "aggregated_count", ad_id, from, to, filter}` or
 *   `{kind: "popular_ads", count, from, to, filter}` → 202 `{id, status: "queued", links: {self}}`;
 * - `GET /v1/queries/{id}` → `{id, kind, status, progress, result, error, created_at, started_at, finished_at, links}`,
 *   404 ADAGG_E_NOT_FOUND for an unknown (or expired) id.
 */
export function queryJobRoutes(app: FastifyInstance, jobs: QueryJobs): void {
  app.post('/v1/queries', async (req, reply) => {
    const view = jobs.submit(jobs.parse(jsonBody(req.body)));
    return reply.code(202).header('location', view.links.self).send({ id: view.id, status: view.status, links: view.links });
  });

  app.get<{ Params: { id: string } }>('/v1/queries/:id', async (req) => {
    const view = jobs.get(req.params.id);
    if (!view) {
      throw new AdaggError(ErrorCode.NotFound, `no query job ${req.params.id} (finished jobs are kept for ${jobs.limits.finishedJobTtlMs / 1000} s)`);
    }
    return view;
  });
}
