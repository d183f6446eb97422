/**
 * Drives one throughput run: publishes the whole workload (window of concurrent publish calls)
 * while sampling progress every 250 ms, then waits until the consumer side reports completion.
 * The clock runs from the first publish to the first poll that sees everything processed.
 */
import type { Ctx } from './context.ts';
import { publishAll, type TrackingProducer } from './publisher.ts';
import { sleep } from './stats.ts';
import type { Workload } from './workload.ts';

export interface Sample {
  /** ms since the first publish */
  t: number;
  acked: number;
  done: number;
  rss?: number;
}

export interface Probe {
  /** Events fully processed so far (committed / consumed / applied). */
  done: number;
  /** True when every published message is processed (only asked after publishing ended). */
  complete: boolean;
  rss?: number;
}

export interface DriveResult {
  t0: number;
  tPublished: number;
  tDone: number;
  samples: Sample[];
  /** Events sent (duplicates included) / seconds from first publish to complete. */
  eventsPerSec: number;
  /** Events acknowledged by JetStream / seconds from first publish to the last ack. */
  publishPerSec: number;
}

/** A run that was given up; carries the progress samples up to that point (for the chart). */
export class DriveError extends Error {
  constructor(
    message: string,
    readonly samples: Sample[],
  ) {
    super(message);
  }
}

export async function drive(
  ctx: Ctx,
  phase: string,
  w: Workload,
  producer: TrackingProducer,
  probe: () => Promise<Probe>,
  timeoutMs = 15 * 60_000,
  /** Returns a reason to abort (e.g. the service is in a crash loop), checked on every sample. */
  health?: (done: number) => string | null,
): Promise<DriveResult> {
  const tracker = producer.tracker;
  const samples: Sample[] = [];
  ctx.progress.set({ phase, sent: 0, done: 0, note: undefined });
  const t0 = Date.now();
  let tPublished = 0;
  let stop = false;
  let unhealthy: string | null = null;
  const sampler = (async () => {
    while (!stop) {
      await sleep(250);
      let p: Probe;
      try {
        p = await probe();
      } catch (err) {
        ctx.progress.log(`${phase}: progress probe failed: ${String(err)}`);
        continue;
      }
      unhealthy ??= health?.(p.done) ?? null;
      const s: Sample = { t: Date.now() - t0, acked: tracker.ackedEvents, done: p.done };
      if (p.rss !== undefined) s.rss = p.rss;
      samples.push(s);
      ctx.progress.set({ sent: tracker.ackedEvents, done: p.done });
    }
  })();
  try {
    await publishAll(w, producer, ctx.cfg.window);
    tPublished = Date.now();
    ctx.progress.set({ note: 'published, draining' });
    let tDone = 0;
    const end = Date.now() + timeoutMs;
    for (;;) {
      if (unhealthy) throw new DriveError(`${phase}: ${unhealthy}`, samples);
      const p = await probe();
      if (p.complete) {
        tDone = Date.now();
        samples.push({ t: tDone - t0, acked: tracker.ackedEvents, done: p.done, ...(p.rss !== undefined ? { rss: p.rss } : {}) });
        break;
      }
      if (Date.now() > end) throw new DriveError(`${phase}: not complete after ${timeoutMs} ms (done ${p.done} of ${tracker.ackedEvents})`, samples);
      await sleep(40);
    }
    return {
      t0,
      tPublished,
      tDone,
      samples,
      eventsPerSec: (w.sent * 1000) / (tDone - t0),
      publishPerSec: (tracker.ackedEvents * 1000) / (tPublished - t0),
    };
  } finally {
    stop = true;
    await sampler;
    ctx.progress.set({ note: undefined });
  }
}
