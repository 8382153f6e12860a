/** The next value of an async iterator (a subscription), with a deadline. */
export async function nextEvent<T>(it: AsyncIterator<T>, timeoutMs = 10_000): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const r = await Promise.race([
    it.next(),
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error("no event before the deadline")), timeoutMs);
    }),
  ]).finally(() => clearTimeout(timer));
  if (r.done === true) throw new Error("the subscription ended");
  return r.value;
}
