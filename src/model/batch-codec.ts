import { createHash } from 'node:crypto';
import { Packr, Unpackr } from 'msgpackr';
import { AdaggError, ErrorCode } from '../errors.ts';
import type { Click } from './click.ts';

/**
 * Wire format of one JetStream message: many clicks in one MessagePack document,
 * `[version, rows]` with each row `[click_id, ad_id, ts, user_id, ip, country, attrs]`
 * (absent fields as nil). Rows instead of maps keep field names out of every event.
 */
export const BATCH_VERSION = 1;

type Row = [string, string, number, string | null, string | null, string | null, Record<string, string> | null];

// msgpackr instead of @msgpack/msgpack on this hot path: measured 4.2x faster decode and 1.8x faster
// encode of these batches (bench/codec-compare.ts). Records/structures are off, so the bytes stay
// plain MessagePack that any client can read, and batches written by @msgpack/msgpack still decode.
const encoder = new Packr({ useRecords: false });
const decoder = new Unpackr({ useRecords: false });

export function encodeBatch(clicks: readonly Click[]): Uint8Array {
  const rows: Row[] = new Array(clicks.length);
  for (let i = 0; i < clicks.length; i++) {
    const c = clicks[i]!;
    rows[i] = [c.click_id, c.ad_id, c.ts, c.user_id ?? null, c.ip ?? null, c.country ?? null, c.attrs ?? null];
  }
  return encoder.pack([BATCH_VERSION, rows]);
}

export function decodeBatch(data: Uint8Array): Click[] {
  let doc: unknown;
  try {
    doc = decoder.unpack(data);
  } catch (err) {
    throw new AdaggError(ErrorCode.BatchCorrupt, 'batch is not valid MessagePack', { cause: err });
  }
  if (!Array.isArray(doc) || doc[0] !== BATCH_VERSION || !Array.isArray(doc[1])) {
    throw new AdaggError(ErrorCode.BatchCorrupt, `batch has an unknown layout (expected [${BATCH_VERSION}, rows])`);
  }
  const rows = doc[1] as unknown[];
  const out: Click[] = new Array(rows.length);
  for (let i = 0; i < rows.length; i++) {
    const r = rows[i];
    if (!Array.isArray(r) || typeof r[0] !== 'string' || typeof r[1] !== 'string' || typeof r[2] !== 'number') {
      throw new AdaggError(ErrorCode.BatchCorrupt, `batch row ${i} is malformed`);
    }
    const c: Click = { click_id: r[0], ad_id: r[1], ts: r[2] };
    if (typeof r[3] === 'string') c.user_id = r[3];
    if (typeof r[4] === 'string') c.ip = r[4];
    if (typeof r[5] === 'string') c.country = r[5];
    if (r[6] && typeof r[6] === 'object') c.attrs = r[6] as Record<string, string>;
    out[i] = c;
  }
  return out;
}

/**
 * Deterministic `Nats-Msg-Id` of a batch: the same clicks on the same shard always give the same id,
 * so a producer's retry (or a client re-posting the same request) is dropped by JetStream's
 * duplicate window; duplicates beyond the window are removed by click_id in the shard actor.
 */
export function batchMsgId(shard: number, clicks: readonly Click[]): string {
  const h = createHash('sha256');
  h.update(String(shard));
  // Length-prefixed, so no two different lists of ids can hash the same input.
  for (const c of clicks) h.update(`${c.click_id.length}:${c.click_id}`);
  return `b${shard}-${h.digest('base64url').slice(0, 32)}`;
}
