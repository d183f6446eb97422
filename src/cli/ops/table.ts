/** Tiny aligned-table formatter and value formats for the operator commands (output for people). */

export interface Column {
  header: string;
  /** Numbers read best right-aligned. @default 'left' */
  align?: 'left' | 'right';
}

/**
 * Formats rows under their headers, columns separated by two spaces, each as wide as its widest
 * cell; trailing spaces are trimmed. Rows shorter than the header get '-' cells.
 */
export function formatTable(columns: readonly Column[], rows: ReadonlyArray<readonly string[]>): string {
  const widths = columns.map((c, i) => Math.max(width(c.header), ...rows.map((r) => width(r[i] ?? '-'))));
  const line = (cells: readonly string[]): string =>
    columns
      .map((c, i) => {
        const cell = cells[i] ?? '-';
        const pad = ' '.repeat((widths[i] ?? 0) - width(cell));
        return c.align === 'right' ? pad + cell : cell + pad;
      })
      .join('  ')
      .trimEnd();
  return [line(columns.map((c) => c.header)), ...rows.map(line)].join('\n');
}

/** Display width: code points (the arrows and middle dots used here are one column wide). */
function width(s: string): number {
  return [...s].length;
}

/** `850ms`, `1.2s`, `42s`, `3m05s`, `2h07m`, `4d03h`. */
export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms)) return '-';
  const neg = ms < 0 ? '-' : '';
  ms = Math.abs(ms);
  if (ms < 1000) return `${neg}${Math.round(ms)}ms`;
  const s = ms / 1000;
  if (s < 10) return `${neg}${s.toFixed(1)}s`;
  if (s < 60) return `${neg}${Math.floor(s)}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${neg}${m}m${two(Math.floor(s % 60))}s`;
  const h = Math.floor(m / 60);
  if (h < 24) return `${neg}${h}h${two(m % 60)}m`;
  return `${neg}${Math.floor(h / 24)}d${two(h % 24)}h`;
}

/** `0.4s ago` (always seconds with one decimal below a minute, so a stalled heartbeat stands out). */
export function formatAgo(ms: number): string {
  if (ms < 60_000) return `${(Math.max(0, ms) / 1000).toFixed(1)}s ago`;
  return `${formatDuration(ms)} ago`;
}

/** Bytes as MiB with one decimal. */
export function formatMiB(bytes: number): string {
  return (bytes / (1024 * 1024)).toFixed(1);
}

/** Integers with thousands separators: `12,345`. */
export function formatCount(n: number): string {
  return Math.round(n).toLocaleString('en-US');
}

function two(n: number): string {
  return String(n).padStart(2, '0');
}
