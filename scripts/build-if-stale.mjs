// Runs before `npm start`, `npm run adagg` and `npm run cluster`: `npm run build` unless the last
// build here is newer than every input. tsc's own incremental check takes seconds (far more on a
// busy machine); this one takes milliseconds. `npm run build` always builds.
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import path from 'node:path';

const root = path.resolve(import.meta.dirname, '..');
const stamp = path.join(root, 'dist', '.built');
const inputs = ['src', 'tsconfig.json', 'tsconfig.build.json', 'package.json', 'package-lock.json', 'scripts/copy-build-assets.mjs'];

/** Newest modification time under p; a directory's own time changes when an entry is added, removed or renamed. */
function newest(p) {
  const st = statSync(p);
  let t = st.mtimeMs;
  if (st.isDirectory()) for (const e of readdirSync(p)) t = Math.max(t, newest(path.join(p, e)));
  return t;
}

let built = -1;
try {
  built = statSync(stamp).mtimeMs;
} catch {
  // never built here
}
if (built >= 0 && inputs.every((p) => newest(path.join(root, p)) <= built)) process.exit(0);

// The stamp gets the time the build started, so a file saved during the build is seen next time.
const started = new Date();
const r = spawnSync('npm', ['run', '--silent', 'build'], { cwd: root, stdio: 'inherit' });
if (r.status !== 0) process.exit(r.status ?? 1);
writeFileSync(stamp, `${started.toISOString()}\n`);
utimesSync(stamp, started, started);
