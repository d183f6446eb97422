/**
 * Where invalid clicks are counted (docs/risk.md): valid clicks count in the ordinary fields (the
 * ad's totals and each configured dimension), so every count, ranking and feed is the billable
 * one. A click an invalid-click rule took counts in pseudo-dimension fields of the same minute
 * hashes: `('!inv', rule)` for the ad, and `('!inv:<rule>:<d>', v)` within each configured
 * dimension or cube `d` = v. Shared by the actors (which count) and the gateway (which reads).
 */
export const INVALID_DIM = '!inv';

/** The pseudo-dimension of rule `rule`'s invalid clicks within dimension (or cube) `dim`. */
export function invalidDim(rule: string, dim: string): string {
  return `${INVALID_DIM}:${rule}:${dim}`;
}
