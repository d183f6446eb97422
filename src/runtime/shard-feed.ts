import { DeliverPolicy, jetstream, jetstreamManager, type Consumer, type ConsumerMessages, type JetStreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { AdaggError, ErrorCode } from '../errors.ts';
import { systemClock, type Clock } from './clock.ts';

export interface StreamMessage {
  seq: number;
  /** Messages still pending for this shard after this one (the consumer's lag). */
  pending: number;
  data: Uint8Array;
  /**
   * When JetStream stored the message (epoch ms, the NATS server's clock): the moment the producer's
   * publish was acknowledged, the start of the end-to-end latency. Absent when unknown.
   */
  ackedAt?: number;
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
  private jsm: JetStreamManager | undefined;
  /** Highest sequence delivered to `onMessage` (start − 1 before the first). */
  private delivered = 0;
  /** Since when the stream has held a message past `delivered` that the consumer does not count. */
  private staleSince: number | undefined;
  /** A message is being handed to `onMessage` (waiting for mailbox room). */
  private delivering = false;
  /** When the last `onMessage` returned. */
  private deliveredAt = 0;
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
    this.delivered = startSeq - 1;
    this.consumer = await js.consumers.get(this.stream, {
      filter_subjects: this.subject,
      ...(startSeq > 1 ? { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: startSeq } : {}),
    });
    // expires 5 s: after a server failover the pull is re-issued within seconds, not 30 s (NATS notes).
    this.messages = await this.consumer.consume({ max_messages: 256, expires: 5000, idle_heartbeat: 1000 });
    const msgs = this.messages;
    // Back-pressure: while the actor's mailbox is full, delivery waits and no new pull goes out, so
    // the server sends no heartbeats either. That is us being slow, not the server being gone.
    this.delivering = false;
    this.deliveredAt = this.clock.now();
    const backPressured = (): boolean => this.delivering || this.clock.now() - this.deliveredAt < 3000;
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
        this.delivering = true;
        this.delivered = m.seq;
        await onMessage({ seq: m.seq, pending: m.info.pending, data: m.data, ackedAt: Math.floor(m.info.timestampNanos / 1e6) });
        this.delivering = false;
        this.deliveredAt = this.clock.now();
      }
    })().catch(onError);
  }

  /**
   * Messages pending for this consumer (server-side view), for lag when idle. The consumer's count
   * alone is not proof of being caught up: an ordered consumer on a NATS server that was frozen or
   * restarted can keep sending heartbeats, count 0 pending and never deliver the messages the
   * stream took meanwhile (seen in the chaos suite: a shard stuck 16 messages behind while its
   * minutes closed by the wall clock without them). So a count of 0 is checked against the last
   * message of the subject in the stream; while that one is past what was delivered, the shard is
   * not caught up (1 pending), and if it stays so for `staleAfterMs` with nothing delivered
   * meanwhile (and no delivery waiting on the mailbox), the feed is declared stalled
   * (ADAGG_E_FEED_STALLED: the actor restarts from its committed sequence with a new consumer).
   */
  async pending(staleAfterMs = 5000): Promise<number> {
    if (!this.consumer) return 0;
    const info = await this.consumer.info();
    if (info.num_pending > 0) {
      this.staleSince = undefined;
      return info.num_pending;
    }
    // A short deadline: the stream leader answers this, and while one is being elected the check
    // must neither hold up the actor's loop for long nor fail it (no proof either way: not caught up).
    this.jsm ??= await jetstreamManager(this.nc, { timeout: 1000 });
    const last = await this.jsm.streams.getMessage(this.stream, { last_by_subj: this.subject }).catch(() => 'unknown' as const);
    if (last === 'unknown') return 1;
    if (!last || last.seq <= this.delivered) {
      this.staleSince = undefined;
      return 0;
    }
    const now = this.clock.now();
    this.staleSince ??= now;
    // Messages the client holds while the actor's mailbox is full are not stale: only a feed that
    // has delivered nothing for a while, with the server holding more, is stuck.
    const idle = !this.delivering && now - this.deliveredAt >= staleAfterMs;
    if (idle && now - this.staleSince >= staleAfterMs) {
      throw new AdaggError(ErrorCode.FeedStalled, `feed of ${this.subject} stalled: the stream holds seq ${last.seq}, the consumer delivered ${this.delivered} and counts nothing pending`, {
        details: { delivered: this.delivered, streamLast: last.seq },
      });
    }
    return 1;
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
