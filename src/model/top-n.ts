import { Heap } from 'heap-js';

export interface Ranked {
  ad_id: string;
  count: number;
}

/** Ranking order: count descending, then ad_id ascending. Negative when `a` ranks above `b`. */
export function rankCompare(a: Ranked, b: Ranked): number {
  if (a.count !== b.count) return b.count - a.count;
  return a.ad_id < b.ad_id ? -1 : a.ad_id > b.ad_id ? 1 : 0;
}

/**
 * The exact top `n` of a count map with a bounded heap (heap-js): O(k log n) for k ads, keeping
 * only n entries. The heap's top is the worst of the current top n, so each candidate is compared
 * with it once.
 */
export function topN(counts: Iterable<[string, number]>, n: number): Ranked[] {
  if (n <= 0) return [];
  const heap = new Heap<Ranked>((a, b) => rankCompare(b, a));
  for (const [ad_id, count] of counts) {
    if (count <= 0) continue;
    if (heap.length < n) {
      heap.push({ ad_id, count });
      continue;
    }
    const worst = heap.peek()!;
    if (rankCompare({ ad_id, count }, worst) < 0) heap.replace({ ad_id, count });
  }
  return heap.toArray().sort(rankCompare);
}
