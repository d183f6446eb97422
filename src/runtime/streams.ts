import { jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { DiscardPolicy, RetentionPolicy, StorageType } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { AdaggError, ErrorCode } from '../errors.ts';
import type { Topology } from './topology.ts';

export interface StreamSetup {
  shards: number;
  replicas: number;
  /** How long raw clicks are kept for replay/recompute (Kappa). Age-based, never count-based (nats-server#4043). */
  rawRetentionMs: number;
  duplicateWindowMs: number;
}

const nanos = (ms: number): number => ms * 1_000_000;
const SHARDS_RE = /shards=(\d+)/;

/**
 * Creates the clicks and dead-letter streams if missing. The shard count is fixed when the clicks
 * stream is created and recorded in its description; a node configured with another count is
 * refused, because it would route ads to the wrong shards.
 */
export async function ensureStreams(nc: NatsConnection, t: Topology, s: StreamSetup): Promise<JetStreamManager> {
  const jsm = await jetstreamManager(nc);
  const existing = await jsm.streams.info(t.clicksStream).catch(() => null);
  if (existing) {
    const m = SHARDS_RE.exec(existing.config.description ?? '');
    if (m && Number(m[1]) !== s.shards) {
      throw new AdaggError(
        ErrorCode.StreamMismatch,
        `stream ${t.clicksStream} was created with ${m[1]} shards, this node is configured with ${s.shards} (ADAGG_SHARDS)`,
      );
    }
    // Hot-ad child subjects (added later than the stream layout): add them to an older stream.
    if (!existing.config.subjects.includes(t.hotSubjects)) {
      await jsm.streams.update(t.clicksStream, { subjects: [...existing.config.subjects, t.hotSubjects] });
    }
  } else {
    await jsm.streams.add({
      name: t.clicksStream,
      description: `adagg clicks shards=${s.shards}`,
      subjects: [t.clickSubjects, t.hotSubjects],
      retention: RetentionPolicy.Limits,
      storage: StorageType.File,
      discard: DiscardPolicy.Old,
      max_age: nanos(s.rawRetentionMs),
      duplicate_window: nanos(Math.min(s.duplicateWindowMs, s.rawRetentionMs)),
      num_replicas: s.replicas,
    }).catch((err: unknown) => createdMeanwhile(jsm, t.clicksStream, err));
  }
  await jsm.streams.info(t.deadLetterStream).catch(async () => {
    await jsm.streams.add({
      name: t.deadLetterStream,
      description: 'adagg refused clicks',
      subjects: [t.deadLetterSubject('*')],
      storage: StorageType.File,
      max_age: nanos(s.rawRetentionMs),
      duplicate_window: nanos(Math.min(s.duplicateWindowMs, s.rawRetentionMs)),
      num_replicas: s.replicas,
    }).catch((err: unknown) => createdMeanwhile(jsm, t.deadLetterStream, err));
  });
  return jsm;
}

/**
 * Nodes starting at once race to create a stream; the losers' add fails (the server reports
 * "subjects overlap with an existing stream"). That is fine when the stream exists now.
 */
async function createdMeanwhile(jsm: JetStreamManager, stream: string, err: unknown): Promise<void> {
  if (!(await jsm.streams.info(stream).catch(() => null))) throw err;
}
