import { VersionedMessages } from './versioned-message.ts';
import { AdaggError, ErrorCode } from '../errors.ts';
import { fnv1a32Utf8 } from './partition.ts';

/**
 * Control messages of hot-ad splitting. They travel in the same JetStream subjects as click batches
 * (`[1, rows]`, batch-codec.ts) as `[2, {kind, ...}]`, so a shard applies them at a deterministic
 * stream sequence and a replay after a crash reproduces them:
 * - `split` / `unsplit`, published by the operator CLI or the hot-ad detector into the PARENT's
 *   subject (`<prefix>.clicks.<shard>`); the parent's sequence S of the split is the split's `gen`;
 * - `report`, published by a child into its parent's subject after each of its commits: absolute
 *   per-minute partial counts (idempotent overwrites), its closedThrough, and in its final report
 *   the child's dedupe ids;
 * - `end`, published by the parent into each child's subject once an unsplit was applied.
 */
export const CONTROL_VERSION = 2;

/** `[minute, dim | null, value | null, absolute count]` of the child's one ad. */
export type ReportRow = [number, string | null, string | null, number];

export type HotControl =
  | { kind: 'split'; ad: string; children: number; by?: string | undefined }
  | { kind: 'unsplit'; ad: string; by?: string | undefined }
  | {
      kind: 'report';
      ad: string;
      gen: number;
      k: number;
      closedThrough: number;
      /** The child's last report: its minutes are final and `ids` carry its dedupe table (in `parts` messages). */
      final: boolean;
      part: number;
      parts: number;
      rows: ReportRow[];
      /** Final parts only: dedupe entries, 12 bytes each (u32 hi, u32 lo, i32 minute, little-endian). */
      ids?: Uint8Array | undefined;
    }
  | { kind: 'end'; ad: string; gen: number };

const codec = new VersionedMessages(CONTROL_VERSION, 'control message');

export function encodeControl(msg: HotControl): Uint8Array {
  return codec.encode(msg);
}

/**
 * Whether a stream message is a control message rather than a click batch, from its first two bytes
 * (a 2-element MessagePack array whose first element is the version) without decoding it.
 */
export function isControlMessage(data: Uint8Array): boolean {
  return codec.is(data);
}

export function decodeControl(data: Uint8Array): HotControl {
  const m = codec.unpack(data);
  const bad = (what: string): AdaggError => new AdaggError(ErrorCode.BatchCorrupt, `control message ${String(m.kind)}: ${what}`);
  if (typeof m.ad !== 'string' || m.ad === '') throw bad('ad must be a non-empty string');
  const int = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v);
  switch (m.kind) {
    case 'split':
      if (!int(m.children) || m.children < 1 || m.children > MAX_CHILDREN) throw bad(`children must be 1..${MAX_CHILDREN}`);
      return { kind: 'split', ad: m.ad, children: m.children, by: typeof m.by === 'string' ? m.by : undefined };
    case 'unsplit':
      return { kind: 'unsplit', ad: m.ad, by: typeof m.by === 'string' ? m.by : undefined };
    case 'end':
      if (!int(m.gen)) throw bad('gen must be an integer');
      return { kind: 'end', ad: m.ad, gen: m.gen };
    case 'report': {
      if (!int(m.gen) || !int(m.k) || !int(m.part) || !int(m.parts) || typeof m.closedThrough !== 'number') throw bad('bad numbers');
      if (!Array.isArray(m.rows)) throw bad('rows must be an array');
      for (const r of m.rows as unknown[]) {
        if (!Array.isArray(r) || !int(r[0]) || typeof r[3] !== 'number' || (r[1] !== null && typeof r[1] !== 'string')) throw bad('malformed row');
      }
      const ids = m.ids instanceof Uint8Array ? m.ids : undefined;
      if (ids && ids.byteLength % ID_BYTES !== 0) throw bad('ids are not whole entries');
      return {
        kind: 'report',
        ad: m.ad,
        gen: m.gen,
        k: m.k,
        closedThrough: m.closedThrough,
        final: m.final === true,
        part: m.part,
        parts: m.parts,
        rows: m.rows as ReportRow[],
        ids,
      };
    }
    default:
      throw bad('unknown kind');
  }
}

/** Most children of one ad. */
export const MAX_CHILDREN = 64;
/** Bytes of one dedupe entry in a final report (as ClickDedup.toBytes writes them). */
export const ID_BYTES = 12;
/** Dedupe entries per final-report message: 65,536 × 12 B = 768 KiB, under NATS' default 1 MiB payload. */
export const IDS_PER_PART = 65_536;

/** Token-safe encoding of an ad_id for subjects, KV keys and unit ids: hex of its UTF-8 bytes. */
export function adKey(adId: string): string {
  return Buffer.from(adId, 'utf8').toString('hex');
}

/** The child of a split ad that counts `clickId`: stable, so every copy of a click meets in one child. */
export function childOf(clickId: string, children: number): number {
  return fnv1a32Utf8(clickId) % children;
}

/** Placement/persistence unit of child `k` of split `gen` of an ad: `h<adkey>-<gen>-<k>`. */
export function childUnit(adId: string, gen: number, k: number): string {
  return `h${adKey(adId)}-${gen}-${k}`;
}
