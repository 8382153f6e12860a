import type { TestNode } from "@chorus/testing";

/** The committed events of `stream` as `node` serves them over HTTP (ids, in order). */
export async function idsOn(node: TestNode, stream: string): Promise<string[] | undefined> {
  try {
    const res = await fetch(`http://${node.httpEndpoint}/streams/${stream}?count=1000`, {
      signal: AbortSignal.timeout(2_000),
    });
    if (res.status !== 200) {
      await res.body?.cancel();
      return undefined;
    }
    const body = (await res.json()) as { events: { eventId: string }[] };
    return body.events.map((e) => e.eventId);
  } catch {
    return undefined;
  }
}
