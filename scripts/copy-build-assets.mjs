// Part of `npm run build`: copies into the output directory (dist/, or the first argument) what tsc
// does not emit: the worker bootstrap (plain JavaScript, loaded before any TypeScript loader) and
// the dashboard's static files.
import { cpSync } from 'node:fs';
import path from 'node:path';

const root = path.resolve(import.meta.dirname, '..');
const out = path.resolve(root, process.argv[2] ?? 'dist');
for (const p of ['runtime/worker-bootstrap.mjs', 'gateway/static']) {
  cpSync(path.join(root, 'src', p), path.join(out, p), { recursive: true });
}
