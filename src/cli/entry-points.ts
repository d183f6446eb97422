/**
 * adagg's own entry modules, run the way this process runs: the compiled JavaScript in dist/
 * (`npm start`, the `adagg` bin) or the TypeScript sources through tsx (tests, benchmarks).
 */
import { fileURLToPath } from 'node:url';

/** True when this process runs the TypeScript sources (tsx, vitest), false when dist/'s JavaScript. */
export const fromSource = import.meta.url.endsWith('.ts');

/** A module of the CLI (this folder) by base name: `actor-worker` → actor-worker.ts or actor-worker.js. */
export function cliModule(name: string): URL {
  return new URL(`./${name}${fromSource ? '.ts' : '.js'}`, import.meta.url);
}

/** Node arguments that run `adagg <args>` as this process runs: dist/cli/main.js, or src/cli/main.ts through tsx. */
export function adaggNodeArgs(args: readonly string[]): string[] {
  const main = fileURLToPath(cliModule('main'));
  return fromSource ? ['--import', 'tsx', main, ...args] : [main, ...args];
}
