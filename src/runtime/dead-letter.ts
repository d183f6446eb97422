import { createHash } from 'node:crypto';
import { jetstream, type JetStreamClient } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { AdaggError, ErrorCode } from '../errors.ts';
import type { Click } from '../model/click.ts';
import { NatsLink } from './nats-link.ts';
import type { Topology } from './topology.ts';

/** Bytes of a refused line kept in its dead-letter record; the rest is represented by its hash and length. */
export const DEAD_LETTER_RAW_BYTES = 4096;
/** Longest `error` text kept in a record. */
const MAX_ERROR_CHARS = 512;

/**
 * A click refused after it was read (too old for the correction horizon, too far in the future),
 * kept for audit and replay. One JSON message on `<prefix>.dlq.<reason>` of the `<PREFIX>_DLQ`
 * stream. Its size is bounded (a few KB whatever was sent):
 *
 * - `reason`, `error` (at most 512 characters), `source` (`http`, `shard 3 seq 17`, ...), `at` (epoch ms);
 * - `click`: the validated click, when the refusal came after validation (shard actors);
 * - `raw`: the line as sent, cut to its first {@link DEAD_LETTER_RAW_BYTES} bytes (at a UTF-8
 *   character boundary), with `raw_bytes` (the whole line's length in bytes), `raw_sha256` (hex
 *   SHA-256 of the whole line) and `raw_truncated` (true when `raw` is shorter than the line).
 */
export interface DeadLetter {
  reason: 'too_old' | 'in_future' | 'invalid';
  error: string;
  source: string;
  at: number;
  click?: Click | undefined;
  raw?: string | undefined;
  raw_bytes?: number | undefined;
  raw_sha256?: string | undefined;
  raw_truncated?: boolean | undefined;
}

/** The first `max` bytes of a UTF-8 buffer, cut back to a character boundary. */
function utf8Prefix(bytes: Buffer, max: number): string {
  if (bytes.length <= max) return bytes.toString('utf8');
  let end = max;
  // Continuation bytes are 10xxxxxx: step back to the start of the character that straddles the cut.
  while (end > 0 && (bytes[end]! & 0xc0) === 0x80) end--;
  return bytes.toString('utf8', 0, end);
}

/** A record as stored: `raw` capped with its hash and length, `error` capped. Idempotent. */
export function capDeadLetter(letter: DeadLetter): DeadLetter {
  const out: DeadLetter = { ...letter, error: letter.error.length > MAX_ERROR_CHARS ? `${letter.error.slice(0, MAX_ERROR_CHARS)}…` : letter.error };
  if (letter.raw !== undefined && letter.raw_sha256 === undefined) {
    const bytes = Buffer.from(letter.raw, 'utf8');
    out.raw = utf8Prefix(bytes, DEAD_LETTER_RAW_BYTES);
    out.raw_bytes = bytes.length;
    out.raw_sha256 = createHash('sha256').update(bytes).digest('hex');
    out.raw_truncated = out.raw.length < letter.raw.length;
  }
  return out;
}

export interface DeadLetterPublisherOptions {
  /**
   * Longest wait for JetStream's acknowledgement of one record; with it, a record is also refused
   * at once while the connection is known to be down (the ingest path sets it). @default the
   * client's own timeout, riding out a reconnect
   */
  timeoutMs?: number | undefined;
}

/** Publishes dead letters as JSON, one message each, with an id so a retry is not stored twice. */
export class DeadLetterPublisher {
  private readonly js: JetStreamClient;
  private readonly link: NatsLink | undefined;
  private readonly timeoutMs: number | undefined;
  constructor(
    nc: NatsConnection,
    private readonly topo: Topology,
    opts: DeadLetterPublisherOptions = {},
  ) {
    this.js = jetstream(nc);
    this.link = opts.timeoutMs === undefined ? undefined : new NatsLink(nc);
    this.timeoutMs = opts.timeoutMs;
  }

  /** Publishes every record; rejects if any failed (callers that retry the whole set use this). */
  async publish(letters: ReadonlyArray<{ id: string; letter: DeadLetter }>): Promise<void> {
    const failed = (await this.publishEach(letters)).find((r) => r !== undefined);
    if (failed !== undefined) throw failed;
  }

  /**
   * Publishes every record on its own: the result at index i is undefined when record i was
   * stored, else its error (coded). One record's failure never affects the others.
   */
  async publishEach(letters: ReadonlyArray<{ id: string; letter: DeadLetter }>): Promise<Array<AdaggError | undefined>> {
    return Promise.all(
      letters.map(async ({ id, letter }) => {
        try {
          this.link?.check('dead-letter publish');
          const opts = this.timeoutMs === undefined ? { msgID: id } : { msgID: id, timeout: this.timeoutMs };
          await this.js.publish(this.topo.deadLetterSubject(letter.reason), JSON.stringify(capDeadLetter(letter)), opts);
          return undefined;
        } catch (err) {
          if (err instanceof AdaggError) return err;
          return new AdaggError(ErrorCode.PublishFailed, `dead-letter publish failed: ${(err as Error).message}`, { cause: err });
        }
      }),
    );
  }
}

/**
 * Dead letters of clicks an actor found too old to count at stream sequence `seq`, with ids a
 * replay repeats (JetStream drops the repeats). Shards are numbered; hot children have string unit
 * ids (`h<adkey>-<gen>-<k>`).
 */
export function tooOldLetters(unit: number | string, seq: number, tooOld: readonly Click[], at: number): Array<{ id: string; letter: DeadLetter }> {
  const kind = typeof unit === 'number' ? 'shard' : 'hot child';
  return tooOld.map((click, i) => ({
    id: `dlq-${unit}-${seq}-${i}`,
    letter: {
      reason: 'too_old' as const,
      error: `click is older than the correction horizon behind the ${kind} watermark`,
      source: `${kind} ${unit} seq ${seq}`,
      at,
      click,
    },
  }));
}
