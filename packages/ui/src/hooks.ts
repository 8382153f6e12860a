import { useEffect, useRef, useState } from "preact/hooks";
import { errorText } from "./api.js";

export interface Polled<T> {
  data: T | undefined;
  error: string | undefined;
  /** Asks again now. */
  refresh: () => void;
}

/**
 * Calls `load` now and `intervalMs` after each answer, until the component goes away or `key`
 * changes (then the request in flight is aborted).
 */
export function usePoll<T>(
  load: (signal: AbortSignal) => Promise<T>,
  intervalMs: number,
  key: string,
): Polled<T> {
  const [data, setData] = useState<T | undefined>(undefined);
  const [error, setError] = useState<string | undefined>(undefined);
  const kick = useRef<() => void>(() => undefined);
  const loadRef = useRef(load);
  loadRef.current = load;
  useEffect(() => {
    const abort = new AbortController();
    let timer: ReturnType<typeof setTimeout> | undefined;
    setData(undefined);
    setError(undefined);
    const run = async (): Promise<void> => {
      if (timer !== undefined) clearTimeout(timer);
      timer = undefined;
      try {
        const value = await loadRef.current(abort.signal);
        if (abort.signal.aborted) return;
        setData(value);
        setError(undefined);
      } catch (err) {
        if (abort.signal.aborted) return;
        setError(errorText(err));
      }
      if (!abort.signal.aborted) timer = setTimeout(() => void run(), intervalMs);
    };
    kick.current = () => void run();
    void run();
    return () => {
      abort.abort();
      if (timer !== undefined) clearTimeout(timer);
    };
  }, [key, intervalMs]);
  return { data, error, refresh: () => kick.current() };
}

/** The part of the location after `#`, kept in step with navigation. */
export function useHashRoute(): string {
  const [hash, setHash] = useState(location.hash.replace(/^#/, ""));
  useEffect(() => {
    const on = (): void => setHash(location.hash.replace(/^#/, ""));
    window.addEventListener("hashchange", on);
    return () => window.removeEventListener("hashchange", on);
  }, []);
  return hash;
}
