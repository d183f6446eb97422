import { Counter, Gauge, type Registry } from 'prom-client';
import type { RuntimeEvents } from './events.ts';

/**
 * Invalid-click filtering (docs/risk.md): clicks each rule took and let go. A verdict can change
 * (a late click, a spread verdict, a rules reload), so the invalid clicks a rule holds now are
 * `taken − released`: `sum by (rule) (adagg_invalid_clicks_total - adagg_invalid_clicks_released_total)`.
 */
export function registerRiskMetrics(events: RuntimeEvents, registry: Registry): void {
  const taken = new Counter({
    name: 'adagg_invalid_clicks_total',
    help: 'Clicks an invalid-click rule took (judged invalid), by rule',
    labelNames: ['rule'],
    registers: [registry],
  });
  const released = new Counter({
    name: 'adagg_invalid_clicks_released_total',
    help: 'Clicks an invalid-click rule let go again (a later verdict changed), by rule',
    labelNames: ['rule'],
    registers: [registry],
  });
  const held = new Gauge({
    name: 'adagg_risk_held_clicks',
    help: 'Clicks a shard holds for invalid-click rules (those whose rule windows can still change)',
    labelNames: ['shard'],
    registers: [registry],
  });
  events.on('progress', (e) => {
    if (e.riskClicks !== undefined) held.set({ shard: String(e.shard) }, e.riskClicks);
  });
  events.on('actorStopped', (e) => held.remove({ shard: String(e.shard) }));
  events.on('risk', (e) => {
    for (const [rule, n] of Object.entries(e.taken)) taken.inc({ rule }, n);
    for (const [rule, n] of Object.entries(e.released)) released.inc({ rule }, n);
  });
}
