import { DeliverPolicy, jetstream, type Consumer, type ConsumerMessages } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { AdaggError, ErrorCode } from '../errors.ts';
import { systemClock, type Clock } from './clock.ts';

export interface StreamMessage {
  seq: number;
  /** Messages still pending for this shard after this one (the consumer's lag). */
  pending: number;
  data: Uint8Array;
}

/**
 * Reads one shard's subject in stream order from a given sequence, with an ordered consumer:
 * ephemeral, R1, no acks, recreated by the client on gaps or missed heartbeats, so no Raft group
 * per shard and nothing skipped. Progress is the actor's committed sequence, not a server ack.
 * `onMessage` is awaited, so a full mailbox slows the pull instead of buffering without bound.
 */
export class ShardFeed {
  private consumer: Consumer | undefined;
  private messages: ConsumerMessages | undefined;
  private loop: Promise<void> | undefined;
  constructor(
    private readonly nc: NatsConnection,
    private readonly stream: string,
    private readonly subject: string,
    private readonly clock: Clock = systemClock,
  ) {}

  /** Starts reading at `startSeq`; failures of the read loop go to `onError`. */
  async start(
    startSeq: number,
    onMessage: (m: StreamMessage) => Promise<void>,
    onError: (err: unknown) => void,
  ): Promise<void> {
    const js = jetstream(this.nc);
    this.consumer = await js.consumers.get(this.stream, {
      filter_subjects: this.subject,
      ...(startSeq > 1 ? { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: startSeq } : {}),
    });
    // expires 5 s: after a server failover the pull is re-issued within seconds, not 30 s (NATS notes).
    this.messages = await this.consumer.consume({ max_messages: 256, expires: 5000, idle_heartbeat: 1000 });
    const msgs = this.messages;
    // Back-pressure: while the actor's mailbox is full, delivery waits and no new pull goes out, so
    // the server sends no heartbeats either. That is us being slow, not the server being gone.
    let delivering = false;
    let deliveredAt = this.clock.now();
    const backPressured = (): boolean => delivering || this.clock.now() - deliveredAt < 3000;
    // Watchdog: an ordered consumer is R1 and lives on one server. If that server dies, the client
    // keeps retrying it forever (it only recreates on "consumer not found"), so missed heartbeats fail
    // the feed: the actor restarts from its committed sequence with a new consumer on a live server.
    void (async () => {
      for await (const st of msgs.status()) {
        const dead =
          (st.type === 'heartbeats_missed' && st.count >= 3 && !backPressured()) ||
          (st.type === 'consumer_not_found' && st.count >= 3) ||
          st.type === 'stream_not_found' ||
          st.type === 'consumer_deleted';
        if (dead) {
          onError(new AdaggError(ErrorCode.FeedStalled, `feed of ${this.subject} stalled (${st.type})`, { details: { status: st } }));
          return;
        }
      }
    })().catch(() => undefined);
    this.loop = (async () => {
      for await (const m of msgs) {
        delivering = true;
        await onMessage({ seq: m.seq, pending: m.info.pending, data: m.data });
        delivering = false;
        deliveredAt = this.clock.now();
      }
    })().catch(onError);
  }

  /** Messages pending for this consumer (server-side view), for lag when idle. */
  async pending(): Promise<number> {
    if (!this.consumer) return 0;
    const info = await this.consumer.info();
    return info.num_pending;
  }

  async stop(): Promise<void> {
    try {
      await this.messages?.close();
    } catch {
      // closing a consumer whose connection dropped is not an error worth surfacing
    }
    await this.loop;
  }
}
