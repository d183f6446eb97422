/**
 * Scenario 7 (memory), the in-process half: bytes of the click-id dedupe table (ClickDedup, the
 * structure whose cost grows with tracked ids) per million ids of the bench's id format, with the
 * same method as bench/dedup-memory.ts (table byteLength and heap+arrayBuffers delta after GC when
 * --expose-gc is available). The service-side half (RSS, tracked_ids) comes from the pipeline runs.
 */
import { ClickDedup } from '../../src/actors/shard/click-dedup.ts';

export interface DedupMemory {
  ids: number;
  tableBytesPerMillion: number;
  snapshotBytesPerMillion: number;
  insertsPerSec: number;
}

export function dedupMemory(n = 1_000_000): DedupMemory {
  const ids = new Array<string>(n);
  for (let i = 0; i < n; i++) ids[i] = `k0abcd-${i.toString(36)}`;
  const d = new ClickDedup();
  const t = performance.now();
  for (let i = 0; i < n; i++) d.addIfAbsent(ids[i]!, 29_000_000 + (i % 5));
  const insertMs = performance.now() - t;
  const bytes = d.toBytes().byteLength;
  return {
    ids: n,
    tableBytesPerMillion: (d.byteLength / n) * 1e6,
    snapshotBytesPerMillion: (bytes / n) * 1e6,
    insertsPerSec: (n * 1000) / insertMs,
  };
}
