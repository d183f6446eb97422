/**
 * The real gateway (routes, body parser, ingest path, parameter parsing, error handling) with
 * recording back ends in place of JetStream and the shard actors, for the hostile-input tests:
 * what a client sees (status, code, accepted count) and what would have been stored (the clicks
 * handed to the producer, the dead letters handed to the publisher, the filter a count asked for).
 */
import type { NatsConnection } from '@nats-io/transport-node';
import type { FastifyInstance } from 'fastify';
import { Registry } from 'prom-client';
import { QueryJobs } from '../../src/gateway/query-jobs.ts';
import type { Filter, QueryService } from '../../src/gateway/query-service.ts';
import { buildGateway } from '../../src/gateway/server.ts';
import type { RankingSource } from '../../src/gateway/ws-feeds.ts';
import { ClickIngest } from '../../src/ingest/click-ingest.ts';
import type { Click } from '../../src/model/click.ts';
import { ManualClock } from '../../src/runtime/clock.ts';
import type { DeadLetter } from '../../src/runtime/dead-letter.ts';
import { RuntimeEvents } from '../../src/runtime/events.ts';
import { silentLogger } from '../../src/runtime/logger.ts';
import type { ClickProducer } from '../../src/runtime/producer.ts';
import { topology } from '../../src/runtime/topology.ts';
import { GATEWAY_OPTIONS } from '../helpers/offline-gateway.ts';

/** "Now" of the recording gateway's clock: clicks near it are in the window, an hour before is too_old. */
export const NOW = Date.UTC(2026, 10, 22, 3, 0, 30);

export interface RecordingGateway {
  app: FastifyInstance;
  /** Every click the producer was asked to store, in order. */
  published: Click[];
  /** Every dead letter handed to the publisher (before its cap). */
  letters: DeadLetter[];
  /** The filter of every count query that reached the back end (undefined: unfiltered). */
  countFilters: Array<Filter | undefined>;
}

export function recordingGateway(opts: { maxBodyBytes?: number; maxLines?: number } = {}): RecordingGateway {
  const published: Click[] = [];
  const letters: DeadLetter[] = [];
  const countFilters: Array<Filter | undefined> = [];
  const producer = {
    publish: async (clicks: readonly Click[]) => {
      published.push(...clicks);
      return { messages: 1, duplicates: 0 };
    },
  } as unknown as ClickProducer;
  const deadLetters = {
    publishEach: async (ls: ReadonlyArray<{ id: string; letter: DeadLetter }>) => {
      for (const l of ls) letters.push(l.letter);
      return ls.map(() => undefined);
    },
  };
  const ingest = new ClickIngest(producer, deadLetters, { correctionHorizonMs: 3600_000, maxFutureMs: 300_000 }, new ManualClock(NOW));
  const o = { ...GATEWAY_OPTIONS, maxBodyBytes: opts.maxBodyBytes ?? 1 << 20, maxLines: opts.maxLines ?? 1000 };
  const queries = {
    adCount: async (ad: string, from: number, to: number, filter: Filter | undefined) => {
      countFilters.push(filter);
      return { ad_id: ad, from, to, counts: [] };
    },
    popular: async (_n: number, _w: number, _at: number | undefined, filter: Filter | undefined) => {
      countFilters.push(filter);
      return { ads: [] };
    },
  } as unknown as QueryService;
  const rankings: RankingSource = { onRanking: () => () => undefined, watch: () => '', unwatch: () => undefined, current: () => ({}) };
  const nc = {} as NatsConnection;
  const app = buildGateway(o, {
    queryJobs: new QueryJobs(nc, topology('input'), { shards: o.shards, correctionHorizonMs: 3600_000, maxFutureMs: 300_000, maxTopN: o.maxTopN }, { actors: { create: () => { throw new Error('no actors here'); } } } as never),
    reducer: rankings,
    events: new RuntimeEvents(),
    ingest,
    queries,
    registry: new Registry(),
    ready: async () => ({ nats: true, redis: true }),
    log: silentLogger,
  });
  return { app, published, letters, countFilters };
}

/** A click line with `ts` near {@link NOW}. */
export function clickLine(id: string, extra: Record<string, unknown> = {}): string {
  return JSON.stringify({ click_id: id, ad_id: 'ad-1', ts: NOW - 1000, ...extra });
}
