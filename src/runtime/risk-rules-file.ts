import { open } from 'node:fs/promises';
import { AdaggError, ErrorCode } from '../errors.ts';
import { parseRiskRules, type RiskRuleSet } from '../model/risk-rules.ts';

/** Largest rules file read: the rules travel whole in one stream message (NATS max_payload is 1 MiB by default). */
export const MAX_RISK_RULES_FILE_BYTES = 512 * 1024;

/**
 * Reads and validates the ADAGG_RISK_RULES file. A missing, unreadable, oversized or invalid file
 * rejects with ADAGG_E_RISK_RULES naming the file (and, for a bad rule, the rule and the field).
 */
export async function readRiskRulesFile(path: string): Promise<RiskRuleSet> {
  let text: string;
  try {
    const fh = await open(path, 'r');
    try {
      const { size } = await fh.stat();
      if (size > MAX_RISK_RULES_FILE_BYTES) {
        throw new AdaggError(ErrorCode.RiskRulesInvalid, `risk rules ${path}: the file has ${size} bytes, more than ${MAX_RISK_RULES_FILE_BYTES}`, { details: { file: path } });
      }
      text = await fh.readFile('utf8');
    } finally {
      await fh.close();
    }
  } catch (err) {
    if (err instanceof AdaggError) throw err;
    throw new AdaggError(ErrorCode.RiskRulesInvalid, `risk rules ${path}: cannot read the file (${(err as Error).message})`, { cause: err, details: { file: path } });
  }
  return parseRiskRules(text, path);
}
