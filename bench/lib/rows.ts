/** Turns scenario results into the rows of the results table. */
import type { HttpResult } from '../scenarios/http.ts';
import type { LatencyResult } from '../scenarios/latency.ts';
import type { DedupMemory } from '../scenarios/memory.ts';
import type { NaiveResult } from '../scenarios/naive.ts';
import type { PipelineRun } from '../scenarios/pipeline.ts';
import type { RecoveryResult } from '../scenarios/recovery.ts';
import type { TransportResult } from '../scenarios/transport.ts';
import type { Row } from './context.ts';
import { int, max, median, mib, min, ms, rate } from './stats.ts';

const spread = (xs: number[], f: (n: number) => string): string =>
  xs.length > 1 ? `${f(median(xs))} (${f(min(xs))}–${f(max(xs))})` : f(xs[0] ?? NaN);

/** The run whose pipeline rate is the median (for the chart and per-run details). */
export function medianRun(runs: PipelineRun[]): PipelineRun | undefined {
  const sorted = [...runs].sort((a, b) => a.eventsPerSec - b.eventsPerSec);
  return sorted[Math.floor((sorted.length - 1) / 2)];
}

export function pipelineRows(runs: PipelineRun[]): Row[] {
  if (runs.length === 0) return [];
  const S = 'pipeline';
  const m = medianRun(runs)!;
  const allExact = runs.every((r) => r.exact.exact);
  return [
    {
      scenario: S,
      figure: `exactly-once throughput, events/s (median of ${runs.length}, min–max)`,
      value: spread(runs.map((r) => r.eventsPerSec), rate),
      note: `first publish → every shard's committed seq = last stream seq; ${int(m.events)} events per run`,
    },
    { scenario: S, figure: 'producer publish rate, events/s (median)', value: spread(runs.map((r) => r.publishPerSec), rate), note: 'first publish → last PubAck' },
    { scenario: S, figure: 'drain after last publish (median)', value: spread(runs.map((r) => r.drainMs), ms), note: 'last PubAck → all committed' },
    {
      scenario: S,
      figure: 'exact',
      value: String(allExact),
      note: runs
        .map((r) => `${r.exact.exact ? 'exact' : 'NOT exact'}: ${r.exact.sampled} sampled ads, ${r.exact.countryChecked} ad×country, ${int(r.exact.fullAdsCompared)} ads in full; counted ${int(r.exact.totalCounted)} = truth ${int(r.exact.totalTruth)}${r.exact.examples.length ? `; ${r.exact.examples.slice(0, 3).join('; ')}` : ''}`)
        .join(' / '),
    },
    {
      scenario: S,
      figure: 'workload (median run)',
      value: `${int(m.events)} events`,
      note: `event time over the ${m.spanMinutes} minutes before the run's minute; ${int(m.distinct)} distinct, ${int(m.duplicates)} duplicates, ${int(m.late)} late (≤ 2 min), ${int(m.adsTouched)} of 2,000,000 ads touched (Zipf s=1), ${int(m.messages)} messages, per shard ${m.messagesPerShard.join('/')}`,
    },
    {
      scenario: S,
      figure: 'shard actor failures (all runs)',
      value: String(runs.reduce((a, r) => a + r.failures.restarts + r.failures.fatal, 0)),
      note: runs.find((r) => r.failures.first)?.failures.first ?? 'none logged',
    },
    {
      scenario: S,
      figure: 'CPU cores used during the run (median run)',
      value: `service ${m.cores.service.toFixed(2)}`,
      note: `load generator ${m.cores.bench.toFixed(2)}, nats-server ${m.cores.nats.toFixed(2)}, redis-server ${m.cores.redis.toFixed(2)}, other processes on the machine ${m.cores.others.toFixed(2)} (2 cores in total)`,
    },
    {
      scenario: S,
      figure: 'commits (median run)',
      value: `${int(m.commits)} commits, mean ${m.commitMeanMs.toFixed(1)} ms`,
      note: `last snapshot sizes summed over shards ${mib(m.snapshotBytes)}; wait for minutes to close after the run ${ms(m.closeWaitMs)}`,
    },
  ];
}

