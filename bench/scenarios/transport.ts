/**
 * Scenario 2 (transport): the same batched MessagePack messages (same producer, batch size and
 * window) into a stream with adagg's subject layout, consumed by one ordered consumer per shard
 * subject in a child process that only counts. Events/s from the first publish until all consumed.
 */
import { compileOptions } from '../../src/options.ts';
import { ensureStreams } from '../../src/runtime/streams.ts';
import { topology } from '../../src/runtime/topology.ts';
import { freshPrefix, spreadSpec, type Ctx } from '../lib/context.ts';
import { drive } from '../lib/drive.ts';
import { AckTracker, TrackingProducer } from '../lib/publisher.ts';
import { deleteStream } from '../lib/servers.ts';
import { CpuMeter } from '../lib/cpu.ts';
import { int, ms, rate } from '../lib/stats.ts';
import { startWorker } from '../lib/worker.ts';
import { Workload } from '../lib/workload.ts';

export interface TransportResult {
  events: number;
  messages: number;
  eventsPerSec: number;
  publishPerSec: number;
  durationMs: number;
  cores: { consumer: number; bench: number; nats: number; others: number };
}

interface ConsumerState {
  lastSeq: number[];
  msgs: number[];
  events: number;
}

export async function runTransport(ctx: Ctx): Promise<TransportResult> {
  const { cfg, servers } = ctx;
  const prefix = freshPrefix('t');
  const topo = topology(prefix);
  ctx.progress.set({ phase: 'transport: starting consumers', sent: 0, done: 0 });
  await ensureStreams(servers.nc, topo, compileOptions({ prefix, shards: cfg.shards }));
  const worker = await startWorker<ConsumerState>('transport-consumer.ts', {
    NATS_URL: servers.natsUrl,
    STREAM: topo.clicksStream,
    SUBJECT_PREFIX: topo.clickSubject(0).replace(/0$/, ''),
    SHARDS: String(cfg.shards),
  });
  try {
    const w = new Workload(spreadSpec(cfg, cfg.transportEvents, cfg.seed + 100, `t${prefix.slice(-4)}`));
    const tracker = new AckTracker(cfg.shards);
    const producer = new TrackingProducer(servers.nc, topo, cfg.shards, cfg.maxBatch, tracker);
    const meter = new CpuMeter({ consumer: worker.pid, nats: servers.nats.pid });
    const r = await drive(ctx, 'transport', w, producer, async () => {
      const st = worker.state();
      return {
        done: st?.events ?? 0,
        complete: st !== undefined && st.lastSeq.every((seq, s) => seq >= tracker.lastSeq[s]!),
      };
    });
    const cpu = meter.read();
    const res: TransportResult = {
      events: w.sent,
      messages: tracker.ackedMessages,
      eventsPerSec: r.eventsPerSec,
      publishPerSec: r.publishPerSec,
      durationMs: r.tDone - r.t0,
      cores: { consumer: cpu.cores.consumer!, bench: cpu.cores.bench!, nats: cpu.cores.nats!, others: cpu.others },
    };
    ctx.progress.log(`transport: ${rate(res.eventsPerSec)} events/s (${int(res.events)} events, ${int(res.messages)} messages in ${ms(res.durationMs)})`);
    return res;
  } finally {
    await worker.stop();
    await deleteStream(servers.nc, topo.clicksStream);
    await deleteStream(servers.nc, topo.deadLetterStream);
  }
}
