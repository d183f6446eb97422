import type { FastifyInstance, FastifySchema } from 'fastify';
import { AdaggError, ErrorCode } from '../../errors.ts';
import { parseDay, type ReconcileReport } from '../../runtime/archive/reconcile.ts';
import { errorResponses } from '../openapi.ts';

/** Reads the stored report of a day (Redis `<prefix>:reconcile:<day>`), or undefined. */
export type ReconciliationSource = (day: string) => Promise<ReconcileReport | undefined>;

const mismatch = {
  type: 'object',
  properties: {
    ad_id: { type: 'string' },
    minute: { type: 'string', description: "the minute's start, ISO-8601 UTC" },
    shard: { type: 'integer' },
    archive: { type: 'integer', description: 'distinct clicks in the raw archive' },
    stored: { type: 'integer', description: 'final count in Redis, valid plus invalid' },
    diff: { type: 'integer', description: 'stored − archive' },
  },
} as const;

const schema: FastifySchema = {
  summary: 'The stored reconciliation report of one UTC day',
  description:
    'What the last `adagg reconcile --day DAY` (or the daily run, ADAGG_RECONCILE_AT) found: distinct clicks per ad-minute in the raw archive against the stored final counts, for the minutes each shard had closed. At most 1000 mismatch rows (`truncated` beyond), largest |diff| first.',
  tags: ['history'],
  params: {
    type: 'object',
    required: ['day'],
    properties: { day: { type: 'string', description: 'UTC date YYYY-MM-DD' } },
  },
  response: {
    200: {
      description: 'the report',
      type: 'object',
      properties: {
        day: { type: 'string' },
        ran_at: { type: 'string', description: 'when the run started, ISO-8601' },
        duration_ms: { type: 'integer' },
        shards: { type: 'integer' },
        files: { type: 'integer', description: 'raw archive files read' },
        ads: { type: 'integer' },
        checked_minutes: { type: 'integer', description: 'ad-minutes compared' },
        pending_minutes: { type: 'integer', description: 'ad-minutes whose shard had not closed the minute' },
        clicks: { type: 'integer', description: 'distinct archive clicks in the compared ad-minutes' },
        mismatches: { type: 'integer' },
        rows: { type: 'array', items: mismatch },
        truncated: { type: 'boolean' },
      },
    },
    ...errorResponses([ErrorCode.BadParam, ErrorCode.NoReconciliation, ErrorCode.RedisUnavailable]),
  },
};

/** `GET /v1/reconciliations/{day}`: the stored report (issue 10), 404 ADAGG_E_NO_RECONCILIATION when none. */
export function reconciliationRoutes(app: FastifyInstance, reports: ReconciliationSource): void {
  app.get<{ Params: { day: string } }>('/v1/reconciliations/:day', { schema }, async (req) => {
    const { day } = req.params;
    parseDay(day);
    const report = await reports(day);
    if (report === undefined) {
      throw new AdaggError(ErrorCode.NoReconciliation, `no reconciliation report for ${day}: run 'adagg reconcile --day ${day}'`, { details: { day } });
    }
    return report;
  });
}
