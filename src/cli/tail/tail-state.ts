/**
 * The follower's durable offsets: one JSON file, replaced atomically (write a temporary file,
 * fsync, rename), written only after the gateway acknowledged the lines before the offset. A
 * restart resumes there; lines sent but not yet recorded are sent again and deduplicated by their
 * click ids (at-least-once delivery, exactly-once counts).
 */
import { open, readFile, rename } from 'node:fs/promises';

/** Where one followed path stands. */
export interface TailPosition {
  /** The file being read (device and inode): after a rename rotation it is found again by these. */
  dev: number;
  ino: number;
  /** File identity for derived click ids: the path's real path when this file was opened there. */
  identity: string;
  /** The file's key line (its first non-blank line), once seen: offset, length and hash. */
  key?: { offset: number; bytes: number; hash: string } | undefined;
  /** Bytes acknowledged: every line before this offset is stored in JetStream. */
  offset: number;
}

export interface TailStateFile {
  version: 1;
  /** By followed path, as given on the command line (resolved to absolute). */
  files: Record<string, TailPosition>;
}

/** Reads the state file; a missing file is an empty state. A corrupt one throws (never silently re-read everything). */
export async function loadTailState(file: string): Promise<TailStateFile> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { version: 1, files: {} };
    throw err;
  }
  const parsed = JSON.parse(text) as Partial<TailStateFile>;
  if (parsed.version !== 1 || typeof parsed.files !== 'object' || parsed.files === null) {
    throw new Error(`${file}: not an adagg ingest --follow state file (version 1)`);
  }
  return { version: 1, files: parsed.files };
}

/** Writes the state file atomically and durably. */
export async function saveTailState(file: string, state: TailStateFile): Promise<void> {
  const tmp = `${file}.tmp`;
  const fh = await open(tmp, 'w');
  try {
    await fh.writeFile(JSON.stringify(state));
    await fh.sync();
  } finally {
    await fh.close();
  }
  await rename(tmp, file);
}
