/** A simulated network: loss, duplication, random delay (hence reordering), partitions. */
import type { NodeId } from "../core/types.js";
import type { Rng } from "./rng.js";

export interface NetworkFaults {
  lossRate: number;
  duplicateRate: number;
  minDelayMs: number;
  maxDelayMs: number;
}

export class SimNetwork {
  /** Directed links that drop everything: "from>to". */
  private readonly blocked = new Set<string>();

  constructor(
    private readonly rng: Rng,
    public faults: NetworkFaults,
  ) {}

  /** Delivery delays for one send: none when dropped, two when duplicated. */
  delays(from: NodeId, to: NodeId): number[] {
    if (this.isBlocked(from, to) || this.rng.chance(this.faults.lossRate)) return [];
    const delay = (): number => this.rng.int(this.faults.minDelayMs, this.faults.maxDelayMs);
    return this.rng.chance(this.faults.duplicateRate) ? [delay(), delay()] : [delay()];
  }

  isBlocked(from: NodeId, to: NodeId): boolean {
    return this.blocked.has(`${from}>${to}`);
  }

  block(from: NodeId, to: NodeId): void {
    this.blocked.add(`${from}>${to}`);
  }

  /** Splits the nodes into two sides that cannot talk (symmetric partition). */
  partition(side: readonly NodeId[], rest: readonly NodeId[]): void {
    for (const a of side) {
      for (const b of rest) {
        this.block(a, b);
        this.block(b, a);
      }
    }
  }

  heal(): void {
    this.blocked.clear();
  }

  get partitioned(): boolean {
    return this.blocked.size > 0;
  }
}
