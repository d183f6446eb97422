import { EventEmitter } from 'node:events';
import type { UnitId } from './shard-store.ts';

/** Typed runtime events; metrics and logs subscribe here instead of being sprinkled through handlers. */
export interface RuntimeEventMap {
  /**
   * A stream message of clicks was applied. `ackedAt`: when JetStream stored (acknowledged) it, by
   * the NATS server's clock (-1 unknown); `at`: when it was applied, by the node's clock.
   */
  batch: [{ shard: UnitId; events: number; counted: number; duplicates: number; late: number; tooOld: number; skipped: boolean; ackedAt?: number; at?: number }];
  /**
   * A commit was written: its latency, payload bytes (all of it), head bytes and count writes.
   * `acked`: for the click messages it made durable, [JetStream store time, clicks counted] pairs
   * (bounded: see shard-incarnation.ts); `at`: when the commit returned.
   */
  commit: [{ shard: UnitId; ms: number; bytes: number; headBytes: number; writes: number; seq: number; acked?: ReadonlyArray<readonly [number, number]>; at?: number }];
  /**
   * Invalid-click rules moved clicks (docs/risk.md): by rule name, clicks each rule newly took and
   * clicks it let go (a late click or a spread verdict changed an earlier verdict).
   */
  risk: [{ shard: UnitId; taken: Record<string, number>; released: Record<string, number> }];
  /** Corrections of closed minutes were published before commit `seq` (docs/history.md): records by cause. */
  corrections: [{ shard: UnitId; seq: number; byCause: Record<string, number> }];
  /** A commit was refused or failed (`code`: its error code, ADAGG_E_FENCED when a newer owner holds the shard). */
  commitFailed: [{ shard: UnitId; code: string }];
  /** Minutes through `closedThrough` (a minute index) closed at wall time `at` (ms). */
  minuteClosed: [{ shard: UnitId; closedThrough: number; at: number }];
  /** An actor stopped for good because a newer owner fenced it off its shard. */
  fenced: [{ shard: UnitId }];
  /** An actor no longer runs on this node (stopped, handed off, fenced): its per-shard series go. */
  actorStopped: [{ shard: UnitId }];
  /** One HTTP request answered: its route pattern (never the raw URL), method, status and duration. */
  http: [{ route: string; method: string; status: number; seconds: number }];
  /**
   * The top-N reducer's work since its previous report (one per reducer tick): ranking updates
   * applied, shard resyncs, rankings emitted; and its specs and queued messages now.
   */
  reducer: [{ updates: number; resyncs: number; finals: number; provisionals: number; specs: number; queued: number }];
  progress: [
    {
      shard: UnitId;
      lastSeq: number;
      pending: number;
      watermark: number;
      closedThrough: number;
      now: number;
      trackedIds: number;
      dedupBytes: number;
      /** Clicks held for invalid-click rules. */
      riskClicks?: number;
    },
  ];
  restart: [{ shard: UnitId; code: string | undefined }];
  /**
   * A raw archiver (src/runtime/archive/) committed files (`rows`, `files`, `seconds` of the flush),
   * saw its lag (`pending` messages), found a retention gap, or stopped here (`stopped`).
   */
  archive: [{ unit: string; seq: number; pending: number; rows?: number; files?: number; seconds?: number; gap?: boolean; stopped?: boolean }];
  ws: [{ kind: 'connect' | 'disconnect' | 'coalesced' | 'slow_disconnect' | 'sent' }];
  ingest: [{ source: string; accepted: number; rejected: number; codes: Record<string, number> }];
  /** A parent shard's split ad changed state (`done`: its children are gone). */
  hot: [{ shard: number; ad: string; gen: number; children: number; state: 'split' | 'draining' | 'done' }];
  /** A hot child's progress (each tick). */
  hotChild: [{ unit: string; ad: string; k: number; lag: number; closedThrough: number }];
  /** A reconciliation of `day` ran (the gateway's daily run): `failed` carries no mismatch count. */
  reconcile: [{ day: string; result: 'ok' | 'mismatch' | 'failed'; mismatches?: number }];
}

export class RuntimeEvents extends EventEmitter<RuntimeEventMap> {}
