/**
 * The messages between a runtime node (main thread, worker-hosts.ts) and its actor worker threads
 * (worker-runner.ts). Commands carry an id; the worker answers each with `done` carrying the same id.
 */
import type { HostStats, NodeOptions } from './actor-hosts.ts';
import type { RuntimeEventMap, RuntimeEvents } from './events.ts';
import type { UnitEntry } from './placement/types.ts';

/** What a worker thread is started with (its `workerData`). */
export interface WorkerInit {
  /** URL of the module the bootstrap imports once TypeScript loading is registered. */
  entry: string;
  /** Slot of the worker in its node (0-based; a replacement keeps the slot). */
  index: number;
  nodeId: string;
  opts: NodeOptions;
  managed: boolean;
  /** pino level of the node's logger. */
  logLevel: string;
  /** How often the worker posts its stats. */
  statsIntervalMs: number;
}

/** Main thread → worker. */
export type WorkerCommand =
  /** Connect and start serving; the worker answers with `ready` (or exits on failure). */
  | { type: 'open' }
  | { type: 'start-shard'; id: number; shard: number; epoch: number | undefined }
  | { type: 'stop-shard'; id: number; shard: number }
  | { type: 'start-unit'; id: number; unit: UnitEntry; epoch: number }
  | { type: 'stop-unit'; id: number; unit: string }
  /** Stop every actor (final commits), close connections, answer, then exit. */
  | { type: 'close'; id: number };

/** Worker → main thread. */
export type WorkerReport =
  | { type: 'ready' }
  | { type: 'done'; id: number; error?: { code: string | undefined; message: string } }
  /** The worker's latest per-actor load (posted every `statsIntervalMs`). */
  | { type: 'stats'; stats: HostStats }
  /** Runtime events the worker's actors emitted, in order, to be emitted again on the node's RuntimeEvents. */
  | { type: 'events'; events: ForwardedEvent[] };

/** One runtime event as it crosses threads: its name and arguments (any kind of the event map). */
export type ForwardedEvent = { [K in keyof RuntimeEventMap]: [K, ...RuntimeEventMap[K]] }[keyof RuntimeEventMap];

/** Events only the gateway emits: never forwarded from an actor worker. */
const GATEWAY_ONLY: ReadonlySet<string> = new Set<keyof RuntimeEventMap>(['ws', 'ingest']);

type AnyEmit = (name: string | symbol, ...args: unknown[]) => boolean;

/**
 * Passes every event emitted on `events` (any kind, present or future) to `sink` as well as to its
 * listeners. Wrapping `emit` is the one generic hook an EventEmitter offers.
 */
export function forwardEvents(events: RuntimeEvents, sink: (e: ForwardedEvent) => void): void {
  const emit = events.emit.bind(events) as AnyEmit;
  const tapped: AnyEmit = (name, ...args) => {
    if (typeof name === 'string' && !GATEWAY_ONLY.has(name)) sink([name, ...args] as ForwardedEvent);
    return emit(name, ...args);
  };
  events.emit = tapped as RuntimeEvents['emit'];
}

/** Emits a forwarded event on the node's RuntimeEvents. */
export function emitForwarded(events: RuntimeEvents, e: ForwardedEvent): void {
  const [name, ...args] = e;
  (events.emit as AnyEmit)(name, ...args);
}
