import type { FastifyInstance } from 'fastify';
import { AdaggError, ErrorCode } from '../../errors.ts';
import { parseBody } from '../../ingest/body.ts';
import type { ClickIngest } from '../../ingest/click-ingest.ts';

/**
 * POST /v1/clicks: NDJSON or a JSON array. Replies after JetStream acknowledged the accepted clicks
 * with `{accepted, rejected: [{line, code, error}]}`; 400 when nothing in the body is usable.
 */
export function clickRoutes(app: FastifyInstance, ingest: ClickIngest, maxLines: number): void {
  app.post('/v1/clicks', async (req, reply) => {
    const body = typeof req.body === 'string' ? req.body : '';
    const items = parseBody(body, req.headers['content-type'], maxLines);
    if (items.length === 0) throw new AdaggError(ErrorCode.NoValidClicks, 'body holds no clicks');
    const res = await ingest.ingest(items, 'http');
    if (res.accepted === 0) {
      return reply.code(400).send({ code: ErrorCode.NoValidClicks, error: 'no click in the body is valid', ...res });
    }
    return res;
  });
}
