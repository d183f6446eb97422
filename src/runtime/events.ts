import { EventEmitter } from 'node:events';
import type { UnitId } from './shard-store.ts';

/** Typed runtime events; metrics and logs subscribe here instead of being sprinkled through handlers. */
export interface RuntimeEventMap {
  batch: [{ shard: UnitId; events: number; counted: number; duplicates: number; late: number; tooOld: number; skipped: boolean }];
  /** A commit was written: its latency, payload bytes (all of it), head bytes and count writes. */
  commit: [{ shard: UnitId; ms: number; bytes: number; headBytes: number; writes: number; seq: number }];
  progress: [
    { shard: UnitId; lastSeq: number; pending: number; watermark: number; closedThrough: number; now: number; trackedIds: number; dedupBytes: number },
  ];
  restart: [{ shard: UnitId; code: string | undefined }];
  ws: [{ kind: 'connect' | 'disconnect' | 'coalesced' | 'slow_disconnect' | 'sent' }];
  ingest: [{ source: string; accepted: number; rejected: number; codes: Record<string, number> }];
  /** A parent shard's split ad changed state (`done`: its children are gone). */
  hot: [{ shard: number; ad: string; gen: number; children: number; state: 'split' | 'draining' | 'done' }];
  /** A hot child's progress (each tick). */
  hotChild: [{ unit: string; ad: string; k: number; lag: number; closedThrough: number }];
}

export class RuntimeEvents extends EventEmitter<RuntimeEventMap> {}
