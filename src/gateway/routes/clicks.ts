import type { FastifyInstance, FastifySchema } from 'fastify';
import { AdaggError, ErrorCode } from '../../errors.ts';
import { parseBody } from '../../ingest/body.ts';
import type { ClickIngest } from '../../ingest/click-ingest.ts';
import { AD_ID_SYNTAX, REJECT_CODES } from '../../model/validate.ts';
import { errorResponses, errorBodySchema } from '../openapi.ts';

const rejected = {
  type: 'array',
  description: 'each refused line: line is 1-based (NDJSON line, blank lines counted; JSON array index + 1)',
  items: {
    type: 'object',
    properties: {
      line: { type: 'integer' },
      code: {
        type: 'string',
        enum: [...REJECT_CODES],
        description: '`bad_encoding`: the line is not valid UTF-8, or a field holds a lone surrogate (`\\ud800`); `too_deep`: JSON nested deeper than 32 levels',
      },
      error: { type: 'string' },
    },
  },
};

/** A click, for the documentation: the body is checked line by line by adagg, not by a schema. */
const click = {
  type: 'object',
  required: ['click_id', 'ad_id', 'ts'],
  properties: {
    click_id: { type: 'string', description: '1-128 chars; the dedupe key' },
    ad_id: { type: 'string', description: AD_ID_SYNTAX },
    ts: { description: 'epoch milliseconds (number or digits) or strict ISO-8601 (calendar-checked, no zone = UTC); whole, non-negative' },
    user_id: { type: 'string', description: '1-256 chars' },
    ip: { type: 'string', description: 'an IPv4 or IPv6 address' },
    country: { type: 'string', description: '2-3 letters, upper-cased' },
  },
  additionalProperties: { type: 'string', description: 'kept as an attribute (e.g. device)' },
};

/** The route's schema: documentation only (see `openapiBody`); the body is checked line by line. */
function clickSchema(maxLines: number): FastifySchema {
  return {
    summary: 'Ingest clicks',
    description:
      'NDJSON (application/x-ndjson, one click per line; also text/plain or no content type) or JSON (application/json: an array of clicks or one click), optionally with Content-Encoding gzip or deflate (ADAGG_MAX_BODY_BYTES applies after inflation). Good lines beside bad ones are always accepted; the reply comes after JetStream acknowledged every accepted click. While NATS is unreachable the reply is 503 within ADAGG_PUBLISH_TIMEOUT_MS. A retried request never double counts.',
    tags: ['ingest'],
    // Documentation only (/openapi.json), never validated: adagg checks every line itself, each
    // bad one getting its own code in `rejected`.
    openapiBody: {
      content: {
        'application/x-ndjson': { schema: { description: `up to ${maxLines} clicks, one JSON object per line`, examples: ['{"click_id":"c1","ad_id":"ad001","ts":1763782560000}'] } },
        'application/json': { schema: { description: `an array of up to ${maxLines} clicks, or one click`, anyOf: [click, { type: 'array', items: click }] } },
      },
    },
    response: {
      200: {
        description: 'the accepted count and every rejected line',
        type: 'object',
        properties: {
          accepted: { type: 'integer', description: 'valid clicks stored, including duplicates' },
          duplicates: { type: 'integer', description: 'present when not 0: of accepted, clicks JetStream already held (an identical batch was ingested before), not counted again' },
          rejected,
        },
      },
      ...errorResponses([ErrorCode.NoValidClicks, ErrorCode.BadEncoding, ErrorCode.BodyTooLarge, ErrorCode.TooManyLines, ErrorCode.UnsupportedMediaType, ErrorCode.HeadersTooLarge, ErrorCode.PublishFailed, ErrorCode.NatsUnavailable], {
        ...errorBodySchema,
        properties: { ...errorBodySchema.properties, accepted: { type: 'integer', description: `${ErrorCode.NoValidClicks} only` }, rejected },
      }),
    },
  };
}

/**
 * POST /v1/clicks: NDJSON or a JSON array. Replies after JetStream acknowledged the accepted clicks
 * with `{accepted, rejected: [{line, code, error}]}`; 400 when nothing in the body is usable.
 */
export function clickRoutes(app: FastifyInstance, ingest: ClickIngest, maxLines: number): void {
  // The body as bytes: each NDJSON line's UTF-8 is checked on its own (body.ts).
  app.post('/v1/clicks', { schema: clickSchema(maxLines), config: { adaggBodyBytes: true } }, async (req, reply) => {
    const body = Buffer.isBuffer(req.body) || typeof req.body === 'string' ? req.body : '';
    const items = parseBody(body, req.headers['content-type'], maxLines);
    if (items.length === 0) throw new AdaggError(ErrorCode.NoValidClicks, 'body holds no clicks');
    const res = await ingest.ingest(items, 'http');
    if (res.accepted === 0) {
      return reply.code(400).send({ code: ErrorCode.NoValidClicks, error: 'no click in the body is valid', accepted: res.accepted, rejected: res.rejected });
    }
    // `duplicates` only when there are some: the reply of a first ingest keeps its earlier shape.
    return res.duplicates > 0 ? res : { accepted: res.accepted, rejected: res.rejected };
  });
}
