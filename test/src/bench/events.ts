import { jsonEvent } from "@chorus/client";

const payload = { kind: "bench", text: "x".repeat(60), n: 0 }; // ~100 bytes of JSON

/** The bench's event: a ~100-byte JSON payload carrying `n`. */
export function event(n: number) {
  return jsonEvent({ type: "BenchEvent", data: { ...payload, n } });
}

/** The bench's event with a JSON payload of about `bytes` bytes (at least ~100). */
export function sizedEvent(n: number, bytes: number) {
  const text = "x".repeat(Math.max(60, bytes - 40));
  return jsonEvent({ type: "BenchEvent", data: { ...payload, text, n } });
}
