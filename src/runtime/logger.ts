import { pino, type Logger } from 'pino';

export type { Logger };

/** Structured logger: constant messages, metadata objects. Level from ADAGG_LOG_LEVEL (default info; silent under vitest). */
export function createLogger(name: string, level?: string): Logger {
  const lvl = level ?? process.env.ADAGG_LOG_LEVEL ?? (process.env.VITEST ? 'silent' : 'info');
  return pino({ name, level: lvl, base: { pid: process.pid } });
}

/** A logger that drops everything, for unit tests and library use without logging. */
export const silentLogger: Logger = pino({ level: 'silent' });
