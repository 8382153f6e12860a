import type { Frame, FrameInit } from "@chorus/protocol";
import type { Endpoint } from "../types.js";

/** A frame to send; the transport fills in the correlation id of the channel. */
export type OutgoingFrame = Omit<FrameInit, "correlationId">;

/** Receives the frames of one correlation id and the end of the connection. */
export interface ChannelHandler {
  onFrame(frame: Frame): void;
  /** The connection ended (lost, closed, heartbeat timeout) while the channel was open. */
  onClose(error: Error): void;
}

/** One request/response conversation (a correlation id) on a transport. */
export interface Channel {
  readonly id: number;
  /** Sends a frame with this channel's correlation id. Throws ConnectionError when the transport is closed. */
  send(frame: OutgoingFrame): void;
  /** Stops dispatching to this channel (sends nothing). */
  close(): void;
}

/** A partitioned node's replication group and every group's name, as it says on connecting. */
export interface NodePartition {
  readonly name: string;
  readonly names: readonly string[];
}

/** One connection to one node: the only socket seam of the client. */
export interface Transport {
  readonly endpoint: Endpoint;
  readonly isOpen: boolean;
  /** The node's group, when it serves one of a partitioned deployment; undefined otherwise. */
  readonly partition: NodePartition | undefined;
  /** Resolves with the reason once the connection has ended, for whatever reason. */
  readonly closed: Promise<Error>;
  /** Opens a channel under a fresh correlation id. */
  open(handler: ChannelHandler): Channel;
  /** Graceful close (1000); resolves once the socket is gone. */
  close(reason?: string): Promise<void>;
  /** Immediate teardown. */
  destroy(error?: Error): void;
}

export interface TransportConnectOptions {
  endpoint: Endpoint;
  signal?: AbortSignal;
}

/** Opens transports; the connection module receives one so tests can replace the sockets. */
export type TransportFactory = (options: TransportConnectOptions) => Promise<Transport>;
