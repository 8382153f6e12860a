/** Errors of the command line itself, and how any error becomes an exit code and one line. */
import {
  ChorusError,
  InvalidArgumentError,
  StreamDeletedError,
  StreamNotFoundError,
} from "@chorus/client";

/** Exit codes: 0 success, 1 the operation failed, 2 a usage error. */
export const EXIT_OK = 0;
export const EXIT_FAILED = 1;
export const EXIT_USAGE = 2;

/** The command line was used wrongly (a bad combination of flags, a bad value): exit code 2. */
export class UsageError extends Error {
  override readonly name = "UsageError";
}

/** The operation failed for a reason the message names in full: exit code 1. */
export class CommandError extends Error {
  override readonly name = "CommandError";
}

/** Exit code for an error that ended a command. */
export function exitCodeOf(err: unknown): number {
  if (err instanceof UsageError) return EXIT_USAGE;
  // The client refuses a bad value (stream name, event type, setting) before sending it.
  if (err instanceof InvalidArgumentError) return EXIT_USAGE;
  return EXIT_FAILED;
}

/** One line naming the cause of `err`, without a stack trace. */
export function describeError(err: unknown): string {
  let text: string;
  if (err instanceof StreamNotFoundError) text = `stream "${err.streamId}" not found`;
  else if (err instanceof StreamDeletedError) text = `stream "${err.streamId}" is deleted`;
  else if (isFileError(err)) text = `${err.path}: ${fileProblem(err.message)}`;
  else if (err instanceof ChorusError || err instanceof UsageError || err instanceof CommandError)
    text = err.message;
  else if (err instanceof Error) text = err.message || err.name;
  else text = String(err);
  return text.replace(/\s*\n\s*/g, "; ").trim();
}

interface FileError extends Error {
  code: string;
  path: string;
}

function isFileError(err: unknown): err is FileError {
  const e = err as Partial<FileError> | null;
  return err instanceof Error && typeof e?.code === "string" && typeof e.path === "string";
}

/** "ENOENT: no such file or directory, open 'x'" -> "no such file or directory". */
function fileProblem(message: string): string {
  return message.replace(/^[A-Z0-9_]+: /, "").replace(/, [a-z]+ '.*'$/, "");
}
