import { compileRiskRules, type CompiledRiskRules, type RiskRule } from '../../model/risk-rules.ts';
import { RiskEngine } from './risk-engine.ts';

/** The rules of a rules message (or a restored head), compiled for evaluation. */
export function riskRulesOf(version: string, rules: RiskRule[]): CompiledRiskRules {
  return compileRiskRules({ version, rules });
}

/** A shard's risk engine: its ad role for the shard's ads, its risk role for partition `unit`. */
export function newRiskEngine(rules: CompiledRiskRules, place: { unit: number; partitions: number }): RiskEngine {
  return new RiskEngine(rules, place);
}
