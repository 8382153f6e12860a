import { streamNameProblem } from "@chorus/protocol";
import { InvalidArgumentError } from "../errors.js";
import type { Credentials, OperationOptions } from "../types.js";
import { checkOptions, optionKeys } from "../util/options.js";

export function checkStreamName(streamId: unknown): string {
  const problem = streamNameProblem(streamId);
  if (problem) throw new InvalidArgumentError(problem);
  return streamId as string;
}

/** The keys of OperationOptions: every operation accepts them. */
export const OPERATION_OPTION_KEYS = optionKeys<OperationOptions>({
  credentials: true,
  timeoutMs: true,
  signal: true,
  requireLeader: true,
});

export const CREDENTIAL_KEYS = optionKeys<Credentials>({ username: true, password: true });

/** Refuses a `credentials` object with keys other than username and password. */
export function checkCredentialKeys(where: string, credentials: unknown): void {
  checkOptions(where, credentials, CREDENTIAL_KEYS, { path: "credentials" });
}

/**
 * Checks the options of the operation `where`: no key outside `known` (OPERATION_OPTION_KEYS
 * by default), then the values of the keys every operation shares.
 */
export function checkOperationOptions(
  where: string,
  options: OperationOptions | undefined,
  known: readonly string[] = OPERATION_OPTION_KEYS,
): void {
  checkOptions(where, options, known);
  if (!options) return;
  if (
    options.timeoutMs !== undefined &&
    (typeof options.timeoutMs !== "number" || !(options.timeoutMs > 0))
  ) {
    throw new InvalidArgumentError(
      `timeoutMs must be a positive number of milliseconds, got ${String(options.timeoutMs)}`,
    );
  }
  if (options.credentials !== undefined) {
    const c = options.credentials;
    if (
      !c ||
      typeof c.username !== "string" ||
      c.username === "" ||
      typeof c.password !== "string"
    ) {
      throw new InvalidArgumentError("credentials need a non-empty username and a password");
    }
    checkCredentialKeys(where, c);
  }
  if (options.signal !== undefined && !(options.signal instanceof AbortSignal)) {
    throw new InvalidArgumentError("signal must be an AbortSignal");
  }
}
