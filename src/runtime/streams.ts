import { JetStreamApiError, jetstreamManager, type JetStreamManager, type StreamConfig, type StreamInfo } from '@nats-io/jetstream';
import { DiscardPolicy, RetentionPolicy, StorageType } from '@nats-io/jetstream';
import { NoRespondersError, TimeoutError, type NatsConnection } from '@nats-io/transport-node';
import { AdaggError, ErrorCode } from '../errors.ts';
import type { Topology } from './topology.ts';

export interface StreamSetup {
  shards: number;
  replicas: number;
  /** How long raw clicks are kept for replay/recompute (Kappa). Age-based, never count-based (nats-server#4043). */
  rawRetentionMs: number;
  duplicateWindowMs: number;
  /** Size bound of the clicks stream (ADAGG_CLICKS_MAX_BYTES); 0: none at the stream level. @default 0 */
  clicksMaxBytes?: number | undefined;
  /** Size bound of the dead-letter stream (ADAGG_DLQ_MAX_BYTES). @default 128 MiB */
  dlqMaxBytes?: number | undefined;
  /** Size bound of the corrections stream. @default 256 MiB */
  correctionsMaxBytes?: number | undefined;
  /** How long transient JetStream API failures are retried (STREAM_SETUP_RETRY_MS). @default 60000 */
  setupRetryMs?: number | undefined;
}

const nanos = (ms: number): number => ms * 1_000_000;
const SHARDS_RE = /shards=(\d+)/;
/** Largest dead-letter message: records are capped to about 5 KB (dead-letter.ts), so this only stops a foreign publisher. */
const DLQ_MAX_MSG_BYTES = 16 * 1024;
/** A correction record is a few hundred bytes (ids and dimension values are bounded at ingest). */
const CORRECTIONS_MAX_MSG_BYTES = 16 * 1024;

/**
 * The size limits of both streams. Clicks: `discard: new`. At the bound JetStream refuses new
 * clicks (the producer's publish fails, POST /v1/clicks answers 503 and the client retries later)
 * instead of deleting the oldest ones: with `discard: old` a click acknowledged to its client
 * but not yet read by its shard actor could be deleted unread, a silent loss (and nats-server
 * 2.9.x writes much slower to a stream sitting at its limit, nats-server#4043). Space comes back
 * as ADAGG_RAW_RETENTION_MS ages clicks out. Dead letters: `discard: old`, they are an audit
 * trail and the newest matter most.
 */
function limits(s: StreamSetup): { clicks: Partial<StreamConfig>; dlq: Partial<StreamConfig>; corrections: Partial<StreamConfig> } {
  return {
    // No default bound: JetStream reserves a stream's max_bytes against the server's store, so a
    // bound large enough for days of clicks would starve the other streams; the store's own limit
    // refuses new writes just like `discard: new`.
    clicks: { max_bytes: s.clicksMaxBytes ? s.clicksMaxBytes : -1, discard: DiscardPolicy.New },
    dlq: { max_bytes: s.dlqMaxBytes ?? 128 * 1024 ** 2, discard: DiscardPolicy.Old, max_msg_size: DLQ_MAX_MSG_BYTES },
    // Like dead letters: an audit feed whose newest records matter most (docs/history.md).
    corrections: { max_bytes: s.correctionsMaxBytes ?? 256 * 1024 ** 2, discard: DiscardPolicy.Old, max_msg_size: CORRECTIONS_MAX_MSG_BYTES },
  };
}

/**
 * Creates the clicks, dead-letter and corrections streams if missing. The shard count is fixed when the clicks
 * stream is created and recorded in its description; a node configured with another count is
 * refused, because it would route ads to the wrong shards. Size limits are applied to existing
 * streams too (streams made by older versions had none).
 */
export async function ensureStreams(nc: NatsConnection, t: Topology, s: StreamSetup): Promise<JetStreamManager> {
  // Transient JetStream API failures (a request timing out on a loaded server, no responders or a
  // 503 while a cluster elects its meta leader) are retried for a while rather than ending the
  // process that is starting: the set-up is idempotent.
  return retryTransientJs(() => ensureStreamsOnce(nc, t, s), s.setupRetryMs ?? STREAM_SETUP_RETRY_MS);
}

/**
 * `fn()`, called again after a transient JetStream API failure (isTransientJsError), 250 ms
 * doubling to 4 s apart, until `retryMs` has passed; then its last error. For idempotent set-up
 * steps (streams, the hot-routes bucket) of a process that is starting.
 */
