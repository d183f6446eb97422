/**
 * What a shard actor's mailbox holds (shard-incarnation.ts): stream messages, ticks, warm-up
 * reads and queries with the promise their answer goes to.
 * @module
 */
import type { ShardQuery, ShardQueryResult } from '../model/shard-queries.ts';
import type { CountWrite } from '../model/shard-state.ts';
import type { StreamMessage } from './shard-feed.ts';

/** Where a query's answer goes: the asker's promise. */
export interface QueryReply {
  resolve(result: ShardQueryResult): void;
  reject(err: unknown): void;
}

/**
 * Messages of a shard actor's mailbox: a typed union, never code to run. Stream messages wait in
 * the bounded ordinary lane; queries wait in the bounded priority lane and are answered before the
 * next stream message (between two messages the actor's state is always consistent).
 */
export type ShardMsg =
  | { type: 'batch'; m: StreamMessage }
  | { type: 'tick' }
  /** Closed minutes read back for the live rankings after a restore (or the error reading them). */
  | { type: 'warm'; minutes: number[]; decode?: () => CountWrite[]; err?: unknown }
  | { type: 'query'; query: ShardQuery; reply: QueryReply }
  | { type: 'stop' };
