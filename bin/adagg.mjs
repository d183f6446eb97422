#!/usr/bin/env node
// Launcher of the `adagg` command: the compiled CLI in dist/ (`npm run build`; `npm start` builds
// first). A checkout that was never built runs the TypeScript sources through tsx (a dev
// dependency), so `npx adagg` works right after `npm ci`; rebuild after changing the sources.
import { existsSync } from 'node:fs';

const dist = new URL('../dist/cli/main.js', import.meta.url);
if (existsSync(dist)) {
  await import(dist.href);
} else {
  let register;
  try {
    ({ register } = await import('tsx/esm/api'));
  } catch {
    console.error('adagg: dist/ is missing; run `npm run build` first');
    process.exit(1);
  }
  register();
  await import(new URL('../src/cli/main.ts', import.meta.url).href);
}
