/**
 * What recompute feeds its private shard actors, in stream order: the raw archive's rows (DuckDB
 * over the Parquet files of the hours around the range), the stream tail the archivers have not
 * written yet (read from JetStream), then the backfilled rows (subject `backfill`).
 *
 * Like the live actors (and reconcile-raw.ts): a shard subject's messages only up to the shard's
 * committed `seq`; every hot child subject's message; not the copies the live actors refused as
 * too old (dead letters `too_old`, matched on (click_id, src_seq) = (click_id, seq), archived or
 * still in the dead-letter stream).
 */
import { DeliverPolicy, jetstream, type JsMsg } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import type { DuckDBConnection, DuckDBValue } from '@duckdb/node-api';
import { decodeBatch } from '../../model/batch-codec.ts';
import type { Click } from '../../model/click.ts';
import { isControlMessage } from '../../model/hot-messages.ts';
import { isRiskMessage } from '../../model/risk-messages.ts';
import { sqlString } from './duckdb.ts';
import { sqlList, subjectSeqsSql, tooOldCopiesSql } from './archive-sql.ts';
import { deadLetterRow } from './archive-buffer.ts';
import { rawFilesOfHour } from './reconcile-raw.ts';

/** The subject of backfilled rows (adagg backfill). */
export const BACKFILL_SUBJECT = 'backfill';

const HOUR_MS = 3_600_000;

/** One message's clicks (or one backfill batch): `subject` and `seq` as in the archive. */
export interface SourceBatch {
  subject: string;
  seq: number;
  clicks: Click[];
}

/** Raw files (finished `.parquet` only) of every UTC hour that overlaps [fromMs, toMs). */
export async function rawFilesOfHours(root: string, fromMs: number, toMs: number): Promise<string[]> {
  const out: string[] = [];
  for (let h = Math.floor(fromMs / HOUR_MS) * HOUR_MS; h < toMs; h += HOUR_MS) out.push(...(await rawFilesOfHour(root, h)));
  return out;
}

export interface ArchiveRowsQuery {
  rawFiles: readonly string[];
  deadLetterFiles: readonly string[];
  /** Shard subject → its committed sequence. */
  committed: ReadonlyMap<string, number>;
  /** `<p>.hot.`: rows of hot child subjects are all taken. */
  hotSubjectPrefix: string;
  /** Only these ads' rows (all when undefined). */
  ads?: ReadonlySet<string> | undefined;
}

/** The SQL of {@link streamArchiveRows}: applied rows, too-old copies removed, stream rows by seq then backfill rows. */
export function archiveRowsSql(q: ArchiveRowsQuery): string {
  const committed = subjectSeqsSql(q.committed);
  const tooOld = tooOldCopiesSql(q.deadLetterFiles);
  const ads = q.ads ? `AND r.ad_id IN (SELECT unnest(${sqlList(q.ads)}))` : '';
  return `
WITH raw AS (
  SELECT click_id, ad_id, ts, user_id, ip, country, attrs, subject, seq, pos FROM read_parquet(${sqlList(q.rawFiles)}, hive_partitioning = false)
),
committed AS (${committed}),
too_old AS (${tooOld})
SELECT r.click_id, r.ad_id, r.ts, r.user_id, r.ip, r.country, r.attrs, r.subject, r.seq, r.pos
FROM raw r
LEFT JOIN committed c ON c.subject = r.subject
LEFT JOIN too_old d ON d.click_id = r.click_id AND d.src_seq = r.seq AND r.subject <> ${sqlString(BACKFILL_SUBJECT)}
WHERE d.click_id IS NULL ${ads}
  AND (r.subject = ${sqlString(BACKFILL_SUBJECT)} OR starts_with(r.subject, ${sqlString(q.hotSubjectPrefix)}) OR r.seq <= c.seq)
ORDER BY r.subject = ${sqlString(BACKFILL_SUBJECT)}, r.seq, r.subject, r.pos`;
}

const opt = (v: DuckDBValue): string | undefined => (v === null || v === undefined ? undefined : String(v));

/**
 * Streams the archive's rows (see {@link archiveRowsSql}) as batches of one (subject, seq) each,
 * in order, a DuckDB chunk at a time (never the whole result in memory).
 */
