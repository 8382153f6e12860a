/**
 * The in-process connection between a client and a node of the same process: the frames of
 * the native protocol handed over as objects, with no socket and no encoding. The client
 * (`ConnectionSettings.withInProcessNode`) depends on this interface only; the server's
 * `ChorusNode` implements it.
 *
 * Delivery in both directions is asynchronous and in order: a frame sent is handled in a
 * later microtask, never inside the call that sent it.
 */
import { frameBodies } from "./gen/bodies.js";
import type { Frame, FrameBodyKind, FrameInit } from "./frame.js";

/** What a node calls on the client end of an in-process connection. */
export interface InProcessClientEnd {
  /**
   * One frame from the node, with the fields `decodeFrame` gives except `body` (the receiver
   * reads the body field it expects). Fields a decoded frame would hold at their default
   * value may be absent.
   */
  receive(frame: Frame): void;
  /** The node ended the connection; `code` and `reason` are what a WebSocket close carries. */
  closed(code: number, reason: string): void;
}

/** What the client calls on the node end of an in-process connection. */
export interface InProcessServerEnd {
  /**
   * One request: its correlation id, and its frame without one (the client's own object, which
   * it may send again under another id; the node may keep what it references). The id comes
   * alongside so that the frame is handed over as it is, not copied to carry it.
   */
  send(correlationId: number, frame: FrameInit): void;
  /** The client ends the connection, as a WebSocket close 1000 would. */
  close(): void;
}

/** The outcome of opening an in-process connection. */
export type InProcessOpenResult =
  | {
      readonly ok: true;
      readonly connection: InProcessServerEnd;
      /** With partitions: the node's group and every group's name (as the upgrade headers). */
      readonly partition?: { readonly name: string; readonly names: readonly string[] };
    }
  /** 401: the credentials were refused; 503: the node is shutting down or closed. */
  | { readonly ok: false; readonly status: 401 | 503; readonly message: string };

/** A node in this process that clients reach without a socket (`ChorusNode` implements it). */
export interface InProcessNode {
  readonly instanceId: string;
  /** The node's gossip document, as `GET /gossip` answers it (`{ members: [...] }`). */
  gossip(): unknown;
  /**
   * Opens a connection. `credentials` play the part of HTTP Basic credentials on a WebSocket
   * upgrade: connection-wide, checked now, and each frame may still carry its own.
   */
  openInProcess(
    client: InProcessClientEnd,
    options?: { readonly credentials?: { readonly username: string; readonly password: string } },
  ): InProcessOpenResult;
}

/** True when `value` has the shape of an InProcessNode. */
export function isInProcessNode(value: unknown): value is InProcessNode {
  if (typeof value !== "object" || value === null) return false;
  const v = value as Partial<InProcessNode>;
  return (
    typeof v.instanceId === "string" &&
    typeof v.gossip === "function" &&
    typeof v.openInProcess === "function"
  );
}

/**
 * The name of the body a frame carries (what `decodeFrame` puts in `body`), read from the
 * frame's own keys without changing the frame; undefined when it carries no known body.
 */
export function frameBodyOf(frame: FrameInit): FrameBodyKind | undefined {
  // A frame has one body besides its correlation id and credentials.
  const keys = Object.keys(frame);
  for (let i = 0; i < keys.length; i++) {
    const key = keys[i] as string;
    if (key === "correlationId" || key === "credentials") continue;
    if ((frame as Record<string, unknown>)[key] != null && Object.hasOwn(frameBodies, key))
      return key as FrameBodyKind;
  }
  return undefined;
}
