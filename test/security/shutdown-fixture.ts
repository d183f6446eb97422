/**
 * A process with the CLI's shutdown wiring (src/cli/shutdown.ts) and one cleanup step, for
 * test/security/last-resort.test.ts. argv[2]: `throw` (uncaught exception), `reject` (unhandled
 * rejection), `hang` (the step never ends), `ok` (wait for a signal; the step ends at once).
 */
import { Shutdown } from '../../src/cli/shutdown.ts';
import { createLogger } from '../../src/runtime/logger.ts';

const mode = process.argv[2];
const log = createLogger('fixture', 'info');
const shutdown = new Shutdown(log, { timeoutMs: Number(process.env.FIXTURE_TIMEOUT_MS ?? 15_000) }).install();
shutdown.add('step', async () => {
  process.stdout.write('STEP RAN\n');
  if (mode === 'hang') await new Promise(() => undefined);
});
setInterval(() => undefined, 1_000); // stays up until the shutdown exits
process.stdout.write('READY\n');
if (mode === 'throw') {
  setTimeout(() => {
    throw new Error('boom');
  }, 10);
}
if (mode === 'reject') setTimeout(() => void Promise.reject(new Error('rejected boom')), 10);
