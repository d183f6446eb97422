import { isMainThread, parentPort, workerData, type MessagePort } from 'node:worker_threads';
import { AdaggError } from '../errors.ts';
import { systemClock } from './clock.ts';
import { RuntimeEvents } from './events.ts';
import { LocalHosts } from './local-hosts.ts';
import { createLogger } from './logger.ts';
import type { ShardBehaviourFactory } from './shard-behaviour.ts';
import { errMeta } from './supervisor.ts';
import { forwardEvents, type ForwardedEvent, type WorkerCommand, type WorkerInit, type WorkerReport } from './worker-protocol.ts';

/** Events are posted to the main thread at most this often, or as soon as this many are queued. */
const EVENT_FLUSH_MS = 100;
const EVENT_FLUSH_COUNT = 500;

/**
 * The body of an actor worker thread: one LocalHosts driven by the node's commands
 * (worker-protocol.ts). Its runtime events go to the main thread in batches, its stats every
 * `statsIntervalMs`. Called by the composition root's worker entry (src/cli/actor-worker.ts), which
 * supplies the actor kinds.
 */
export function runActorWorker(actors: ShardBehaviourFactory): void {
  if (isMainThread || !parentPort) throw new Error('runActorWorker must run in a worker thread');
  const port: MessagePort = parentPort;
  const init = workerData as WorkerInit;
  const log = createLogger('adagg-node', init.logLevel).child({ node: init.nodeId, worker: init.index });
  const post = (r: WorkerReport): void => port.postMessage(r);

  const outbox: ForwardedEvent[] = [];
  const flush = (): void => {
    if (outbox.length > 0) post({ type: 'events', events: outbox.splice(0) });
  };
  const events = new RuntimeEvents();
  forwardEvents(events, (e) => {
    outbox.push(e);
    if (outbox.length >= EVENT_FLUSH_COUNT) flush();
  });
  const hosts = new LocalHosts({
    nodeId: init.nodeId,
    opts: init.opts,
    actors,
    managed: init.managed,
    clock: systemClock,
    log,
    events,
    connectionSuffix: `-w${init.index}`,
  });

  let timers: Array<ReturnType<typeof setInterval>> = [];
  let openRequested!: () => void;
  const opened = new Promise<void>((r) => (openRequested = r)).then(async () => {
    await hosts.open();
    timers = [setInterval(flush, EVENT_FLUSH_MS), setInterval(() => post({ type: 'stats', stats: hosts.stats() }), init.statsIntervalMs)];
    post({ type: 'ready' });
    log.debug({}, 'actor worker ready');
  });
  opened.catch((err: unknown) => {
    // The node sees the exit and starts a replacement with backoff.
    log.error({ err: errMeta(err) }, 'actor worker could not connect');
    process.exit(1);
  });

  const handle = async (cmd: Exclude<WorkerCommand, { type: 'open' }>): Promise<void> => {
    try {
      // A close needs no connection (one still opening is awaited by hosts.close()).
      if (cmd.type !== 'close') await opened;
      switch (cmd.type) {
        case 'start-shard':
          hosts.startShard(cmd.shard, cmd.epoch);
          break;
        case 'stop-shard':
          await hosts.stopShard(cmd.shard);
          break;
        case 'start-unit':
          hosts.startUnit(cmd.unit, cmd.epoch);
          break;
        case 'stop-unit':
          await hosts.stopUnit(cmd.unit);
          break;
        case 'close':
          await hosts.close();
          for (const t of timers) clearInterval(t);
          break;
      }
      // The events of a stop (the final commit) reach the node before its answer.
      flush();
      post({ type: 'done', id: cmd.id });
    } catch (err) {
      flush();
      post({ type: 'done', id: cmd.id, error: { code: err instanceof AdaggError ? err.code : undefined, message: String((err as Error)?.message ?? err) } });
    }
    // Nothing more to do after a close: let the thread end (the node terminates it if something lingers).
    if (cmd.type === 'close') port.close();
  };

  port.on('message', (cmd: WorkerCommand) => {
    if (cmd.type === 'open') openRequested();
    else void handle(cmd);
  });
}
