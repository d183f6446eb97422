import { jetstream, type JetStreamClient, type PubAck } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { AdaggError, ErrorCode } from '../../errors.ts';
import type { Clock } from '../clock.ts';
import type { RuntimeEvents } from '../events.ts';
import type { Logger } from '../logger.ts';
import type { PlacementStore } from '../placement/placement-store.ts';
import type { DeadLetterPublisher } from '../producer.ts';
import type { Topology } from '../topology.ts';
import type { HotDetectorOptions } from './hot-detector.ts';
import type { HotRoutes } from './hot-routes.ts';

/** Hot-ad options of a runtime node (compiled from AdaggOptions, see options.ts). */
export interface HotOptions extends HotDetectorOptions {
  /** Children of an automatic split; 0: no automatic splits (operators can still split). */
  autoChildren: number;
  /** After a split ends, its children keep handing stragglers back this long before they stop. */
  lingerMs: number;
}

/** What a node's hot-split hooks share: connections, the routes bucket, placement, options. */
export interface HotRuntime {
  nc: NatsConnection;
  js: JetStreamClient;
  topo: Topology;
  routes: HotRoutes;
  /** Managed mode only: children are placement units. */
  placement: PlacementStore | undefined;
  deadLetters: DeadLetterPublisher;
  events: RuntimeEvents;
  log: Logger;
  clock: Clock;
  opts: HotOptions;
}

export function hotRuntime(deps: Omit<HotRuntime, 'js'>): HotRuntime {
  return { ...deps, js: jetstream(deps.nc) };
}

/**
 * Publishes one message with a deterministic id, retrying a few times; the caller's actor fails
 * (and replays the message with the same id after its restart) if it never gets through.
 */
export async function publishOnce(js: JetStreamClient, subject: string, data: Uint8Array, msgID: string, attempts = 4): Promise<PubAck> {
  let last: unknown;
  for (let i = 0; i < attempts; i++) {
    try {
      return await js.publish(subject, data, { msgID, timeout: 5000 });
    } catch (err) {
      last = err;
      await new Promise((r) => setTimeout(r, 100 * 2 ** i));
    }
  }
  throw new AdaggError(ErrorCode.PublishFailed, `publish to ${subject} failed`, { cause: last });
}
