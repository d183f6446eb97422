import { Counter, type Registry } from 'prom-client';
import type { RuntimeEvents } from './events.ts';

/**
 * The corrections feed (docs/history.md, "Corrections feed"): records published, by cause. A
 * record can be published again after a crash (at least once), so this counts publishes, not
 * distinct corrections.
 */
export function registerCorrectionMetrics(events: RuntimeEvents, registry: Registry): void {
  const published = new Counter({
    name: 'adagg_corrections_published_total',
    help: 'Corrections of closed minutes published on the corrections subject, by cause (late_click, hot_report, risk_verdict)',
    labelNames: ['cause'],
    registers: [registry],
  });
  events.on('corrections', (e) => {
    for (const [cause, n] of Object.entries(e.byCause)) published.inc({ cause }, n);
  });
}
