import { createHash } from 'node:crypto';
import { jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { INVALID_DIM } from '../model/risk-fields.ts';
import type { CorrectionCause, CountCorrection, UnitId } from '../model/shard-state.ts';
import { isoOf, minuteStartMs } from '../model/time.ts';
import { ClickProducer } from './producer.ts';
import type { Topology } from './topology.ts';

/**
 * One record of the corrections feed (docs/history.md, "Corrections feed"): a field of a closed,
 * committed minute changed from `old` (the stored value the actor read) to `new` (the value its
 * commit writes). Absolute values: a follower keeps the latest record per
 * (unit, ad_id, minute, dim, value) in stream order.
 */
export interface CorrectionRecord {
  ad_id: string;
  /** ISO start of the minute. */
  minute: string;
  /** As stored: null for the ad's totals; `!inv` / `!inv:<rule>:<dim>` for invalid-click fields. */
  dim: string | null;
  value: string | null;
  /** The risk rule whose invalid-click field this is (risk-fields.ts); null for billable fields. */
  rule: string | null;
  old: number;
  new: number;
  cause: CorrectionCause;
  unit: UnitId;
  /** The stream sequence of the commit that makes the change. */
  seq: number;
  /** ISO time the record was made (publisher's clock). */
  at: string;
}

/** Records published at once (each is one JetStream publish; the rest wait their turn). */
const IN_FLIGHT = 256;

/** The rule of an invalid-click field: `!inv` holds rule names as values, `!inv:<rule>:<dim>` names it. */
export function ruleOfField(dim: string | null, value: string | null): string | null {
  if (dim === INVALID_DIM) return value;
  if (dim?.startsWith(`${INVALID_DIM}:`)) {
    const rest = dim.slice(INVALID_DIM.length + 1);
    const i = rest.lastIndexOf(':');
    return i > 0 ? rest.slice(0, i) : rest;
  }
  return null;
}

/**
 * A commit's corrections as records. `all`: also fields whose value came back to the stored one
 * (a commit replaying what a crashed incarnation may have published: see CorrectionsPublisher).
 */
export function correctionRecords(unit: UnitId, seq: number, list: readonly CountCorrection[], atMs: number, all: boolean): CorrectionRecord[] {
  const at = isoOf(atMs);
  const out: CorrectionRecord[] = [];
  for (const c of list) {
    if (!all && c.old === c.new) continue;
    out.push({ ad_id: c.adId, minute: isoOf(minuteStartMs(c.minute)), dim: c.dim, value: c.value, rule: ruleOfField(c.dim, c.value), old: c.old, new: c.new, cause: c.cause, unit, seq, at });
  }
  return out;
}

/** A record's Nats-Msg-Id: a hash of everything but `at`, so a retry (or the same replayed record) is dropped by JetStream. */
export function correctionMsgId(r: CorrectionRecord): string {
  const h = createHash('sha256').update(JSON.stringify([r.unit, r.seq, r.ad_id, r.minute, r.dim, r.value, r.old, r.new, r.cause])).digest('hex');
  return `corr-${h.slice(0, 32)}`;
}

/**
 * Publishes a shard actor's corrections on `<p>.corrections.<unit>` before the commit that makes
 * them is written (like the risk outbox): a crash in between replays the messages and the commit
 * publishes again, so a correction is never lost, and repeats carry absolute values. Sent through
 * the producer's retrying publish with a deterministic id per record; a failure fails the commit.
 *
 * A replay after a crash can group changes into commits differently, and a field whose value a
 * crashed incarnation published may come back to its stored value in the replay's commit: so
 * commits that cover stream positions a previous incarnation may have published for
 * (`lastPublishedSeq`) publish every field they touched, changed or not.
 */
export class CorrectionsPublisher {
  private readonly producer: ClickProducer;
  private jsm: JetStreamManager | undefined;
  constructor(
    private readonly nc: NatsConnection,
    private readonly topo: Topology,
    shards: number,
  ) {
    this.producer = new ClickProducer(nc, topo, { shards });
  }

  /** The commit sequence of the last record published for `unit` (0: none, or the stream is gone). */
  async lastPublishedSeq(unit: UnitId): Promise<number> {
    this.jsm ??= await jetstreamManager(this.nc);
    const m = await this.jsm.streams.getMessage(this.topo.correctionsStream, { last_by_subj: this.topo.correctionSubject(unit) }).catch(() => null);
    if (!m) return 0;
    const seq = (m.json<Partial<CorrectionRecord>>()).seq;
    return typeof seq === 'number' ? seq : 0;
  }

  /** Publishes records in order of the list (up to IN_FLIGHT at a time); resolves when all are stored. */
  async publish(records: readonly CorrectionRecord[]): Promise<void> {
    const enc = new TextEncoder();
    for (let i = 0; i < records.length; i += IN_FLIGHT) {
      await Promise.all(
        records.slice(i, i + IN_FLIGHT).map((r) => this.producer.send(this.topo.correctionSubject(r.unit), enc.encode(JSON.stringify(r)), correctionMsgId(r))),
      );
    }
  }
}
