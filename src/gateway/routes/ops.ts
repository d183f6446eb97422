import type { FastifyInstance } from 'fastify';
import type { Registry } from 'prom-client';
import { isoOf } from '../../model/time.ts';
import { errorResponses } from '../openapi.ts';
import type { QueryService } from '../query-service.ts';

/** Readiness checks with, for the failing ones, why they failed. */
export interface ReadinessResult {
  checks: Record<string, boolean>;
  reasons?: Record<string, string>;
}

/** The gateway's readiness: named checks (true: ready), optionally with reasons for failures. */
export interface Readiness {
  (): Promise<Record<string, boolean> | ReadinessResult>;
}

function isResult(r: Record<string, boolean> | ReadinessResult): r is ReadinessResult {
  return typeof (r as { checks?: unknown }).checks === 'object';
}

const readiness = {
  type: 'object',
  properties: {
    status: { type: 'string' },
    checks: { type: 'object', additionalProperties: { type: 'boolean' } },
    reasons: { type: 'object', additionalProperties: { type: 'string' } },
  },
};

/** Route schemas: documentation in /openapi.json (none of these routes takes parameters). */
const SCHEMAS = {
  healthz: {
    summary: 'The process is up',
    tags: ['ops'],
    response: { 200: { description: '{"status":"ok"}', type: 'object', properties: { status: { type: 'string' } } } },
  },
  readyz: {
    summary: 'NATS and Redis answer a round trip within ADAGG_READY_TIMEOUT_MS (and the actors run)',
    tags: ['ops'],
    response: {
      200: { description: 'ready', ...readiness },
      503: { description: 'not_ready: `checks` false for each failing dependency, `reasons` says why', ...readiness },
    },
  },
  metrics: {
    summary: 'Prometheus metrics',
    tags: ['ops'],
    produces: ['text/plain'],
    response: { 200: { description: 'Prometheus text format', type: 'string' } },
  },
  status: {
    summary: 'Per-shard state, owner, watermark and lag',
    tags: ['ops'],
    response: {
      200: {
        description: 'one entry per shard: shard, state, node, epoch, watermark, watermark_delay_ms, last_seq, committed_seq, lag, open_minutes, tracked_ids, risk_clicks',
        type: 'object',
        properties: { shards: { type: 'array', items: { type: 'object', additionalProperties: true } } },
      },
      ...errorResponses([]),
    },
  },
};

/** Health, readiness, Prometheus metrics and per-shard status. */
export function opsRoutes(app: FastifyInstance, queries: QueryService, registry: Registry, ready: Readiness, shards: number): void {
  app.get('/healthz', { schema: SCHEMAS.healthz }, async () => ({ status: 'ok' }));

  app.get('/readyz', { schema: SCHEMAS.readyz }, async (_req, reply) => {
    const r = await ready();
    const { checks, reasons } = isResult(r) ? r : { checks: r, reasons: undefined };
    const ok = Object.values(checks).every(Boolean);
    const body = { status: ok ? 'ready' : 'not_ready', checks, ...(!ok && reasons ? { reasons } : {}) };
    return reply.code(ok ? 200 : 503).send(body);
  });

  app.get('/metrics', { schema: SCHEMAS.metrics }, async (_req, reply) => {
    return reply.type(registry.contentType).send(await registry.metrics());
  });

  app.get('/v1/status', { schema: SCHEMAS.status }, async () => {
    const now = Date.now();
    const metas = new Map((await queries.shardMetas()).map((m) => [m.shard, m]));
    const live = await Promise.all([...Array(shards).keys()].map((s) => queries.shardStatus(s)));
    return {
      shards: live.map((st, shard) => {
        const meta = metas.get(shard);
        const wm = st?.watermark ?? meta?.watermark ?? -1;
        return {
          shard,
          state: st ? 'running' : 'unavailable',
          node: st?.node ?? null,
          epoch: st?.epoch ?? meta?.epoch ?? null,
          watermark: wm >= 0 ? isoOf(wm) : null,
          watermark_delay_ms: wm >= 0 ? now - wm : null,
          last_seq: st?.lastSeq ?? meta?.seq ?? 0,
          committed_seq: meta?.seq ?? 0,
          lag: st?.lag ?? null,
          open_minutes: st?.openMinutes ?? null,
          tracked_ids: st?.trackedIds ?? null,
          risk_clicks: st?.riskClicks ?? null,
        };
      }),
    };
  });
}
