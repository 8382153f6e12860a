import { streamNameProblem } from "@chorus/protocol";
import { InvalidArgumentError } from "../errors.js";
import type { OperationOptions } from "../types.js";

export function checkStreamName(streamId: unknown): string {
  const problem = streamNameProblem(streamId);
  if (problem) throw new InvalidArgumentError(problem);
  return streamId as string;
}

export function checkOperationOptions(options: OperationOptions | undefined): void {
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
  }
  if (options.signal !== undefined && !(options.signal instanceof AbortSignal)) {
    throw new InvalidArgumentError("signal must be an AbortSignal");
  }
}
