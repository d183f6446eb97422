/**
 * Transport-limit consumer (child process of the bench): one ordered consumer per shard subject,
 * with the same pull settings as adagg's ShardFeed, doing nothing but counting messages (and the
 * events in them, read from the MessagePack array header). Reports JSON lines on stdout.
 * Env: NATS_URL, STREAM, SUBJECT_PREFIX (e.g. "p.clicks."), SHARDS.
 */
import { jetstream } from '@nats-io/jetstream';
import { connectNats } from '../../src/runtime/nats.ts';
import { rowsInBatch } from '../lib/publisher.ts';

const env = (k: string): string => {
  const v = process.env[k];
  if (!v) throw new Error(`missing env ${k}`);
  return v;
};
const shards = Number(env('SHARDS'));
const nc = await connectNats(env('NATS_URL'), 'bench-transport-consumer');
const js = jetstream(nc);
const lastSeq = new Array<number>(shards).fill(0);
const msgs = new Array<number>(shards).fill(0);
let events = 0;
const loops: Array<Promise<void>> = [];
for (let s = 0; s < shards; s++) {
  const c = await js.consumers.get(env('STREAM'), { filter_subjects: `${env('SUBJECT_PREFIX')}${s}` });
  const it = await c.consume({ max_messages: 256, expires: 5000 });
  loops.push(
    (async () => {
      for await (const m of it) {
        msgs[s]!++;
        events += rowsInBatch(m.data);
        lastSeq[s] = m.seq;
      }
    })(),
  );
}
const report = (): void => void process.stdout.write(`${JSON.stringify({ t: Date.now(), lastSeq, msgs, events })}\n`);
process.stdout.write(`${JSON.stringify({ ready: true })}\n`);
setInterval(report, 100);
process.on('SIGTERM', () => {
  report();
  void nc.close().finally(() => process.exit(0));
});
await Promise.all(loops);
