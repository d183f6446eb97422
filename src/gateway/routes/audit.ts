import type { FastifyInstance, FastifySchema } from 'fastify';
import { AdaggError, ErrorCode } from '../../errors.ts';
import { readAudit } from '../../runtime/archive/audit-log.ts';
import { errorResponses } from '../openapi.ts';

/** Most records one answer holds (the newest of the range). */
const MAX_RECORDS = 100;
/** Most changes listed per record (`changes_total` counts them all). */
const MAX_CHANGES = 1000;

const change = {
  type: 'object',
  properties: {
    ad_id: { type: 'string' },
    minute: { type: 'string', description: "the minute's start, ISO-8601 UTC" },
    dim: { type: ['string', 'null'], description: "null: the ad's total" },
    value: { type: ['string', 'null'] },
    old: { type: 'integer' },
    new: { type: 'integer' },
  },
} as const;

const record = {
  type: 'object',
  properties: {
    id: { type: 'string' },
    at: { type: 'string', description: 'when the change was written, ISO-8601' },
    by: { type: 'string' },
    reason: { type: 'string' },
    command: { type: 'string' },
    cause: { type: 'string', enum: ['recompute', 'backfill'] },
    from: { type: 'string' },
    to: { type: 'string' },
    ads: { type: ['array', 'null'], items: { type: 'string' } },
    changes: { type: 'array', items: change },
    changes_total: { type: 'integer' },
    changes_truncated: { type: 'boolean' },
  },
} as const;

const schema: FastifySchema = {
  summary: 'The audit log of changes to sealed minutes',
  description: `Records of \`adagg recompute --apply\` and \`adagg backfill\` runs made in [from, to) (ISO-8601 or epoch ms; default: all), oldest first: who, when, why, the command and each changed field (old → new). At most ${MAX_RECORDS} records (the newest; \`truncated\` beyond) and ${MAX_CHANGES} changes per record.`,
  tags: ['history'],
  querystring: {
    type: 'object',
    properties: { from: { type: 'string' }, to: { type: 'string' } },
  },
  response: {
    200: {
      description: 'the records',
      type: 'object',
      properties: { records: { type: 'array', items: record }, truncated: { type: 'boolean' } },
    },
    ...errorResponses([ErrorCode.BadParam]),
  },
};

function timeParam(name: string, v: string | undefined): number | undefined {
  if (v === undefined || v === '') return undefined;
  const ms = /^\d+$/.test(v) ? Number(v) : Date.parse(v);
  if (!Number.isSafeInteger(ms)) throw new AdaggError(ErrorCode.BadParam, `${name} must be an ISO-8601 time or epoch ms`, { details: { param: name } });
  return ms;
}

/** `GET /v1/audit?from=&to=`: the audit log files under `<archiveDir>/audit` (issue 10), bounded. */
export function auditRoutes(app: FastifyInstance, archiveDir: string): void {
  app.get<{ Querystring: { from?: string; to?: string } }>('/v1/audit', { schema }, async (req) =>
    readAudit(archiveDir, { fromMs: timeParam('from', req.query.from), toMs: timeParam('to', req.query.to), limit: MAX_RECORDS, maxChanges: MAX_CHANGES }),
  );
}
