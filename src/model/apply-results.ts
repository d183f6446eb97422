import type { Click } from './click.ts';
import type { HotForward } from './hot-report.ts';

/**
 * What applying one stream message to a shard actor did: the host acts on it (dead letters,
 * forwards, metrics). Shared by the actor that produces it and the runtime that consumes it.
 */

export interface BatchResult {
  skipped: boolean;
  counted: number;
  duplicates: number;
  late: number;
  /** Clicks older than the retention behind the watermark: never counted, sent to dead letters. */
  tooOld: Click[];
  /** Clicks of split ads not counted here: the host republishes them (to a child, or back to the parent). */
  forward?: HotForward[];
  /** Invalid-click rules: clicks each rule newly took, and clicks it let go (a verdict changed). */
  risk?: RiskTally;
}

/** Clicks moved between rules by one message, by rule name (docs/risk.md). */
export interface RiskTally {
  taken: Record<string, number>;
  released: Record<string, number>;
}

/** What applying a risk message (rules, presence, verdict) did. */
export interface RiskResult {
  skipped: boolean;
  risk?: RiskTally;
}

/** What applying a hot-split control message did; the host acts on it (routes, units, markers, reports). */
export interface ControlResult {
  skipped: boolean;
  /** The hot state changed in a way the host must act on. */
  changed: boolean;
  /** A split ended: its buffered clicks were counted (dead letters for the too-old ones). */
  batch?: BatchResult;
  /** Report: clicks the delta added to the parent's counts (for the hot-ad detector). */
  reported?: { ad: string; clicks: number };
}
