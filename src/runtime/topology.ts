/** Names of adagg's streams and subjects, derived from one prefix so tests can run side by side. */
export interface Topology {
  /** Stream of raw clicks: one subject per shard. */
  clicksStream: string;
  /** Stream of refused clicks (too_old at ingest or in an actor). */
  deadLetterStream: string;
  clickSubject(shard: number): string;
  clickSubjects: string;
  deadLetterSubject(reason: string): string;
  /** Request/reply subject on which the owner of a shard answers queries. */
  querySubject(shard: number | string): string;
  /** Subject on which a shard publishes its ranking updates (top-K lists and deltas). */
  rankingSubject(shard: number): string;
  rankingSubjects: string;
  /** Subject of child `k` of split `gen` of a hot ad (`adKey`: hex of the ad_id, hot-messages.ts). */
  hotSubject(adKey: string, gen: number, k: number): string;
  /** Every hot child subject (part of the clicks stream). */
  hotSubjects: string;
  /** The child subjects of every split of one ad. */
  hotSubjectsOf(adKey: string): string;
  /** Every subject of the clicks stream: shard subjects and hot child subjects. */
  streamSubjects: string;
  /** Stream of corrections to closed minutes (docs/history.md, "Corrections feed"). */
  correctionsStream: string;
  /** Subject of the corrections a shard (unit) makes. */
  correctionSubject(unit: number | string): string;
  /** Every corrections subject. */
  correctionSubjects: string;
  /** KV bucket that publishers watch to learn which ads are split (and into which subjects). */
  hotBucket: string;
}

export function topology(prefix: string): Topology {
  const P = prefix.toUpperCase().replace(/[^A-Z0-9_]/g, '_');
  const p = prefix.toLowerCase().replace(/[^a-z0-9_]/g, '_');
  return {
    clicksStream: `${P}_CLICKS`,
    deadLetterStream: `${P}_DLQ`,
    clickSubject: (shard) => `${p}.clicks.${shard}`,
    clickSubjects: `${p}.clicks.*`,
    deadLetterSubject: (reason) => `${p}.dlq.${reason}`,
    querySubject: (shard) => `${p}.q.shard.${shard}`,
    rankingSubject: (shard) => `${p}.rank.${shard}`,
    rankingSubjects: `${p}.rank.*`,
    hotSubject: (adKey, gen, k) => `${p}.hot.${adKey}.${gen}.${k}`,
    hotSubjects: `${p}.hot.>`,
    hotSubjectsOf: (adKey) => `${p}.hot.${adKey}.>`,
    streamSubjects: `${p}.>`,
    hotBucket: `${P}_HOT`,
    correctionsStream: `${P}_CORRECTIONS`,
    correctionSubject: (unit) => `${p}.corrections.${unit}`,
    correctionSubjects: `${p}.corrections.*`,
  };
}
