import { Counter, Gauge, type Registry } from 'prom-client';
import type { RuntimeEvents } from './events.ts';

/**
 * Reconciliation (docs/history.md#reconciliation): runs by result, and the mismatches of the last
 * reconciled day. The gauge keeps only the last day's series, so it does not grow by a label a day.
 */
export function registerReconcileMetrics(events: RuntimeEvents, registry: Registry): void {
  const runs = new Counter({
    name: 'adagg_reconcile_runs_total',
    help: 'Reconciliation runs of this process, by result (ok, mismatch, failed)',
    labelNames: ['result'],
    registers: [registry],
  });
  const mismatches = new Gauge({
    name: 'adagg_reconcile_mismatches',
    help: 'Ad-minutes whose archive and stored counts differ, in the last reconciled day',
    labelNames: ['day'],
    registers: [registry],
  });
  events.on('reconcile', (e) => {
    runs.inc({ result: e.result });
    if (e.mismatches === undefined) return;
    mismatches.reset();
    mismatches.set({ day: e.day }, e.mismatches);
  });
}
