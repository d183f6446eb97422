import { Packr, Unpackr } from 'msgpackr';
import { AdaggError, ErrorCode } from '../errors.ts';

/**
 * Control messages that share the clicks stream with click batches (`[1, rows]`, batch-codec.ts):
 * MessagePack `[version, {kind, ...}]`, recognised from their first two bytes (a fixarray of 2 and
 * the version) without decoding. Used for hot-split control (version 2, hot-messages.ts) and
 * invalid-click messages (version 3, risk-messages.ts).
 */
export class VersionedMessages {
  private readonly encoder = new Packr({ useRecords: false });
  private readonly decoder = new Unpackr({ useRecords: false });

  constructor(
    readonly version: number,
    /** What the messages are, for errors: `control message`, `risk message`. */
    private readonly what: string,
  ) {}

  encode(msg: object): Uint8Array {
    return this.encoder.pack([this.version, msg]);
  }

  /** Whether a stream message is one of these, from its first two bytes. */
  is(data: Uint8Array): boolean {
    return data.length > 2 && data[0] === 0x92 && data[1] === this.version;
  }

  /** The message object of `[version, {kind}]`; throws ADAGG_E_BATCH_CORRUPT for anything else. */
  unpack(data: Uint8Array): Record<string, unknown> {
    let doc: unknown;
    try {
      doc = this.decoder.unpack(data);
    } catch (err) {
      throw new AdaggError(ErrorCode.BatchCorrupt, `${this.what} is not valid MessagePack`, { cause: err });
    }
    if (!Array.isArray(doc) || doc[0] !== this.version || !doc[1] || typeof doc[1] !== 'object') {
      throw new AdaggError(ErrorCode.BatchCorrupt, `${this.what} has an unknown layout (expected [${this.version}, {kind}])`);
    }
    return doc[1] as Record<string, unknown>;
  }
}