export async function* streamArchiveRows(conn: DuckDBConnection, q: ArchiveRowsQuery): AsyncGenerator<SourceBatch> {
  if (q.rawFiles.length === 0) return;
  const result = await conn.stream(archiveRowsSql(q));
  let cur: SourceBatch | undefined;
  for (;;) {
    const chunk = await result.fetchChunk();
    if (!chunk || chunk.rowCount === 0) break;
    for (const r of chunk.getRows()) {
      const subject = String(r[7]);
      const seq = Number(r[8]);
      const click: Click = { click_id: String(r[0]), ad_id: String(r[1]), ts: Number(r[2]) };
      const user = opt(r[3] ?? null);
      const ip = opt(r[4] ?? null);
      const country = opt(r[5] ?? null);
      const attrs = opt(r[6] ?? null);
      if (user !== undefined) click.user_id = user;
      if (ip !== undefined) click.ip = ip;
      if (country !== undefined) click.country = country;
      if (attrs !== undefined) click.attrs = JSON.parse(attrs) as Record<string, string>;
      if (cur && cur.subject === subject && cur.seq === seq) cur.clicks.push(click);
      else {
        if (cur) yield cur;
        cur = { subject, seq, clicks: [click] };
      }
    }
  }
  if (cur) yield cur;
}

/**
 * Reads the messages of `filter` with sequences in [fromSeq, toSeq] from `stream` (an ephemeral
 * ordered consumer, deleted afterwards), awaiting `onMsg` for each.
 */
export async function readStreamRange(
  nc: NatsConnection,
  stream: string,
  filter: string,
  fromSeq: number,
  toSeq: number,
  onMsg: (m: JsMsg) => void | Promise<void>,
): Promise<number> {
  if (fromSeq > toSeq) return 0;
  const js = jetstream(nc);
  const c = await js.consumers.get(stream, { filter_subjects: filter, deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: Math.max(1, fromSeq) });
  let read = 0;
  try {
    if ((await c.info(true)).num_pending === 0) return 0;
    for (let done = false; !done; ) {
      const iter = await c.fetch({ max_messages: 256, expires: 3000 });
      let got = 0;
      for await (const m of iter) {
        got++;
        if (m.seq > toSeq) {
          done = true;
          break;
        }
        await onMsg(m);
        read++;
        if (m.seq >= toSeq || m.info.pending === 0) {
          done = true;
          break;
        }
      }
      if (done) iter.stop();
      if (got === 0) done = true;
    }
  } finally {
    await c.delete().catch(() => undefined);
  }
  return read;
}

/** Where the tail starts and ends for each unit. */
export interface TailPlan {
  /** Shard subject → [archived + 1, committed]. */
  shards: ReadonlyArray<{ subject: string; from: number; to: number }>;
  /** Hot child subjects: [archived + 1, last]. */
  hot: { filter: string; from: number; to: number };
  /** Dead-letter stream: [archived + 1, last]. */
  deadLetters: { stream: string; filter: string; from: number; to: number };
  clicksStream: string;
}

/** The stream tail: its click batches in stream order, and the too-old refusals the dead-letter tail holds. */
export interface StreamTail {
  batches: SourceBatch[];
  /** `${click_id} ${seq}` of copies a live actor refused as too old, not archived yet. */
  tooOld: Set<string>;
  messages: number;
}

/** Reads the tail (see {@link TailPlan}); `ads` keeps only those ads' clicks. */
export async function readTail(nc: NatsConnection, plan: TailPlan, ads: ReadonlySet<string> | undefined, onMessage?: () => void): Promise<StreamTail> {
  const batches: SourceBatch[] = [];
  let messages = 0;
  const take = (m: JsMsg, skipForwards: boolean): void => {
    messages++;
    onMessage?.();
    if (isControlMessage(m.data) || isRiskMessage(m.data)) return;
    // A parent's forwarded copy on a hot subject: archived (and fed) on the parent's subject.
    if (skipForwards && m.headers?.get('Nats-Msg-Id')?.startsWith('fwd-')) return;
    let clicks = decodeBatch(m.data);
    if (ads) clicks = clicks.filter((c) => ads.has(c.ad_id));
    if (clicks.length > 0) batches.push({ subject: m.subject, seq: m.seq, clicks });
  };
  for (const s of plan.shards) await readStreamRange(nc, plan.clicksStream, s.subject, s.from, s.to, (m) => take(m, false));
  await readStreamRange(nc, plan.clicksStream, plan.hot.filter, plan.hot.from, plan.hot.to, (m) => take(m, true));
  const tooOld = new Set<string>();
  const dl = plan.deadLetters;
  await readStreamRange(nc, dl.stream, dl.filter, dl.from, dl.to, (m) => {
    const r = deadLetterRow(m.data, 0);
    if (r.reason === 'too_old' && r.srcSeq !== undefined && typeof r.click?.click_id === 'string') tooOld.add(`${r.click.click_id} ${r.srcSeq}`);
  });
  batches.sort((a, b) => a.seq - b.seq);
  return { batches, tooOld, messages };
}
