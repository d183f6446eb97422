import { compileRiskRules, type CompiledRiskRules, type RiskRule } from '../../model/risk-rules.ts';
import type { RiskMessage } from '../../model/risk-messages.ts';
import { RiskEngine } from './risk-engine.ts';

/** The rules of a rules message (or a restored head), compiled for evaluation. */
export function riskRulesOf(version: string, rules: RiskRule[]): CompiledRiskRules {
  return compileRiskRules({ version, rules });
}

/** A shard's risk engine: its ad role for the shard's ads, its risk role for partition `unit`. */
export function newRiskEngine(rules: CompiledRiskRules, place: { unit: number; partitions: number }): RiskEngine {
  return new RiskEngine(rules, place);
}

/**
 * What a risk message at `seq` does to a shard's engine (docs/risk.md): rules replace the engine's
 * rules (the first non-empty rules create it), presence reports update its spread groups, verdicts
 * mark them. Returns the engine (created or the same one) and the clicks whose verdict changed.
 */
export function applyRiskMessage(
  engine: RiskEngine | undefined,
  msg: RiskMessage,
  seq: number,
  place: { unit: number; partitions: number },
): { engine: RiskEngine | undefined; changes: ReturnType<RiskEngine['add']> } {
  if (msg.kind === 'rules') {
    const rules = riskRulesOf(msg.version, msg.rules);
    if (engine) return { engine, changes: engine.setRules(rules, seq) };
    return { engine: rules.rules.length > 0 ? newRiskEngine(rules, place) : undefined, changes: [] };
  }
  const e = engine ?? newRiskEngine(riskRulesOf('', []), place);
  const items = msg.kind === 'batch' ? msg.items : [msg];
  const presence = items.filter((m) => m.kind === 'presence');
  const verdicts = items.filter((m) => m.kind === 'verdict');
  if (presence.length > 0) e.applyPresences(presence, seq);
  return { engine: e, changes: verdicts.length > 0 ? e.applyVerdicts(verdicts, seq) : [] };
}
