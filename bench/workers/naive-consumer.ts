/**
 * The naive peer (Yahoo streaming benchmark style), as a child process of the bench: one durable
 * pull consumer over the whole clicks stream with explicit acks; per message, decode the batch and
 * HINCRBY every event into Redis through one ioredis pipeline, then ack. No dedupe, no sequence
 * tracking: a crash between the Redis writes and the ack makes JetStream redeliver, and those
 * events are counted again. Up to 8 messages are processed concurrently.
 * Env: NATS_URL, REDIS_URL, STREAM, DURABLE, KEY_PREFIX.
 * Redis layout: `<KEY_PREFIX>:c:<minute>` hash, field ad_id → count.
 */
import { AckPolicy, DeliverPolicy, jetstream, jetstreamManager } from '@nats-io/jetstream';
import { Redis } from 'ioredis';
import { decodeBatch } from '../../src/model/batch-codec.ts';
import { connectNats } from '../../src/runtime/nats.ts';

const env = (k: string): string => {
  const v = process.env[k];
  if (!v) throw new Error(`missing env ${k}`);
  return v;
};
const STREAM = env('STREAM');
const DURABLE = env('DURABLE');
const KP = env('KEY_PREFIX');
const INFLIGHT = 8;

const nc = await connectNats(env('NATS_URL'), `bench-naive-${DURABLE}`);
const redis = new Redis(env('REDIS_URL'), { maxRetriesPerRequest: null });
const jsm = await jetstreamManager(nc);
const existing = await jsm.consumers.info(STREAM, DURABLE).catch(() => null);
if (!existing) {
  await jsm.consumers.add(STREAM, {
    durable_name: DURABLE,
    ack_policy: AckPolicy.Explicit,
    deliver_policy: DeliverPolicy.All,
    ack_wait: 10_000_000_000, // 10 s, in ns
    max_ack_pending: 1000,
  });
}
const consumer = await jetstream(nc).consumers.get(STREAM, DURABLE);
const it = await consumer.consume({ max_messages: 64, expires: 5000 });
let applied = 0;
let acked = 0;
let inflight = 0;
let wake: (() => void) | undefined;

const report = (): void => void process.stdout.write(`${JSON.stringify({ t: Date.now(), applied, acked })}\n`);
process.stdout.write(`${JSON.stringify({ ready: true })}\n`);
setInterval(report, 100);
process.on('SIGTERM', () => {
  report();
  process.exit(0);
});

for await (const m of it) {
  while (inflight >= INFLIGHT) await new Promise<void>((r) => (wake = r));
  inflight++;
  void (async () => {
    const clicks = decodeBatch(m.data);
    const p = redis.pipeline();
    for (const c of clicks) p.hincrby(`${KP}:c:${Math.floor(c.ts / 60_000)}`, c.ad_id, 1);
    await p.exec();
    applied += clicks.length;
    m.ack();
    acked++;
  })()
    .catch((err: unknown) => {
      process.stderr.write(`naive consumer: ${String(err)}\n`);
      m.nak();
    })
    .finally(() => {
      inflight--;
      const w = wake;
      wake = undefined;
      w?.();
    });
}
