/** Runs the `adagg` command from the sources as a real child process, for tests. */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

const ROOT = path.resolve(import.meta.dirname, '../..');
const MAIN = path.join(ROOT, 'src/cli/main.ts');
/** tsx by absolute URL: the child may run from any folder. */
const TSX = pathToFileURL(path.join(ROOT, 'node_modules/tsx/dist/loader.mjs')).href;

export interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

export interface CliOptions {
  /** @default the repository root */
  cwd?: string;
  /** The whole environment of the child. @default process.env with ADAGG_LOG_LEVEL=warn */
  env?: NodeJS.ProcessEnv;
  /** Killed (SIGKILL) and rejected past this. @default 30 s */
  timeoutMs?: number;
}

/** `adagg <args>`: resolves with its exit code and output once it exits. */
export function runAdagg(args: readonly string[], o: CliOptions = {}): Promise<CliRun> {
  const timeoutMs = o.timeoutMs ?? 30_000;
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', TSX, MAIN, ...args], {
      cwd: o.cwd ?? ROOT,
      env: o.env ?? { ...process.env, ADAGG_LOG_LEVEL: 'warn' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`adagg ${args.join(' ')} timed out after ${timeoutMs} ms\n${stdout}\n${stderr}`));
    }, timeoutMs);
    child.once('error', reject);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}
