import { EventEmitter } from 'node:events';

/** Typed runtime events; metrics and logs subscribe here instead of being sprinkled through handlers. */
export interface RuntimeEventMap {
  batch: [{ shard: number; events: number; counted: number; duplicates: number; late: number; tooOld: number; skipped: boolean }];
  commit: [{ shard: number; ms: number; snapshotBytes: number; writes: number; seq: number }];
  progress: [{ shard: number; lastSeq: number; pending: number; watermark: number; closedThrough: number; now: number }];
  restart: [{ shard: number; code: string | undefined }];
  ws: [{ kind: 'connect' | 'disconnect' | 'coalesced' | 'slow_disconnect' | 'sent' }];
  ingest: [{ source: string; accepted: number; rejected: number; codes: Record<string, number> }];
}

export class RuntimeEvents extends EventEmitter<RuntimeEventMap> {}
