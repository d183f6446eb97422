import type { NatsConnection } from '@nats-io/transport-node';
import type { FastifyInstance } from 'fastify';
import { Registry } from 'prom-client';
import { QueryJobs } from '../../src/gateway/query-jobs.ts';
import type { QueryService } from '../../src/gateway/query-service.ts';
import { buildGateway, type GatewayDeps, type GatewayOptions } from '../../src/gateway/server.ts';
import type { RankingSource } from '../../src/gateway/ws-feeds.ts';
import type { ClickIngest } from '../../src/ingest/click-ingest.ts';
import { RuntimeEvents } from '../../src/runtime/events.ts';
import { silentLogger } from '../../src/runtime/logger.ts';
import { topology } from '../../src/runtime/topology.ts';

/**
 * The real gateway (src/gateway/server.ts: routes, schemas, body parser, error handling, OpenAPI)
 * with no NATS or Redis behind it, for tests of what it answers before any back end is asked:
 * parameter and body errors, unknown routes, body limits, /openapi.json. A request that does reach
 * a back end fails with a 500 naming it.
 */

export const GATEWAY_OPTIONS: GatewayOptions = {
  topnDepth: 100,
  maxLiveWindow: 60,
  wsMaxBufferedBytes: 1 << 18,
  wsSlowClientTimeoutMs: 10_000,
  shards: 4,
  dimensions: ['country', 'device'],
  cubes: ['country+device'],
  maxBodyBytes: 4096,
  maxLines: 50,
  maxQueryMinutes: 10_080,
  maxTopN: 1000,
};

const unused = (what: string) => (): never => {
  throw new Error(`${what} must not be reached by this test`);
};

/** A gateway whose back ends are never reached: requests that need them fail loudly. `extra` adds or replaces deps (e.g. `auth`). */
export function offlineGateway(o: GatewayOptions = GATEWAY_OPTIONS, extra: Partial<GatewayDeps> = {}): FastifyInstance {
  const nc = {} as NatsConnection;
  const rankings: RankingSource = { onRanking: () => () => undefined, watch: () => '', unwatch: () => undefined, current: () => ({}) };
  return buildGateway(o, {
    queryJobs: new QueryJobs(nc, topology('openapi'), { shards: o.shards, correctionHorizonMs: 3600_000, maxFutureMs: 300_000, maxTopN: o.maxTopN }, { actors: { create: unused('a shard actor') } }),
    reducer: rankings,
    events: new RuntimeEvents(),
    ingest: { ingest: unused('ingest') } as unknown as ClickIngest,
    queries: { adCount: unused('adCount'), adInvalid: unused('adInvalid'), offenders: unused('offenders'), popular: unused('popular'), shardMetas: unused('shardMetas'), shardStatus: unused('shardStatus') } as unknown as QueryService,
    registry: new Registry(),
    ready: async () => ({ nats: true, redis: true }),
    log: silentLogger,
    ...extra,
  });
}

