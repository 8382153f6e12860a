import type { Socket } from "node:net";

/**
 * Ends `socket` with a reset (RST) where the system allows one, otherwise closes it: the way
 * the kit's proxies show a fault to whoever is still connected.
 *
 * A reset is not possible while the socket connects, nor while its end (`end()`, a
 * shutdown) is on its way out: libuv refuses to reset a socket that is shutting down
 * (`uv_tcp_close_reset` answers EINVAL), and Node then drops the handle without closing it,
 * so the descriptor stays open for good (Node.js 20: `end()` then `resetAndDestroy()` in the
 * same turn). Such a socket is destroyed: its peer has its FIN, or gets one.
 */
export function resetSocket(socket: Socket): void {
  if (socket.destroyed) return;
  if (socket.connecting || (socket.writableEnded && !socket.writableFinished)) socket.destroy();
  else socket.resetAndDestroy();
}
