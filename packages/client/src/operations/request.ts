import type { Frame } from "@chorus/protocol";
import { ConnectionError, errorFromWire, type WireErrorContext } from "../errors.js";
import type { Session } from "../connection/connection.js";
import type { OutgoingFrame } from "../transport/transport.js";
import type { Credentials } from "../types.js";
import { abortReason, type Abortable } from "../util/timers.js";

/**
 * Sends one request on a fresh channel and resolves with its single reply. An `error`
 * or `not_handled` reply rejects with the mapped error; a lost connection with
 * ConnectionError; an aborted signal with its reason.
 */
export function sendRequest(
  session: Session,
  frame: OutgoingFrame,
  options: {
    credentials?: Credentials | undefined;
    signal?: Abortable | undefined;
    errorContext?: WireErrorContext;
  },
): Promise<Frame> {
  return new Promise<Frame>((resolve, reject) => {
    const { signal } = options;
    if (signal?.aborted) {
      reject(abortReason(signal));
      return;
    }
    let settled = false;
    const finish = () => {
      settled = true;
      channel.close();
      signal?.removeEventListener("abort", onAbort);
    };
    const onAbort = () => {
      if (settled) return;
      finish();
      reject(abortReason(signal!));
    };
    const channel = session.transport.open({
      onFrame(reply) {
        if (settled) return;
        finish();
        if (reply.error) reject(errorFromWire({ error: reply.error }, options.errorContext));
        else if (reply.notHandled)
          reject(errorFromWire({ notHandled: reply.notHandled }, options.errorContext));
        else resolve(reply);
      },
      onClose(error) {
        if (settled) return;
        finish();
        reject(
          error instanceof ConnectionError
            ? error
            : new ConnectionError(error.message, { cause: error }),
        );
      },
    });
    signal?.addEventListener("abort", onAbort, { once: true });
    try {
      channel.send(
        options.credentials ? { ...frame, credentials: { ...options.credentials } } : frame,
      );
    } catch (err) {
      if (settled) return;
      finish();
      reject(
        err instanceof ConnectionError ? err : new ConnectionError(String(err), { cause: err }),
      );
    }
  });
}