export function transportRows(t: TransportResult, runs: PipelineRun[]): Row[] {
  const p = runs.length ? median(runs.map((r) => r.eventsPerSec)) : NaN;
  return [
    {
      scenario: 'transport',
      figure: 'transport limit, events/s',
      value: rate(t.eventsPerSec),
      note: `${int(t.events)} events in ${int(t.messages)} messages; ordered consumer per shard subject, counting only; publish ${rate(t.publishPerSec)}/s; cores: consumer ${t.cores.consumer.toFixed(2)}, load generator ${t.cores.bench.toFixed(2)}, nats ${t.cores.nats.toFixed(2)}, other processes ${t.cores.others.toFixed(2)}`,
    },
    { scenario: 'transport', figure: 'pipeline / transport', value: Number.isFinite(p) ? `${((100 * p) / t.eventsPerSec).toFixed(0)} %` : 'n/a', note: 'median pipeline rate / transport rate' },
  ];
}

export function naiveRows(n: NaiveResult, runs: PipelineRun[]): Row[] {
  const p = runs.length ? median(runs.map((r) => r.eventsPerSec)) : NaN;
  const c = n.crash;
  return [
    {
      scenario: 'naive',
      figure: 'naive HINCRBY consumer, events/s',
      value: rate(n.eventsPerSec),
      note: `${int(n.events)} events; cores: consumer ${n.cores.consumer.toFixed(2)}, redis ${n.cores.redis.toFixed(2)}, nats ${n.cores.nats.toFixed(2)}, load generator ${n.cores.bench.toFixed(2)}, other processes ${n.cores.others.toFixed(2)}${Number.isFinite(p) ? `; pipeline / naive = ${(p / n.eventsPerSec).toFixed(2)}×` : ''}`,
    },
    {
      scenario: 'naive',
      figure: 'naive without crash: over-count',
      value: `+${int(n.noCrash.over)}`,
      note: `counted ${int(n.noCrash.totalCounted)} vs truth ${int(n.noCrash.truth)}; ${int(n.duplicatesSent)} duplicate clicks were sent (never deduped)`,
    },
    {
      scenario: 'naive',
      figure: 'naive after one SIGKILL: over / under-count',
      value: `+${int(c.over)} / −${int(c.under)}`,
      note: `counted ${int(c.totalCounted)} vs truth ${int(c.truth)}; ${int(c.overFromRedelivery)} over from redelivery after the kill (at ${int(c.killedAtApplied)} applied), ${int(c.adsOver)} ads over, ${int(c.adsUnder)} under; restart → done ${ms(c.restartToDoneMs)} (ack_wait 10 s)`,
    },
  ];
}

export function latencyRows(l: LatencyResult): Row[] {
  const finals = l.finalMs.filter((f) => f.ackToFinalMs !== null);
  return [
    {
      scenario: 'latency',
      figure: 'offered / achieved rate, events/s',
      value: `${rate(l.targetRate)} / ${rate(l.achievedRate)}`,
      note: `${l.seconds} s of live clicks (event time = now) + a probe every 100 ms; shard actor failures during the scenario: ${l.failures.restarts + l.failures.fatal}${l.failures.first ? ` (${l.failures.first})` : ''}`,
    },
    {
      scenario: 'latency',
      figure: 'ack → visible p50 / p99',
      value: `${ms(l.visibleMs.p50)} / ${ms(l.visibleMs.p99)}`,
      note: `${l.visibleMs.n} probes (p90 ${ms(l.visibleMs.p90)}, max ${ms(l.visibleMs.max)}, ${l.visibleMs.timedOut} not visible in 30 s); polled every 20 ms; probe publish → ack p50 ${ms(l.ackMs.p50)} p99 ${ms(l.ackMs.p99)}`,
    },
    {
      scenario: 'latency',
      figure: 'ack → final (minute closed)',
      value: finals.length ? `${ms(median(finals.map((f) => f.ackToFinalMs!)))} median` : 'n/a',
      note: `${l.finalNote ? `${l.finalNote}. ` : ''}${finals.length}/${l.finalMs.length} probes final: ${l.finalMs.map((f) => (f.ackToFinalMs === null ? 'not final in time' : `${ms(f.ackToFinalMs)} (beyond minute end + ${l.allowedLatenessMs / 1000} s lateness: ${ms(f.beyondCloseMs!)})`)).join('; ')}`,
    },
  ];
}

