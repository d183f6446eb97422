import { createHash } from 'node:crypto';
import type { Click } from '../model/click.ts';
import { validateClick, type RejectCode, type Rejection } from '../model/validate.ts';
import type { Clock } from '../runtime/clock.ts';
import type { RuntimeEvents } from '../runtime/events.ts';
import type { DeadLetter, DeadLetterPublisher } from '../runtime/dead-letter.ts';
import type { ClickProducer } from '../runtime/producer.ts';

/** One input record: a parsed value, or the reason it could not be parsed. `line` is 1-based. */
export type IngestItem = { line: number; value: unknown; raw?: string } | { line: number; rejection: Rejection; raw?: string };

export interface RejectedLine {
  line: number;
  code: RejectCode;
  error: string;
}

export interface IngestResult {
  /** Valid clicks stored in JetStream, including those it already held (`duplicates`). */
  accepted: number;
  /** Of `accepted`, clicks in batches JetStream reported as a duplicate publish: already ingested. */
  duplicates: number;
  rejected: RejectedLine[];
}

export interface ClickIngestOptions {
  correctionHorizonMs: number;
  maxFutureMs: number;
  /** `map` (default) or `keep` alpha-3 country codes (ADAGG_COUNTRY_ALPHA3). */
  countryAlpha3?: string;
}

/** Rejections that are also recorded in the dead-letter stream (time-window refusals of well-formed clicks). */
const DEAD_LETTERED: ReadonlySet<RejectCode> = new Set(['too_old', 'in_future']);

/**
 * The one ingest path of HTTP and `adagg ingest --nats`: validate each record, publish the good ones
 * through the producer (resolves after JetStream acknowledged them), dead-letter time-window
 * refusals, and report every bad record with its line and code. Good records beside bad ones are
 * never lost.
 */
export class ClickIngest {
  constructor(
    private readonly producer: ClickProducer,
    private readonly deadLetters: Pick<DeadLetterPublisher, 'publishEach'>,
    private readonly opts: ClickIngestOptions,
    private readonly clock: Clock,
    private readonly events?: RuntimeEvents,
  ) {}

  async ingest(items: readonly IngestItem[], source: string): Promise<IngestResult> {
    const limits = { nowMs: this.clock.now(), ...this.opts };
    const clicks: Click[] = [];
    const rejected: RejectedLine[] = [];
    const letters: Array<{ id: string; letter: DeadLetter }> = [];
    const letterLines: RejectedLine[] = [];
    for (const item of items) {
      const v = 'rejection' in item ? ({ ok: false, rejection: item.rejection } as const) : validateClick(item.value, limits);
      if (v.ok) {
        clicks.push(v.click);
        continue;
      }
      const r: RejectedLine = { line: item.line, code: v.rejection.code, error: v.rejection.error };
      rejected.push(r);
      if (DEAD_LETTERED.has(v.rejection.code)) {
        // A JSON-body item has no raw text; its value is depth-bounded (body.ts), so this cannot overflow.
        const raw = item.raw ?? JSON.stringify('value' in item ? item.value : null);
        letterLines.push(r);
        letters.push({
          id: `dlq-in-${createHash('sha256').update(raw).digest('base64url').slice(0, 24)}`,
          letter: { reason: v.rejection.code as DeadLetter['reason'], error: v.rejection.error, source, at: limits.nowMs, raw },
        });
      }
    }
    // Dead letters succeed or fail one by one: a record that could not be stored is noted on its own
    // line, never failing the request or the good clicks beside it. (The publisher caps each record.)
    const [published, letterErrors] = await Promise.all([clicks.length ? this.producer.publish(clicks) : undefined, letters.length ? this.deadLetters.publishEach(letters) : []]);
    letterErrors.forEach((err, i) => {
      const r = letterLines[i];
      if (err !== undefined && r !== undefined) r.error += `; not recorded in the dead-letter stream (${err.code})`;
    });
    const codes: Record<string, number> = {};
    for (const r of rejected) codes[r.code] = (codes[r.code] ?? 0) + 1;
    this.events?.emit('ingest', { source, accepted: clicks.length, rejected: rejected.length, codes });
    return { accepted: clicks.length, duplicates: published?.duplicateClicks ?? 0, rejected };
  }
}
