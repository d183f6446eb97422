/**
 * How the `adagg` command finds a local `npm start` without any environment variable.
 *
 * `adagg start`, while it holds its data folder's lock, writes `instance.json` there: its pid (and
 * the kernel's start time of that pid), the gateway URL, NATS_URL, REDIS_URL, the key prefix and
 * the dev-token file. A clean stop removes it. The operator commands, `adagg ingest` and
 * `adagg split` read it from ADAGG_DATA_DIR (default ./data) when they were given no servers, and
 * only while that pid still runs: a file left by a killed run is ignored, with a message saying so.
 *
 * @example
 * const found = await adoptLocalInstance(process.env, { servers: true }); // fills NATS_URL, REDIS_URL, ...
 */
import { randomUUID } from 'node:crypto';
import { readFileSync, unlinkSync } from 'node:fs';
import { readFile, rename, unlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { DEFAULTS } from '../options.ts';
import { procStartOf, processRunning } from './instance-lock.ts';

export const INSTANCE_FILE = 'instance.json';

/** What `instance.json` holds. */
export interface LocalInstance {
  /** The `adagg start` process. */
  pid: number;
  /** Field 22 of /proc/<pid>/stat, so a reused pid is not taken for this instance; null without /proc. */
  procStart: string | null;
  /** Written anew by each start: a stop removes the file only if it is still its own. */
  instance: string;
  /** The gateway's base URL. */
  url: string;
  natsUrl: string;
  redisUrl: string;
  /** ADAGG_PREFIX of the instance. */
  prefix: string;
  /** The dev token's file (every scope), when the instance made one. */
  tokenFile?: string;
  /** The data folder (absolute). */
  dataDir: string;
  /** ISO time of the start, for people reading the file. */
  since: string;
}

/** What the command found: a running instance, a file whose process is gone, or nothing. */
export type FoundInstance =
  | { kind: 'live'; file: string; instance: LocalInstance }
  | { kind: 'stale'; file: string; pid: number }
  | { kind: 'none'; file: string };

/** The instance file of a data folder: `dataDir` or ADAGG_DATA_DIR, else ./data, from `cwd`. */
export function instanceFile(env: NodeJS.ProcessEnv = process.env, cwd = process.cwd()): string {
  const dir = env.ADAGG_DATA_DIR !== undefined && env.ADAGG_DATA_DIR !== '' ? env.ADAGG_DATA_DIR : DEFAULTS.dataDir;
  return path.join(path.resolve(cwd, dir), INSTANCE_FILE);
}

/** A registered instance; {@link remove} deletes the file if it is still this one's. */
export interface InstanceRecord {
  readonly file: string;
  remove(): Promise<void>;
}

/**
 * Writes `instance.json` under `info.dataDir` for this process (mode 0600: it names the token
 * file; a temporary file renamed into place, so a reader never sees half of it). It is also
 * removed on a normal process exit.
 */
export async function writeInstance(info: Omit<LocalInstance, 'pid' | 'procStart' | 'instance' | 'since'>): Promise<InstanceRecord> {
  const file = path.join(info.dataDir, INSTANCE_FILE);
  const rec: LocalInstance = { pid: process.pid, procStart: procStartOf(process.pid), instance: randomUUID(), since: new Date().toISOString(), ...info };
  const tmp = `${file}.${String(process.pid)}.tmp`;
  await writeFile(tmp, `${JSON.stringify(rec, null, 2)}\n`, { mode: 0o600 });
  await rename(tmp, file);
  const mine = (text: string): boolean => {
    try {
      return (JSON.parse(text) as Partial<LocalInstance>).instance === rec.instance;
    } catch {
      return false;
    }
  };
  let removed = false;
  const onExit = (): void => {
    try {
      if (!removed && mine(readFileSync(file, 'utf8'))) unlinkSync(file);
    } catch {
      // exiting anyway; a reader checks the pid
    }
  };
  process.once('exit', onExit);
  return {
    file,
    remove: async () => {
      if (removed) return;
      removed = true;
      process.removeListener('exit', onExit);
      const text = await readFile(file, 'utf8').catch(() => '');
      if (mine(text)) await unlink(file).catch(() => undefined);
    },
  };
}

/** Reads the instance file and checks that its process still runs (same pid and start time). */
export async function findLocalInstance(env: NodeJS.ProcessEnv = process.env, cwd = process.cwd()): Promise<FoundInstance> {
  const file = instanceFile(env, cwd);
  let rec: Partial<LocalInstance>;
  try {
    rec = JSON.parse(await readFile(file, 'utf8')) as Partial<LocalInstance>;
  } catch {
    return { kind: 'none', file };
  }
  if (typeof rec.pid !== 'number' || typeof rec.url !== 'string' || typeof rec.natsUrl !== 'string' || typeof rec.redisUrl !== 'string') {
    return { kind: 'stale', file, pid: typeof rec.pid === 'number' ? rec.pid : -1 };
  }
  if (!processRunning(rec.pid, rec.procStart ?? null)) return { kind: 'stale', file, pid: rec.pid };
  return { kind: 'live', file, instance: rec as LocalInstance };
}

/** What a command needs from an instance: its servers (operator commands), its gateway (ingest). */
export interface InstanceNeeds {
  /** NATS_URL and REDIS_URL: taken only when neither is set, so one command never mixes two clusters. */
  servers?: boolean;
  /** The gateway URL and token: taken when `--url` was not given. */
  gateway?: boolean;
}

/** What {@link adoptLocalInstance} used. */
export interface Adopted {
  instance?: LocalInstance;
  /** The gateway URL, when the gateway was needed and the instance gave it. */
  url?: string;
  /** The dev token, when the gateway was needed, no token was given and the instance has one. */
  token?: string;
}

/**
 * Fills `env` (the command's own process.env) from a running local instance for what the command
 * needs and was not given: NATS_URL, REDIS_URL and ADAGG_PREFIX for `servers`; the gateway URL and
 * the dev token (unless ADAGG_TOKEN is set) for `gateway`. Says on stderr which instance it used,
 * or that it ignored a file whose process is gone; with nothing to find it is silent.
 */
export async function adoptLocalInstance(
  env: NodeJS.ProcessEnv,
  needs: InstanceNeeds,
  report: (line: string) => void = (l) => process.stderr.write(`${l}\n`),
): Promise<Adopted> {
  const set = (k: string): boolean => env[k] !== undefined && env[k] !== '';
  const wantServers = needs.servers === true && !set('NATS_URL') && !set('REDIS_URL');
  if (!wantServers && needs.gateway !== true) return {};
  const found = await findLocalInstance(env);
  if (found.kind === 'none') return {};
  if (found.kind === 'stale') {
    report(`adagg: ignoring ${found.file}: the adagg start that wrote it (pid ${String(found.pid)}) is not running`);
    return {};
  }
  const i = found.instance;
  const out: Adopted = { instance: i };
  if (wantServers) {
    env.NATS_URL = i.natsUrl;
    env.REDIS_URL = i.redisUrl;
    if (!set('ADAGG_PREFIX')) env.ADAGG_PREFIX = i.prefix;
  }
  if (needs.gateway === true) {
    out.url = i.url;
    if (!set('ADAGG_TOKEN') && i.tokenFile !== undefined) out.token = (await readFile(i.tokenFile, 'utf8').catch(() => '')).trim() || undefined;
  }
  report(`adagg: using the local instance of ${found.file} (pid ${String(i.pid)}, gateway ${i.url})`);
  return out;
}