export function httpRows(h: HttpResult): Row[] {
  return [
    {
      scenario: 'http',
      figure: 'POST /v1/clicks accepted, events/s',
      value: rate(h.acceptedPerSec),
      note: `${int(h.events)} events in ${h.requests} NDJSON bodies of ${h.linesPerBody[0]}–${h.linesPerBody[1]} lines (mean ${mib(h.bodyBytesMean)}), ${h.clients} keep-alive clients; request p50 ${ms(h.requestMs.p50)} p99 ${ms(h.requestMs.p99)}; rejected ${h.rejected}`,
    },
    { scenario: 'http', figure: 'HTTP → committed, events/s', value: rate(h.committedPerSec), note: 'first POST → every shard committed the last message' },
  ];
}

export function recoveryRows(r: RecoveryResult): Row[] {
  const R = 'recovery';
  return [
    { scenario: R, figure: 'backlog', value: `${int(r.backlog)} events`, note: `published with the service stopped at ${rate(r.backlogPublishPerSec)}/s; cold start processed ${rate(r.cold.catchUpPerSec)}/s; SIGKILL when ${int(r.killedAtProcessed)} were processed, of which ${int(r.killedAtCommitted)} committed` },
    { scenario: R, figure: 'restart → /readyz', value: ms(r.restart.spawnToReadyMs), note: `cold start: ${ms(r.cold.spawnToReadyMs)}` },
    { scenario: R, figure: 'restart → all shards restored', value: ms(r.restart.spawnToRestoredMs), note: `of which process boot to first actor start ${ms(r.restart.bootMs)}; cold start (no snapshot): ${ms(r.cold.spawnToRestoredMs)}` },
    { scenario: R, figure: 'snapshot restore (all shards)', value: ms(r.restart.snapshotRestoreMs), note: `first actor start → last 'shard actor restored' (slowest shard alone ${ms(r.restart.snapshotRestoreMaxShardMs)}; cold start without snapshots ${ms(r.cold.restoreSpanMs)}); snapshots at the kill: ${mib(r.snapshotBytes)} over all shards` },
    { scenario: R, figure: 'replay to the stream end', value: ms(r.restart.replayMs), note: `${int(r.restart.replayEvents)} events at ${rate(r.restart.replayPerSec)}/s; restart → caught up ${ms(r.restart.totalMs)}` },
    { scenario: R, figure: 'exact after SIGKILL + restart', value: String(r.exact.exact), note: `${r.exact.sampled} sampled ads + full check of ${int(r.exact.fullAdsCompared)} ads; counted ${int(r.exact.totalCounted)} = truth ${int(r.exact.totalTruth)}${r.exact.examples.length ? `; ${r.exact.examples.slice(0, 3).join('; ')}` : ''}` },
  ];
}

export function memoryRows(runs: PipelineRun[], d: DedupMemory | undefined): Row[] {
  const M = 'memory';
  const out: Row[] = [];
  const m = medianRun(runs);
  if (m) {
    out.push(
      { scenario: M, figure: 'service RSS steady / peak', value: `${mib(m.rss.steady)} / ${mib(m.rss.peak)}`, note: `baseline after ready ${mib(m.rss.baseline)}, at the end ${mib(m.rss.end)} (median pipeline run)` },
      { scenario: M, figure: 'RSS Δ per 1M tracked click ids', value: mib(m.rssPerMillionIds), note: `${int(m.trackedIds)} tracked_ids (/v1/status) at the end; upper bound (includes open windows, heap slack)` },
    );
  }
  if (d) {
    out.push({
      scenario: M,
      figure: 'dedupe table per 1M click ids',
      value: mib(d.tableBytesPerMillion),
      note: `ClickDedup byteLength in-process (${int(d.ids)} ids, ${rate(d.insertsPerSec)} inserts/s); its snapshot form ${mib(d.snapshotBytesPerMillion)} per 1M`,
    });
  }
  return out;
}
