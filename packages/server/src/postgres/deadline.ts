/** A deadline on a database call whose own wait has none (the driver has no query timeout). */

/** `work`, or `onTimeout()`'s error when it has not settled within `ms`. */
export function withDeadline<T>(
  work: PromiseLike<T>,
  ms: number,
  onTimeout: () => Error,
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(onTimeout()), ms);
    Promise.resolve(work).then(
      (v) => {
        clearTimeout(timer);
        resolve(v);
      },
      (err: unknown) => {
        clearTimeout(timer);
        reject(err instanceof Error ? err : new Error(String(err)));
      },
    );
  });
}
