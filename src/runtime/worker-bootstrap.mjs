// First module of an actor worker thread (runtime/worker-hosts.ts starts it), then the worker's
// entry (workerData.entry, a module of the composition root, e.g. cli/actor-worker). From dist/
// the entry is JavaScript and is imported as is. From the sources (tsx, vitest) it is a .ts module:
// in Node 20 a worker does not apply the parent's `--import tsx` to its own module graph, so this
// plain-JS module registers the TypeScript loader first (tsx is a dev dependency, only needed then).
import { workerData } from 'node:worker_threads';

if (workerData.entry.endsWith('.ts')) {
  const { register } = await import('tsx/esm/api');
  register();
}
await import(workerData.entry);
