import { DeliverPolicy, jetstream, jetstreamManager, type Consumer, type ConsumerMessages, type JetStreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { AdaggError, ErrorCode } from '../../errors.ts';

/** One stream message as an archiver needs it: where it sits, what it carries, its message id. */
export interface ArchiveMessage {
  seq: number;
  subject: string;
  /** Messages of the filter still pending after this one. */
  pending: number;
  data: Uint8Array;
  /** The `Nats-Msg-Id` header (hot forwards are `fwd-…`), or undefined. */
  msgId: string | undefined;
}

/**
 * An archiver's read of its subjects: an ordered consumer (ephemeral, R1, no acks) from a start
 * sequence, like ShardFeed (src/runtime/shard-feed.ts) but keeping each message's subject and
 * `Nats-Msg-Id`, which the archive needs (the `subject` column; skipping hot forwards). Progress is
 * the archiver's committed sequence, never a server ack. `onMessage` is awaited, so a flush in
 * progress holds the pull back instead of buffering without bound.
 */
export class ArchiveFeed {
  private consumer: Consumer | undefined;
  private messages: ConsumerMessages | undefined;
  private loop: Promise<void> | undefined;
  private jsm: JetStreamManager | undefined;
  /** Highest sequence handed to (and returned from) `onMessage`. */
  private handled = 0;

  constructor(
    private readonly nc: NatsConnection,
    readonly stream: string,
    readonly filter: string,
  ) {}

  private async manager(): Promise<JetStreamManager> {
    this.jsm ??= await jetstreamManager(this.nc, { timeout: 5000 });
    return this.jsm;
  }

  /** The stream's first and last sequence now (first > last when empty). */
  async bounds(): Promise<{ first: number; last: number }> {
    const info = await (await this.manager()).streams.info(this.stream);
    return { first: info.state.first_seq, last: info.state.last_seq };
  }

  /** Starts reading at `startSeq`; failures of the read loop (or a dead consumer) go to `onError`. */
  async start(startSeq: number, onMessage: (m: ArchiveMessage) => Promise<void>, onError: (err: unknown) => void): Promise<void> {
    const js = jetstream(this.nc);
    this.handled = startSeq - 1;
    this.consumer = await js.consumers.get(this.stream, {
      filter_subjects: this.filter,
      ...(startSeq > 1 ? { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: startSeq } : {}),
    });
    this.messages = await this.consumer.consume({ max_messages: 512, expires: 5000, idle_heartbeat: 1000 });
    const msgs = this.messages;
    // While a flush holds `onMessage`, no pull goes out and the server sends no heartbeats either:
    // that is us being slow (until 3 s after the last message returned), not the server being gone.
    let busy = false;
    let doneAt = Date.now();
    // A consumer whose server died is retried forever by the client: missed heartbeats (while we are
    // not the slow side) fail the feed, and the archiver restarts from its committed sequence.
    void (async () => {
      for await (const st of msgs.status()) {
        const slow = busy || Date.now() - doneAt < 3000;
        const dead =
          (st.type === 'heartbeats_missed' && st.count >= 3 && !slow) ||
          (st.type === 'consumer_not_found' && st.count >= 3) ||
          st.type === 'stream_not_found' ||
          st.type === 'consumer_deleted';
        if (dead) {
          onError(new AdaggError(ErrorCode.FeedStalled, `archive feed of ${this.filter} stalled (${st.type})`, { details: { status: st } }));
          return;
        }
      }
    })().catch(() => undefined);
    this.loop = (async () => {
      for await (const m of msgs) {
        busy = true;
        await onMessage({ seq: m.seq, subject: m.subject, pending: m.info.pending, data: m.data, msgId: m.headers?.get('Nats-Msg-Id') || undefined });
        this.handled = m.seq;
        busy = false;
        doneAt = Date.now();
      }
    })().catch(onError);
  }

  /**
   * A sequence through which every message of the filter has been handed to `onMessage`, possibly
   * past the last one handed (the stream's last sequence, when the consumer had nothing pending),
   * so a quiet subject's progress still moves with the stream and retention gaps stay detectable.
   * Read the stream's last sequence first, then the consumer: if the consumer then has nothing
   * pending and the server delivered nothing we have not handled, every message of the filter up
   * to that last sequence has been handled. Falls back to the last handled sequence.
   */
  async covered(): Promise<number> {
    const handled = this.handled;
    if (!this.consumer) return handled;
    try {
      const { last } = await this.bounds();
      const info = await this.consumer.info();
      if (info.num_pending === 0 && info.delivered.stream_seq <= handled && this.handled === handled) return Math.max(handled, last);
    } catch {
      // no proof either way: the handled sequence is always safe
    }
    return handled;
  }

  /** Messages of the filter the server still holds for this consumer (-1 when unknown). */
  async pending(): Promise<number> {
    try {
      return this.consumer ? (await this.consumer.info()).num_pending : -1;
    } catch {
      return -1;
    }
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
