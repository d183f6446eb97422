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
  querySubject(shard: number): string;
  /** Subject on which a shard publishes its ranking updates (top-K lists and deltas). */
  rankingSubject(shard: number): string;
  rankingSubjects: string;
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
  };
}
