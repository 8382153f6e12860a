import type { ServerResponse } from "node:http";

/** JSON text an answer carries as it is (a page of events: event-json.ts). */
export class JsonText {
  constructor(readonly text: string) {}
}

/** Answers with a JSON body (never cached); every JSON answer of the node goes through here. */
export function sendJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  const text = body instanceof JsonText ? body.text : JSON.stringify(body);
  res.writeHead(status, {
    "Content-Type": "application/json; charset=utf-8",
    "Content-Length": String(Buffer.byteLength(text)),
    "Cache-Control": "no-store",
    ...headers,
  });
  res.end(text);
}
