/**
 * Scenario 5 (http): clicks through POST /v1/clicks as NDJSON bodies of 1000–5000 lines from
 * several concurrent keep-alive clients (Node's built-in fetch). Events/s accepted (the gateway
 * replies after JetStream acknowledged them), and events/s until the shard actors committed them.
 */
import { jetstreamManager } from '@nats-io/jetstream';
import { topology } from '../../src/runtime/topology.ts';
import { rng } from '../../test/helpers/click-stream.ts';
import { spreadSpec, type Ctx } from '../lib/context.ts';
import { readMetas } from '../lib/redis-state.ts';
import { stallGuard, type Service } from '../lib/service.ts';
import { int, ms, percentile, rate, until } from '../lib/stats.ts';
import { Workload } from '../lib/workload.ts';

export interface HttpResult {
  events: number;
  requests: number;
  clients: number;
  linesPerBody: [number, number];
  acceptedPerSec: number;
  committedPerSec: number;
  rejected: number;
  requestMs: { p50: number; p99: number };
  bodyBytesMean: number;
}

export async function runHttp(ctx: Ctx, svc: Service, prefix: string): Promise<HttpResult> {
  const { cfg, servers } = ctx;
  ctx.progress.set({ phase: 'http: building NDJSON bodies', sent: 0, done: undefined });
  // Event time spread like the throughput scenarios (not live): the figure is about ingest, and a
  // live minute of this volume would be one huge minute-close commit.
  const w = new Workload(spreadSpec(cfg, cfg.httpEvents, cfg.seed + 400, `h${prefix.slice(-5)}`));
  const r = rng(cfg.seed + 401);
  const bodies: Array<{ text: string; lines: number }> = [];
  let bytes = 0;
  while (!w.done) {
    const n = 1000 + Math.floor(r() * 4001);
    const clicks = w.take(n);
    const text = clicks.map((c) => JSON.stringify(c)).join('\n');
    bytes += text.length;
    bodies.push({ text, lines: clicks.length });
  }
  ctx.progress.set({ phase: `http: ${cfg.httpClients} clients POST /v1/clicks`, sent: 0 });
  let next = 0;
  let accepted = 0;
  let rejected = 0;
  const reqMs: number[] = [];
  const t0 = Date.now();
  const client = async (): Promise<void> => {
    for (;;) {
      const b = bodies[next++];
      if (!b) return;
      const t = Date.now();
      const res = await fetch(`${svc.url}/v1/clicks`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-ndjson' },
        body: b.text,
      });
      const body = (await res.json()) as { accepted?: number; rejected?: unknown[] };
      if (res.status !== 200) throw new Error(`POST /v1/clicks: ${res.status} ${JSON.stringify(body).slice(0, 300)}`);
      reqMs.push(Date.now() - t);
      accepted += body.accepted ?? 0;
      rejected += body.rejected?.length ?? 0;
      ctx.progress.set({ sent: accepted });
    }
  };
  await Promise.all([...Array(cfg.httpClients).keys()].map(() => client()));
  const tAccepted = Date.now();
  // Until committed: the last sequence of every shard subject, then the Redis meta.
  const topo = topology(prefix);
  const jsm = await jetstreamManager(servers.nc);
  const last: number[] = [];
  for (let s = 0; s < cfg.shards; s++) {
    const m = await jsm.streams.getMessage(topo.clicksStream, { last_by_subj: topo.clickSubject(s) }).catch(() => null);
    last.push(m?.seq ?? 0);
  }
  ctx.progress.set({ note: 'accepted; waiting for commits' });
  const guard = stallGuard(svc);
  await until(
    'http events committed',
    async () => {
      const metas = await readMetas(servers.rd, prefix, cfg.shards);
      const why = guard(metas.reduce((a, m) => a + m.seq, 0));
      if (why) throw new Error(`http: ${why}`);
      return metas.every((m, s) => m.seq >= last[s]!);
    },
    10 * 60_000,
    40,
  );
  const tCommitted = Date.now();
  const res: HttpResult = {
    events: cfg.httpEvents,
    requests: bodies.length,
    clients: cfg.httpClients,
    linesPerBody: [1000, 5000],
    acceptedPerSec: (accepted * 1000) / (tAccepted - t0),
    committedPerSec: (accepted * 1000) / (tCommitted - t0),
    rejected,
    requestMs: { p50: percentile(reqMs, 50), p99: percentile(reqMs, 99) },
    bodyBytesMean: bytes / bodies.length,
  };
  ctx.progress.log(
    `http: accepted ${rate(res.acceptedPerSec)} events/s, committed ${rate(res.committedPerSec)} events/s ` +
      `(${int(accepted)} events, ${res.requests} requests, p50 ${ms(res.requestMs.p50)} p99 ${ms(res.requestMs.p99)}, rejected ${rejected})`,
  );
  return res;
}
