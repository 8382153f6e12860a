/** The part of a Node.js stream socket that corking needs. */
export interface Corkable {
  cork(): void;
  uncork(): void;
}

const corked = new WeakSet<Corkable>();

/**
 * Holds a socket's writes until the end of the current tick, so the frames sent in one tick
 * (pipelined requests, the replies one group commit releases) leave in one write system call
 * instead of one each. Idempotent within a tick.
 */
export function corkUntilNextTick(socket: Corkable): void {
  if (corked.has(socket)) return;
  corked.add(socket);
  socket.cork();
  process.nextTick(() => {
    corked.delete(socket);
    socket.uncork();
  });
}

/**
 * `corkUntilNextTick` for the socket under a `ws` WebSocket (its `_socket`; nothing when it
 * has none, e.g. once closed).
 */
export function corkWebSocketUntilNextTick(ws: object): void {
  const socket = (ws as { _socket?: Corkable | null })._socket;
  if (socket) corkUntilNextTick(socket);
}
