import { stat } from 'node:fs/promises';

/** Whether `p` exists: false only when it is missing (ENOENT); any other error is thrown. */
export async function fileExists(p: string): Promise<boolean> {
  try {
    await stat(p);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
}
