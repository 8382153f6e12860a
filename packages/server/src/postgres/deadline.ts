/** A deadline on a database call whose own wait has none (the driver has no query timeout). */

/**
 * `work`, or `onTimeout()`'s error when it has not settled within `ms` (Infinity: no
 * deadline, only interrupts). `interrupts`: while
 * `work` runs, a call of any function in it ends the wait at once with `onTimeout(cause)`'s
 * error (the set holds each waiting call's function only while it waits).
 */
export function withDeadline<T>(
  work: PromiseLike<T>,
  ms: number,
  onTimeout: (cause?: Error) => Error,
  interrupts?: Set<(cause: Error) => void>,
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const end = (): void => {
      clearTimeout(timer);
      interrupts?.delete(interrupt);
    };
    const interrupt = (cause: Error): void => {
      end();
      reject(onTimeout(cause));
    };
    const timer =
      ms === Infinity
        ? undefined
        : setTimeout(() => {
            end();
            reject(onTimeout());
          }, ms);
    interrupts?.add(interrupt);
    Promise.resolve(work).then(
      (v) => {
        end();
        resolve(v);
      },
      (err: unknown) => {
        end();
        reject(err instanceof Error ? err : new Error(String(err)));
      },
    );
  });
}