export async function retryTransientJs<T>(fn: () => Promise<T>, retryMs: number = STREAM_SETUP_RETRY_MS): Promise<T> {
  const deadline = Date.now() + retryMs;
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn();
    } catch (err) {
      const delay = Math.min(4000, 250 * 2 ** attempt);
      if (!isTransientJsError(err) || Date.now() + delay > deadline) throw err;
      await new Promise((r) => setTimeout(r, delay));
    }
  }
}

/** How long a process's stream set-up retries transient JetStream API failures. */
export const STREAM_SETUP_RETRY_MS = 60_000;

/** A JetStream API failure that a retry may not meet: a timeout, no responders, a 503. */
export function isTransientJsError(err: unknown): boolean {
  return err instanceof TimeoutError || err instanceof NoRespondersError || (err instanceof JetStreamApiError && err.status === 503);
}

async function ensureStreamsOnce(nc: NatsConnection, t: Topology, s: StreamSetup): Promise<JetStreamManager> {
  const jsm = await jetstreamManager(nc);
  const lim = limits(s);
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
    const subjects = existing.config.subjects.includes(t.hotSubjects) ? {} : { subjects: [...existing.config.subjects, t.hotSubjects] };
    await applyLimits(jsm, existing, { ...subjects, ...lim.clicks }, 'ADAGG_CLICKS_MAX_BYTES');
  } else {
    await jsm.streams.add({
      name: t.clicksStream,
      description: `adagg clicks shards=${s.shards}`,
      subjects: [t.clickSubjects, t.hotSubjects],
      retention: RetentionPolicy.Limits,
      storage: StorageType.File,
      max_age: nanos(s.rawRetentionMs),
      duplicate_window: nanos(Math.min(s.duplicateWindowMs, s.rawRetentionMs)),
      num_replicas: s.replicas,
      ...lim.clicks,
    }).catch((err: unknown) => createdMeanwhile(jsm, t.clicksStream, err));
  }
  const dlq = await jsm.streams.info(t.deadLetterStream).catch(() => null);
  if (dlq) {
    await applyLimits(jsm, dlq, lim.dlq, 'ADAGG_DLQ_MAX_BYTES');
  } else {
    await jsm.streams.add({
      name: t.deadLetterStream,
      description: 'adagg refused clicks',
      subjects: [t.deadLetterSubject('*')],
      storage: StorageType.File,
      max_age: nanos(s.rawRetentionMs),
      duplicate_window: nanos(Math.min(s.duplicateWindowMs, s.rawRetentionMs)),
      num_replicas: s.replicas,
      ...lim.dlq,
    }).catch((err: unknown) => createdMeanwhile(jsm, t.deadLetterStream, err));
  }
  const corr = await jsm.streams.info(t.correctionsStream).catch(() => null);
  if (corr) {
    await applyLimits(jsm, corr, lim.corrections, 'corrections stream');
  } else {
    await jsm.streams.add({
      name: t.correctionsStream,
      description: 'adagg corrections of closed minutes',
      subjects: [t.correctionSubjects],
      storage: StorageType.File,
      max_age: nanos(s.rawRetentionMs),
      duplicate_window: nanos(Math.min(s.duplicateWindowMs, s.rawRetentionMs)),
      num_replicas: s.replicas,
      ...lim.corrections,
    }).catch((err: unknown) => createdMeanwhile(jsm, t.correctionsStream, err));
  }
  return jsm;
}

/** Updates an existing stream where its config differs from `want` (nothing to do: no request). */
async function applyLimits(jsm: JetStreamManager, info: StreamInfo, want: Partial<StreamConfig>, option: string): Promise<void> {
  const cfg = info.config as unknown as Record<string, unknown>;
  const changed = Object.entries(want).some(([k, v]) => JSON.stringify(cfg[k]) !== JSON.stringify(v));
  if (!changed) return;
  await jsm.streams.update(info.config.name, want).catch((err: unknown) => {
    throw new AdaggError(ErrorCode.StreamMismatch, `stream ${info.config.name}: could not apply its limits (${option}): ${(err as Error).message}`, { cause: err });
  });
}

/**
 * Nodes starting at once race to create a stream; the losers' add fails (the server reports
 * "subjects overlap with an existing stream"). That is fine when the stream exists now.
 */
async function createdMeanwhile(jsm: JetStreamManager, stream: string, err: unknown): Promise<void> {
  if (!(await jsm.streams.info(stream).catch(() => null))) throw err;
}

/** The last sequence a stream holds now (0 when it is empty or missing). */
export async function lastSequence(nc: NatsConnection, stream: string): Promise<number> {
  const jsm = await jetstreamManager(nc, { timeout: 5000 });
  const info = await jsm.streams.info(stream).catch(() => null);
  return info?.state.last_seq ?? 0;
}
