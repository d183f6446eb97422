import { AdaggError, ErrorCode } from '../errors.ts';
import type { RiskRule } from './risk-rules.ts';
import { VersionedMessages } from './versioned-message.ts';

/**
 * Messages of invalid-click filtering (docs/risk.md). They travel in the clicks stream on shard
 * subjects (`<prefix>.clicks.<n>`) as MessagePack `[3, {kind, ...}]` (click batches are `[1, rows]`,
 * hot-split control `[2, msg]`), so a shard applies each at a deterministic stream sequence and a
 * replay after a crash repeats it exactly:
 * - `rules`, published by the rules publisher into every shard subject: the rules in effect from
 *   that sequence on (a replay before it uses the old ones);
 * - `presence`, from an ad shard to the risk partition of a spread group: the distinct values its
 *   clicks of the group that earlier rules left valid have now (absolute, so repeats are harmless);
 * - `verdict`, from a risk partition to an ad shard: whether a spread group is spreading (absolute);
 * - `batch`: the presence reports and verdicts one actor sends one shard between two of its commits,
 *   in one stream message (the runtime batches an actor's outbox: risk-outbox.ts).
 */
export const RISK_VERSION = 3;

export type RiskMessage =
  | { kind: 'rules'; version: string; rules: RiskRule[] }
  | PresenceMessage
  | VerdictMessage
  | { kind: 'batch'; items: Array<PresenceMessage | VerdictMessage> };

export type PresenceMessage = { kind: 'presence'; rule: string; window: number; key: string; max: number; from: number; seq: number; values: string[] };
export type VerdictMessage = { kind: 'verdict'; rule: string; window: number; key: string; spreading: boolean; seq: number };

/** A message an actor wants published before its next commit: the shard subject it goes to and a deterministic id. */
export interface RiskOut {
  to: number;
  id: string;
  msg: RiskMessage;
}

const codec = new VersionedMessages(RISK_VERSION, 'risk message');

export function encodeRiskMessage(msg: RiskMessage): Uint8Array {
  return codec.encode(msg);
}

/** Whether a stream message is a risk message, from its first two bytes (fixarray of 2, version 3). */
export function isRiskMessage(data: Uint8Array): boolean {
  return codec.is(data);
}

export function decodeRiskMessage(data: Uint8Array): RiskMessage {
  return decodeOne(codec.unpack(data), true);
}

function decodeOne(m: Record<string, unknown>, top: boolean): RiskMessage {
  const bad = (what: string): AdaggError => new AdaggError(ErrorCode.BatchCorrupt, `risk message ${String(m.kind)}: ${what}`);
  const int = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v);
  const str = (v: unknown): v is string => typeof v === 'string';
  switch (m.kind) {
    case 'rules':
      if (!str(m.version) || !Array.isArray(m.rules)) throw bad('needs version and rules');
      return { kind: 'rules', version: m.version, rules: m.rules as RiskRule[] };
    case 'presence':
      if (!str(m.rule) || !int(m.window) || !str(m.key) || !int(m.max) || !int(m.from) || !int(m.seq)) throw bad('bad fields');
      if (!Array.isArray(m.values) || !m.values.every(str)) throw bad('values must be strings');
      return { kind: 'presence', rule: m.rule, window: m.window, key: m.key, max: m.max, from: m.from, seq: m.seq, values: m.values };
    case 'verdict':
      if (!str(m.rule) || !int(m.window) || !str(m.key) || typeof m.spreading !== 'boolean' || !int(m.seq)) throw bad('bad fields');
      return { kind: 'verdict', rule: m.rule, window: m.window, key: m.key, spreading: m.spreading, seq: m.seq };
    case 'batch': {
      if (!top || !Array.isArray(m.items)) throw bad('items must be an array (and batches do not nest)');
      const items = m.items.map((it: unknown) => {
        const one = it && typeof it === 'object' ? decodeOne(it as Record<string, unknown>, false) : undefined;
        if (one?.kind !== 'presence' && one?.kind !== 'verdict') throw bad('items must be presence reports or verdicts');
        return one;
      });
      return { kind: 'batch', items };
    }
    default:
      throw bad('unknown kind');
  }
}
