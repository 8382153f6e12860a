/** Defaults of every setting, with their units. */
import type { NodePreference } from "../types.js";

export const DEFAULT_NODE_PREFERENCE: NodePreference = "leader";
/** Reconnections after a lost connection before the client gives up; Infinity = keep reconnecting. */
export const DEFAULT_MAX_RECONNECTIONS = 10;
/** Base of the capped, jittered exponential backoff between reconnections, in ms. */
export const DEFAULT_RECONNECTION_DELAY_MS = 100;
/** Upper bound of any backoff delay, in ms. */
export const DEFAULT_MAX_BACKOFF_DELAY_MS = 5_000;
/** Retries of one operation (after its first attempt); Infinity = keep retrying. */
export const DEFAULT_MAX_RETRIES = 10;
/** Deadline of one operation, retries included, in ms. */
export const DEFAULT_OPERATION_TIMEOUT_MS = 7_000;
/** How long a request may wait for a connection while no node is reachable, in ms. */
export const DEFAULT_QUEUE_TIMEOUT_MS = 10_000;
/** Discovery rounds over all seeds / DNS records before discovery fails. */
export const DEFAULT_MAX_DISCOVER_ATTEMPTS = 10;
/** Base delay between discovery rounds, in ms. */
export const DEFAULT_DISCOVER_DELAY_MS = 500;
/** Deadline of one gossip request, in ms. */
export const DEFAULT_GOSSIP_TIMEOUT_MS = 1_000;
/** WebSocket ping interval, in ms. */
export const DEFAULT_HEARTBEAT_INTERVAL_MS = 750;
/** A connection with no pong within this many ms after a ping is dead, in ms. */
export const DEFAULT_HEARTBEAT_TIMEOUT_MS = 1_500;
/** Deadline of the WebSocket handshake with a chosen node, in ms. */
export const DEFAULT_CONNECT_TIMEOUT_MS = 5_000;
/** Events per page of a read over a socket. */
export const DEFAULT_READ_PAGE_SIZE = 2048;
/**
 * Events per page of a read from a node of this process (withInProcessNode). Smaller than over
 * a socket: a page costs no round trip here, and pages of 2048 (the node's read-ahead page,
 * the page being consumed and the one prefetched, all in one heap) outlived the young
 * generation's collections: a read of $all ran at about 160k events/s against about 265k with
 * pages of 512, in memory and on disk alike.
 */
export const DEFAULT_IN_PROCESS_READ_PAGE_SIZE = 512;
/** Events a subscription buffers ahead of the application (and the credit it grants). */
export const DEFAULT_SUBSCRIPTION_BUFFER_SIZE = 500;
/** Default gossip port of cluster DNS discovery. */
export const DEFAULT_GOSSIP_PORT = 2113;
/** DNS port when a DNS server is given without one. */
export const DEFAULT_DNS_PORT = 53;
/** Retries a client may make per operation it starts, within the retry budget's window. */
export const DEFAULT_RETRY_BUDGET_RATIO = 0.2;
/** Retries a client may make per second on top of its ratio, whatever its traffic. */
export const DEFAULT_RETRY_BUDGET_MIN_RETRIES_PER_SECOND = 10;
/** How long operations and retries count towards the retry budget, in ms. */
export const DEFAULT_RETRY_BUDGET_WINDOW_MS = 10_000;
