import type { MemberInfo } from "../../../node-types.js";
import type { IncomingMember, MemberRecord } from "../wire.js";

export function record(
  id: string,
  timestampMs: number,
  over: Partial<MemberRecord> = {},
): MemberRecord {
  const port = 2000 + (id.charCodeAt(0) % 100);
  return {
    instanceId: id,
    state: "Follower",
    timestampMs,
    internalTcp: { host: "127.0.0.1", port: port + 100 },
    externalTcp: { host: "127.0.0.1", port: port + 200 },
    internalHttp: { host: "127.0.0.1", port },
    externalHttp: { host: "127.0.0.1", port: port + 300 },
    lastCommitPosition: 10,
    writerCheckpoint: 10,
    chaserCheckpoint: 10,
    epochNumber: 1,
    epochPosition: 0,
    epochId: "00000000-0000-0000-0000-000000000001",
    nodePriority: 0,
    isReadOnlyReplica: false,
    ...over,
  };
}

export function incoming(r: MemberRecord, isAlive = true): IncomingMember {
  return { record: r, isAlive };
}

export function wireMember(
  over: Partial<Record<keyof MemberInfo, unknown>> = {},
): Record<string, unknown> {
  return {
    instanceId: "a",
    state: "Leader",
    isAlive: true,
    timestamp: "2025-01-01T00:00:00.000Z",
    internalTcp: { host: "127.0.0.1", port: 1112 },
    externalTcp: { host: "127.0.0.1", port: 1113 },
    internalHttp: { host: "127.0.0.1", port: 2112 },
    externalHttp: { host: "127.0.0.1", port: 2113 },
    lastCommitPosition: "9007199254740991",
    writerCheckpoint: "5",
    chaserCheckpoint: "5",
    epochNumber: 3,
    epochPosition: "0",
    epochId: "00000000-0000-0000-0000-000000000000",
    nodePriority: 0,
    isReadOnlyReplica: false,
    ...over,
  };
}

/** Polls until `predicate` is truthy; throws when `timeoutMs` passes. */
export async function waitUntil<T>(
  predicate: () => T | Promise<T>,
  what: string,
  timeoutMs = 10_000,
  intervalMs = 20,
): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await predicate();
    if (value) return value;
    if (Date.now() >= deadline)
      throw new Error(`waitUntil: ${what} not met within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}
