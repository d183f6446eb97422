import { AdaggError, ErrorCode } from '../../../errors.ts';
import type { RiskRule } from '../../../model/risk-rules.ts';
import type { SpreadState } from './records.ts';
import type { RoleWindowRef } from './risk-role.ts';

/**
 * How the risk engine's state is persisted (StateOp parts of model/shard-state.ts):
 * - held clicks: one append-only log part per minute, `r<minute>`, of framed click batches
 *   (hot-parts.ts `frame`), deleted once expired;
 * - spread bits (ad role): hash part `rs`, field = spread key, value `<0|1>|<verdict seq>|<window end>`;
 * - risk-role groups: one hash part per rule window, `rp:<window>:<rule id>` (risk-role.ts), field =
 *   key tuple, value role-codec.ts; deleted once the window expired;
 * - the head element: `[2, rules version, rules, expiry cut, minutes held, role windows]`, a role
 *   window being `[rule id, window, end]` (end -1: the rule is not known here).
 * Verdicts and presence are not stored: a full evaluation of the clicks under the rules and bits
 * gives them back.
 */
export const RISK_HEAD_VERSION = 2;
export const clicksPart = (minute: number): string => `r${minute}`;
export const SPREAD_PART = 'rs';

export interface RiskHead {
  version: string;
  rules: RiskRule[];
  /** Clicks before this time were dropped (-Infinity stored as null: none). */
  cut: number;
  minutes: number[];
  roleWindows: RoleWindowRef[];
}

export function encodeRiskHead(h: RiskHead): unknown[] {
  return [RISK_HEAD_VERSION, h.version, h.rules, Number.isFinite(h.cut) ? h.cut : null, h.minutes, h.roleWindows];
}

export function parseRiskHead(doc: unknown): RiskHead {
  const bad = (): AdaggError => new AdaggError(ErrorCode.SnapshotCorrupt, 'state head: risk state is malformed');
  if (!Array.isArray(doc) || doc[0] !== RISK_HEAD_VERSION || doc.length !== 6) throw bad();
  const [, version, rules, cut, minutes, roleWindows] = doc as unknown[];
  if (typeof version !== 'string' || !Array.isArray(rules)) throw bad();
  if (cut !== null && (typeof cut !== 'number' || !Number.isSafeInteger(cut))) throw bad();
  if (!Array.isArray(minutes) || !minutes.every((m) => typeof m === 'number' && Number.isSafeInteger(m))) throw bad();
  if (!Array.isArray(roleWindows) || !roleWindows.every(isWindowRef)) throw bad();
  return { version, rules: rules as RiskRule[], cut: cut ?? -Infinity, minutes: minutes as number[], roleWindows: roleWindows as RoleWindowRef[] };
}

function isWindowRef(w: unknown): boolean {
  return Array.isArray(w) && w.length === 3 && typeof w[0] === 'string' && Number.isSafeInteger(w[1]) && Number.isSafeInteger(w[2]);
}

export function encodeSpreadState(s: SpreadState): string {
  return `${s.spreading ? 1 : 0}|${s.vseq}|${s.end}`;
}

export function decodeSpreadState(v: string): SpreadState {
  const [bit, vseq, end] = v.split('|').map(Number);
  if ((bit !== 0 && bit !== 1) || !Number.isSafeInteger(vseq) || !Number.isSafeInteger(end)) {
    throw new AdaggError(ErrorCode.SnapshotCorrupt, `risk spread state '${v}' is malformed`);
  }
  return { spreading: bit === 1, vseq: vseq!, end: end! };
}
