import { InvalidArgumentError } from "../errors.js";

/**
 * The one iteration a subscription allows at a time. `begin()` hands out the iterator: `next`
 * from the subscription; a loop that breaks (`return`) ends the iteration and unsubscribes.
 * A second `begin()` while one runs is refused; the subscription calls `end()` when its
 * iteration finishes by itself (done, or thrown).
 */
export class SingleIteration<T> {
  readonly #next: () => Promise<IteratorResult<T>>;
  readonly #unsubscribe: () => Promise<void>;
  #running = false;

  constructor(next: () => Promise<IteratorResult<T>>, unsubscribe: () => Promise<void>) {
    this.#next = next;
    this.#unsubscribe = unsubscribe;
  }

  begin(): AsyncIterator<T> {
    if (this.#running)
      throw new InvalidArgumentError("a subscription can be iterated only once at a time");
    this.#running = true;
    return {
      next: () => this.#next(),
      return: async () => {
        this.#running = false;
        await this.#unsubscribe();
        return { done: true, value: undefined };
      },
    };
  }

  end(): void {
    this.#running = false;
  }
}
