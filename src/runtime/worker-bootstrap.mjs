// First module of an actor worker thread (runtime/worker-hosts.ts starts it). In Node 20 a worker
// does not apply the parent's `--import tsx` to its own module graph, so this plain-JS module
// registers the TypeScript loader itself, then imports the worker's entry (workerData.entry, a
// .ts module of the composition root, e.g. src/cli/actor-worker.ts).
import { workerData } from 'node:worker_threads';
import { register } from 'tsx/esm/api';

register();
await import(workerData.entry);
