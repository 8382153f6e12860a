/**
 * Disk stores for storage tests, kept apart from test-helpers.ts: this module loads the store
 * (and with it the disk log), which some tests must load only after setting up their
 * environment.
 */
import { DiskLog } from "./disk-log.js";
import {
  createDiskStore,
  DEFAULT_SEGMENT_BYTES,
  type DiskStoreOptions,
  type LogStore,
} from "./index.js";
import { tempDir } from "./test-helpers.js";

/**
 * Disk stores on a temp directory of their own per test: `setUp()` before each test (gives the
 * directory), `tearDown()` after it (aborts or closes every store `open()` made, removes the
 * directory).
 */
export class TempDiskStores {
  dir = "";
  readonly stores: LogStore[] = [];
  #remove: () => Promise<void> = async () => undefined;

  constructor(
    private readonly defaults: Partial<DiskStoreOptions> = {},
    private readonly end: "abort" | "close" = "abort",
  ) {}

  async setUp(): Promise<string> {
    const t = await tempDir();
    this.dir = t.dir;
    this.#remove = t.remove;
    return t.dir;
  }

  async tearDown(): Promise<void> {
    for (const s of this.stores.splice(0)) await s[this.end]();
    await this.#remove();
  }

  async open(options: Partial<DiskStoreOptions> = {}): Promise<LogStore> {
    const s = createDiskStore({ dir: this.dir, ...this.defaults, ...options });
    this.stores.push(s);
    await s.open();
    return s;
  }
}

/**
 * Rewrites the checkpoint of the log in `dir` (both slots at `position`), as a lagging lazy
 * checkpoint write or a crash leaves it. The log's own segment size (log.json) applies.
 */
export async function setCheckpoint(dir: string, position: number): Promise<void> {
  const log = new DiskLog({ dir, segmentBytes: DEFAULT_SEGMENT_BYTES });
  await log.open();
  await log.writeCheckpoint({ durable: position, commit: position }, true);
  await log.close();
}
