import type { Checkpoint, Log } from "./log.js";

const BLOCK_BYTES = 1024 * 1024;

/**
 * The in-memory log (`--mem-db`): fixed-size blocks, nothing survives the process. Keeps its
 * bytes across close()/open() of the same object, which lets tests exercise reopening.
 */
export class MemoryLog implements Log {
  private readonly blocks: Buffer[] = [];
  private length = 0;
  private checkpoint: Checkpoint = { durable: null, commit: null };
  private hardState: Buffer | null = null;

  get end(): number {
    return this.length;
  }

  get sizeOnDisk(): number {
    return 0;
  }

  async open(): Promise<void> {}

  async read(position: number, length: number): Promise<Buffer> {
    return this.readSync(position, length);
  }

  readHeld(position: number, length: number): Buffer {
    return this.readSync(position, length);
  }

  readSync(position: number, length: number): Buffer {
    const end = Math.min(this.length, position + length);
    if (position < 0 || end <= position) return Buffer.alloc(0);
    const first = Math.floor(position / BLOCK_BYTES);
    const offset = position - first * BLOCK_BYTES;
    const block = this.blocks[first];
    if (block === undefined) return Buffer.alloc(0);
    if (offset + (end - position) <= BLOCK_BYTES)
      return block.subarray(offset, offset + (end - position));
    const out = Buffer.allocUnsafe(end - position);
    let copied = 0;
    let p = position;
    while (p < end) {
      const b = this.blocks[Math.floor(p / BLOCK_BYTES)];
      if (b === undefined) break;
      const o = p % BLOCK_BYTES;
      const n = Math.min(BLOCK_BYTES - o, end - p);
      b.copy(out, copied, o, o + n);
      copied += n;
      p += n;
    }
    return out;
  }

  async write(position: number, data: Buffer): Promise<void> {
    if (position !== this.length)
      throw new Error(`write at ${position} but the log ends at ${this.length}`);
    let done = 0;
    while (done < data.length) {
      const p = this.length;
      const index = Math.floor(p / BLOCK_BYTES);
      let block = this.blocks[index];
      if (block === undefined) {
        block = Buffer.alloc(BLOCK_BYTES);
        this.blocks[index] = block;
      }
      const o = p - index * BLOCK_BYTES;
      const n = Math.min(BLOCK_BYTES - o, data.length - done);
      data.copy(block, o, done, done + n);
      done += n;
      this.length += n;
    }
  }

  async sync(_background?: boolean): Promise<void> {}

  async syncFrom(_position: number): Promise<void> {}

  fileOffset(position: number): number {
    return position;
  }

  describePosition(position: number): string {
    return `log position ${position} (in memory)`;
  }

  async availableBytes(): Promise<number> {
    return Number.POSITIVE_INFINITY;
  }

  async truncate(position: number): Promise<void> {
    if (position < 0 || position > this.length)
      throw new RangeError(`cannot truncate to ${position}`);
    this.length = position;
    const keep = Math.ceil(position / BLOCK_BYTES);
    this.blocks.length = Math.min(this.blocks.length, keep);
    const last = this.blocks[keep - 1];
    if (last !== undefined && position % BLOCK_BYTES !== 0) last.fill(0, position % BLOCK_BYTES);
  }

  async close(): Promise<void> {}

  async readCheckpoint(): Promise<Checkpoint> {
    return this.checkpoint;
  }

  async writeCheckpoint(checkpoint: { durable: number; commit: number }): Promise<void> {
    this.checkpoint = { durable: checkpoint.durable, commit: checkpoint.commit };
  }

  async readHardState(): Promise<Buffer | null> {
    return this.hardState;
  }

  async writeHardState(data: Buffer): Promise<void> {
    this.hardState = Buffer.from(data);
  }
}
