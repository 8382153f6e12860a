/**
 * Cleanups to run synchronously when this process exits (servers to kill, directories to
 * remove), under one `exit` listener for all of them: a test that starts a dozen nodes adds
 * no dozen listeners to `process` (and no MaxListenersExceededWarning).
 */

const cleanups = new Set<() => void>();
let installed = false;

function runAll(): void {
  for (const cleanup of cleanups) {
    try {
      cleanup();
    } catch {
      // best effort: the others still run
    }
  }
}

/** Runs `cleanup` when this process exits, until the returned function is called. */
export function onProcessExit(cleanup: () => void): () => void {
  if (!installed) {
    installed = true;
    process.on("exit", runAll);
  }
  // A wrapper of its own: the same function registered twice is two registrations.
  const entry = (): void => cleanup();
  cleanups.add(entry);
  return () => {
    cleanups.delete(entry);
  };
}
