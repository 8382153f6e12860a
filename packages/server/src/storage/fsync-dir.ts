import { open } from "node:fs/promises";

/** Syncs directory `dir`: the files created, renamed or removed in it stay so after a crash. */
export async function fsyncDir(dir: string): Promise<void> {
  const fh = await open(dir, "r");
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}
