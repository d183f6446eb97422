import type { FastifyInstance } from 'fastify';
import type { Registry } from 'prom-client';
import { isoOf } from '../../model/time.ts';
import type { QueryService } from '../query-service.ts';

export interface Readiness {
  (): Promise<Record<string, boolean>>;
}

/** Health, readiness, Prometheus metrics and per-shard status. */
export function opsRoutes(app: FastifyInstance, queries: QueryService, registry: Registry, ready: Readiness, shards: number): void {
  app.get('/healthz', async () => ({ status: 'ok' }));

  app.get('/readyz', async (_req, reply) => {
    const checks = await ready();
    const ok = Object.values(checks).every(Boolean);
    return reply.code(ok ? 200 : 503).send({ status: ok ? 'ready' : 'not_ready', checks });
  });

  app.get('/metrics', async (_req, reply) => {
    return reply.type(registry.contentType).send(await registry.metrics());
  });

  app.get('/v1/status', async () => {
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
        };
      }),
    };
  });
}
