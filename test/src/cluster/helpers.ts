import { getJson, type TestNode } from "@chorus/testing";

/**
 * The committed events of `stream` as `node` serves them over HTTP (ids, in order); over
 * https trusting `ca` when given. undefined when the node does not answer 200.
 */
export async function idsOn(
  node: TestNode,
  stream: string,
  ca?: string,
): Promise<string[] | undefined> {
  const scheme = ca === undefined ? "http" : "https";
  try {
    const res = await getJson(
      `${scheme}://${node.httpEndpoint}/streams/${stream}?count=1000`,
      2_000,
      ca,
    );
    if (res.status !== 200) return undefined;
    return (res.body as { events: { eventId: string }[] }).events.map((e) => e.eventId);
  } catch {
    return undefined;
  }
}
