/**
 * The shape of the dedupe table (click-dedup.ts): its tag window, load bounds and slot counts,
 * and the types of its options and persisted blocks.
 * @module
 */

/** Tag residues: a slot's tag is 1 + (bucket mod 255); 0 marks an empty slot. */
export const RESIDUES = 255;
/** Widest span of live buckets; below 255 so that live buckets have distinct tags (see ClickDedup, click-dedup.ts). */
export const SPAN = 250;
export const MIN_CAPACITY = 1024;
export const MAX_CAPACITY = 2 ** 29; // 2^30 key words (4 GiB) is the largest Uint32Array worth making
/** Load = ids / home slots, held in [0.76, 0.93] so that 9 bytes per slot stay under 12 per id. */
export const GROW_ABOVE = 0.93;
export const GROW_TO = 0.77;
export const SHRINK_BELOW = 0.76;
export const SHRINK_TO = 0.88;
export const RESTORE_LOAD = 0.85;
export const TWO_32 = 4294967296;

export const mod255 = (x: number): number => ((x % RESIDUES) + RESIDUES) % RESIDUES;
export const tagOf = (bucket: number): number => mod255(bucket) + 1;
/** Slots past the last home slot, so that runs near the end never wrap around. */
export const slackFor = (cap: number): number => 64 + (cap >>> 10);
/** Slot count: home slots + slack, rounded up to whole 4-tag words. */
export const slotsFor = (cap: number, slack: number): number => (cap + slack + 3) & ~3;

export function capacityFor(n: number, load: number): number {
  const cap = Math.max(MIN_CAPACITY, Math.ceil(n / load));
  if (cap > MAX_CAPACITY) throw new RangeError(`ClickDedup is full (${n} ids)`);
  return cap;
}

/** Options of {@link ClickDedup}. */
export interface ClickDedupOptions {
  /**
   * Minutes per event-time bucket: ids are kept, persisted and expired per bucket, and the live
   * buckets must fit in 250 of them; derive it with {@link ClickDedup.bucketMinutesFor}.
   * @default 1
   */
  bucketMinutes?: number;
  /** Home slots to start with (at least 1024); pre-sizing for a known count skips growth steps. @default 1024 */
  initialCapacity?: number;
}

/** One persisted block: ids recorded in one bucket, as 8-byte records (u32 h LE, u32 l LE). */
export interface DedupBlock {
  /** First minute of the bucket (bucket * bucketMinutes): the block's key. */
  block: number;
  bytes: Uint8Array;
}

/** What {@link ClickDedup.takeChanges} hands to the store, both in ascending block order. */
export interface DedupChanges {
  /** Records to append to each block. */
  appends: DedupBlock[];
  /** Blocks that expired: delete them. Never also in `appends`. */
  dropped: number[];
}

/**
 * Smallest bucket size g >= 1 with ceil(spanMinutes / g) + 2 <= 250, for a caller whose ids span
 * `spanMinutes` (retention + max future + lateness): its live buckets then fit the tags' window.
 */
export function bucketMinutesFor(spanMinutes: number): number {
  if (!Number.isFinite(spanMinutes) || spanMinutes < 0) throw new RangeError(`bad span ${spanMinutes}`);
  let g = Math.max(1, Math.ceil(spanMinutes / (SPAN - 2)));
  while (g > 1 && Math.ceil(spanMinutes / (g - 1)) + 2 <= SPAN) g--;
  while (Math.ceil(spanMinutes / g) + 2 > SPAN) g++;
  return g;
}
