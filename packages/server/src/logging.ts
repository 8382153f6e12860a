import { mkdirSync } from "node:fs";
import { join } from "node:path";
import pino, { type DestinationStream, type LevelWithSilent, type Logger } from "pino";

export type { Logger } from "pino";

export interface LoggerOptions {
  readonly level?: LevelWithSilent;
  /** Directory for a log file (`chorus-server.log`, appended to); stdout is always written. */
  readonly logDir?: string | null;
  /** Where the stdout copy goes; defaults to file descriptor 1 (tests may pass their own stream). */
  readonly stdout?: DestinationStream;
}

/** Paths pino removes from every log line, so credentials never reach a log. */
export const REDACTED_PATHS = [
  "password",
  "adminPassword",
  "credentials",
  "authorization",
  "*.password",
  "*.adminPassword",
  "*.credentials",
  "*.authorization",
  "headers.authorization",
  "req.headers.authorization",
];

/**
 * JSON lines on stdout (and in `<logDir>/chorus-server.log` when given). Writes are synchronous
 * so a line such as "node ready" is on stdout before anything that follows it.
 */
export function createLogger(options: LoggerOptions = {}): Logger {
  const level = options.level ?? "info";
  const stdout = options.stdout ?? pino.destination({ dest: 1, sync: true });
  const base = { level, redact: { paths: REDACTED_PATHS, censor: "[redacted]" } };
  if (!options.logDir || level === "silent") return pino(base, stdout);
  mkdirSync(options.logDir, { recursive: true });
  const file = pino.destination({
    dest: join(options.logDir, "chorus-server.log"),
    sync: true,
    append: true,
    mkdir: true,
  });
  return pino(
    base,
    pino.multistream([
      { level, stream: stdout },
      { level, stream: file },
    ]),
  );
}
