import { Gauge, type Registry } from 'prom-client';
import type { RuntimeEvents } from '../events.ts';

/**
 * Hot-ad metrics, from runtime events: `adagg_hot_ads` (ads split now), `adagg_hot_children{ad}`
 * (children per split ad; 0 once its split ended) and `adagg_hot_child_lag_messages{ad,child}`
 * (messages pending on each child's subject).
 */
export function registerHotMetrics(events: RuntimeEvents, registry: Registry): void {
  const hotAds = new Gauge({ name: 'adagg_hot_ads', help: 'Hot ads split into child actors now', registers: [registry] });
  const children = new Gauge({ name: 'adagg_hot_children', help: 'Child actors per split hot ad', labelNames: ['ad'], registers: [registry] });
  const childLag = new Gauge({
    name: 'adagg_hot_child_lag_messages',
    help: 'Stream messages pending on a hot child subject',
    labelNames: ['ad', 'child'],
    registers: [registry],
  });
  const split = new Map<string, number>();
  events.on('hot', (e) => {
    if (e.state === 'done') {
      split.delete(e.ad);
      children.set({ ad: e.ad }, 0);
      for (let k = 0; k < e.children; k++) childLag.remove({ ad: e.ad, child: String(k) });
    } else {
      split.set(e.ad, e.children);
      children.set({ ad: e.ad }, e.children);
    }
    hotAds.set(split.size);
  });
  events.on('hotChild', (e) => {
    if (e.lag >= 0) childLag.set({ ad: e.ad, child: String(e.k) }, e.lag);
  });
}
