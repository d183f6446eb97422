/**
 * A shard's feed must not report "caught up" while the stream holds messages it never delivered.
 * The chaos suite (round seed 618308231: Redis and a NATS member frozen for seconds) left an
 * ordered consumer that kept its heartbeats, counted 0 pending and never delivered 16 messages;
 * the shard closed its minutes by the wall clock without them. ShardFeed.pending() now checks the
 * subject's last message in the stream and fails a feed stuck that way. The stuck consumer is
 * reproduced here by cutting the feed's delivery loop and standing in for its consumer's count.
 */
import { jetstreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/runtime/clock.ts';
import { ShardFeed } from '../../src/runtime/shard-feed.ts';
import { startTestServers, type TestServers } from '../helpers/servers.ts';
import { waitFor } from '../helpers/wait.ts';

/** The feed's parts this test stands in for (private fields, reached on purpose). */
interface FeedInternals {
  consumer: { info(): Promise<{ num_pending: number }> };
  messages: { close(): Promise<void> };
  delivering: boolean;
}

describe('ShardFeed: a consumer that counts nothing pending while the stream holds more', () => {
  let servers: TestServers;
  let nc: NatsConnection;
  beforeAll(async () => {
    servers = await startTestServers();
    nc = await connect({ servers: servers.natsUrl });
    const jsm = await jetstreamManager(nc);
    await jsm.streams.add({ name: 'FEEDSTALL', subjects: ['fs.>'] });
  });
  afterAll(async () => {
    await nc?.drain().catch(() => undefined);
    await servers?.stop();
  });

  it('is not caught up (1 pending), then fails with ADAGG_E_FEED_STALLED once nothing is delivered for a while', async () => {
    const js = (await jetstreamManager(nc)).jetstream();
    const clock = new ManualClock(1_000_000);
    const feed = new ShardFeed(nc, 'FEEDSTALL', 'fs.1', clock);
    const got: number[] = [];
    const errors: unknown[] = [];
    await feed.start(1, async (m) => void got.push(m.seq), (err) => void errors.push(err));
    await js.publish('fs.1', new Uint8Array([1]));
    await js.publish('fs.2', new Uint8Array([2]));
    await js.publish('fs.1', new Uint8Array([3]));
    await waitFor('the feed delivers its subject', () => got.length === 2, { timeoutMs: 20_000 });
    expect(got).toEqual([1, 3]);
    expect(await feed.pending()).toBe(0);

    // The consumer goes quiet: no more deliveries, and its server-side count says 0.
    const inner = feed as unknown as FeedInternals;
    await inner.messages.close();
    inner.consumer = { info: async () => ({ num_pending: 0 }) };
    await js.publish('fs.1', new Uint8Array([4]));
    await js.publish('fs.1', new Uint8Array([5]));
    // Before the fix pending() said 0 here, and the shard closed minutes without seq 4 and 5.
    expect(await feed.pending()).toBe(1);
    clock.advance(3000);
    expect(await feed.pending()).toBe(1);
    // Waiting on a full mailbox is back-pressure, never a stall.
    clock.advance(5000);
    inner.delivering = true;
    expect(await feed.pending()).toBe(1);
    inner.delivering = false;
    await expect(feed.pending()).rejects.toMatchObject({ code: 'ADAGG_E_FEED_STALLED' });
    // Another subject's messages never count as this shard's.
    expect(got).toEqual([1, 3]);
    await feed.stop();
  });
});
