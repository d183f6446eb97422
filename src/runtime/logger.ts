/**
 * The one logger factory (pino): constant messages, metadata objects.
 *
 * Lines are JSON (one object a line, for collectors) unless they go to a terminal: there they are
 * pino-pretty's one-line form, for people. ADAGG_LOG_FORMAT (`auto`, `pretty`, `json`) forces either;
 * a pipe, a file and the tests stay JSON under `auto`.
 *
 * @example
 * const log = createLogger('adagg');                       // stdout; pretty on a terminal
 * const test = createLogger('t', { level: 'info', format: 'json', destination: stream });
 */
import { createRequire } from 'node:module';
import { isatty } from 'node:tty';
import { destination, pino, type DestinationStream, type Logger } from 'pino';
import type PinoPretty from 'pino-pretty';
import { PROCESS_OPTIONS } from '../options/process.ts';

export type { Logger };

/** `auto`: pretty on a terminal, JSON otherwise. */
export type LogFormat = 'auto' | 'pretty' | 'json';

/** Where log lines go: a stream, and whether it is a terminal (as `process.stdout.isTTY`). */
export interface LogDestination {
  write(line: string): unknown;
  readonly isTTY?: boolean;
}

export interface LoggerOptions {
  /** pino level. @default ADAGG_LOG_LEVEL, else `info` (`silent` under vitest) */
  level?: string;
  /** @default ADAGG_LOG_FORMAT, else `auto` */
  format?: LogFormat;
  /** @default standard output (file descriptor 1, also from a worker thread) */
  destination?: LogDestination;
}

/**
 * A logger named `name`. The second argument is a level (the older form) or {@link LoggerOptions}.
 * A worker thread resolves `auto` like its process's main thread: both look at file descriptor 1.
 */
export function createLogger(name: string, options?: string | LoggerOptions): Logger {
  const o: LoggerOptions = typeof options === 'string' ? { level: options } : (options ?? {});
  const level = o.level ?? process.env.ADAGG_LOG_LEVEL ?? (process.env.VITEST ? 'silent' : 'info');
  const tty = o.destination ? o.destination.isTTY === true : isatty(1);
  const format = resolveFormat(o.format ?? envFormat(), tty);
  const base = { name, level, base: { pid: process.pid } };
  // Synchronous writes to fd 1, JSON and pretty alike: log lines are few (per-request lines are
  // warn and above), and a line is then on stdout before whatever the process prints next (the
  // ready block of `npm start` followed the JSON ready line only by luck with pino's async default).
  if (format === 'json') return pino(base, o.destination ? (o.destination as DestinationStream) : destination({ dest: 1, sync: true }));
  return pino(base, prettyDestination(o.destination ?? destination({ dest: 1, sync: true }), tty));
}

/** The format `auto` stands for, given whether the destination is a terminal. */
export function resolveFormat(format: LogFormat, tty: boolean): 'pretty' | 'json' {
  if (format === 'auto') return tty ? 'pretty' : 'json';
  return format;
}

/** ADAGG_LOG_FORMAT when it is valid; a bad value is refused by compileOptions at start, with its name. */
function envFormat(): LogFormat {
  const v = process.env.ADAGG_LOG_FORMAT;
  return v !== undefined && PROCESS_OPTIONS.logFormat.pattern.test(v) ? (v as LogFormat) : 'auto';
}

/**
 * pino-pretty's formatter applied in the write call, not its transform stream: a line is on the
 * terminal when the call returns, so `adagg start`'s ready block never overtakes the ready line.
 * Loaded only when used: JSON processes (services, tests) never pay for it.
 */
function prettyDestination(out: LogDestination, tty: boolean): DestinationStream {
  const { prettyFactory } = createRequire(import.meta.url)('pino-pretty') as typeof PinoPretty;
  const pretty = prettyFactory({
    colorize: tty && process.env.NO_COLOR === undefined,
    singleLine: true,
    translateTime: 'SYS:HH:MM:ss.l',
    ignore: 'pid,hostname',
  });
  return { write: (line: string) => void out.write(pretty(line)) };
}

/** A logger that drops everything, for unit tests and library use without logging. */
export const silentLogger: Logger = pino({ level: 'silent' });
