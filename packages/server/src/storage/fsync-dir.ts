import { mkdir, open } from "node:fs/promises";
import { dirname, resolve } from "node:path";

/** Syncs directory `dir`: the files created, renamed or removed in it stay so after a crash. */
export async function fsyncDir(dir: string): Promise<void> {
  const fh = await open(dir, "r");
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/**
 * Creates directory `dir` and its missing parents so that they stay after a crash: the parent
 * of each directory it creates is synced (a new directory's entry is durable only then, as a
 * new file's is).
 */
export async function mkdirDurable(dir: string): Promise<void> {
  const first = await mkdir(dir, { recursive: true });
  if (first === undefined) return;
  const top = resolve(first);
  for (let created = resolve(dir); ; created = dirname(created)) {
    await fsyncDir(dirname(created));
    if (created === top || dirname(created) === created) return;
  }
}
