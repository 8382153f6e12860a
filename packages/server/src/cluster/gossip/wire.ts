/**
 * The gossip document on the wire (api.md) and its validation.
 *
 * Wire form: `{ members: MemberInfo[], clusterId?: string, sender?: string }`.
 * `members` is api.md's document; `clusterId` and `sender` are optional additions (clients
 * ignore them): `clusterId` lets a node refuse views from another cluster, `sender` is the
 * instanceId of the node that produced the document, so the receiver knows which record came
 * straight from its owner ("direct" gossip).
 *
 * Positions are decimal strings on the wire and numbers inside (the store's positions are
 * numbers); a position beyond `Number.MAX_SAFE_INTEGER` is rejected as malformed.
 */
import type { Endpoint, MemberInfo } from "../../node-types.js";

/** Member states of api.md. Anything else is rejected as malformed. */
export const MEMBER_STATES = [
  "Initializing",
  "DiscoverLeader",
  "Unknown",
  "PreReplica",
  "CatchingUp",
  "Clone",
  "Follower",
  "PreLeader",
  "Leader",
  "ReadOnlyLeaderless",
  "PreReadOnlyReplica",
  "ReadOnlyReplica",
  "ResigningLeader",
  "ShuttingDown",
  "Shutdown",
] as const;
export type MemberState = (typeof MEMBER_STATES)[number];
const STATE_SET: ReadonlySet<string> = new Set(MEMBER_STATES);

/** A member record as the model holds it: MemberInfo with numeric positions and timestamp. */
export interface MemberRecord {
  readonly instanceId: string;
  readonly state: MemberState;
  /** The owner's wall clock (ms since the epoch) when it produced this record. */
  readonly timestampMs: number;
  readonly internalTcp: Endpoint;
  readonly externalTcp: Endpoint;
  readonly internalHttp: Endpoint;
  readonly externalHttp: Endpoint;
  readonly lastCommitPosition: number;
  readonly writerCheckpoint: number;
  readonly chaserCheckpoint: number;
  readonly epochNumber: number;
  readonly epochPosition: number;
  readonly epochId: string;
  readonly nodePriority: number;
  readonly isReadOnlyReplica: boolean;
}

/** What the node reports about itself (the service stamps `timestampMs`). */
export type SelfInfo = Omit<MemberRecord, "timestampMs">;

/** A validated incoming member: the record plus the sender's opinion of its liveness. */
export interface IncomingMember {
  readonly record: MemberRecord;
  /** `isAlive` as the sender saw it (an opinion, never a clock reading). */
  readonly isAlive: boolean;
}

export interface ParsedDocument {
  readonly members: IncomingMember[];
  readonly clusterId: string | undefined;
  readonly sender: string | undefined;
}

export type ParseResult =
  | { readonly ok: true; readonly doc: ParsedDocument }
  | { readonly ok: false; readonly reason: string };

export const MAX_MEMBERS_PER_DOCUMENT = 1_000;
const MAX_ID_LENGTH = 128;
const MAX_HOST_LENGTH = 255;
const POSITION = /^-?\d{1,16}$/;

export function endpointKey(ep: Endpoint): string {
  return `${ep.host.includes(":") && !ep.host.startsWith("[") ? `[${ep.host}]` : ep.host}:${ep.port}`;
}

/** Parses `host:port` (IPv6 as `[::1]:2112`); undefined when malformed. */
export function parseEndpoint(text: string): Endpoint | undefined {
  const m = /^(?:\[([^\]]+)\]|([^:\s]+)):(\d{1,5})$/.exec(text.trim());
  if (!m) return undefined;
  const host = m[1] ?? m[2];
  const port = Number(m[3]);
  if (!host || !Number.isInteger(port) || port < 1 || port > 65_535) return undefined;
  return { host, port };
}

export function recordToWire(record: MemberRecord, isAlive: boolean): MemberInfo {
  return {
    instanceId: record.instanceId,
    state: record.state,
    isAlive,
    timestamp: new Date(record.timestampMs).toISOString(),
    internalTcp: { ...record.internalTcp },
    externalTcp: { ...record.externalTcp },
    internalHttp: { ...record.internalHttp },
    externalHttp: { ...record.externalHttp },
    lastCommitPosition: String(record.lastCommitPosition),
    writerCheckpoint: String(record.writerCheckpoint),
    chaserCheckpoint: String(record.chaserCheckpoint),
    epochNumber: record.epochNumber,
    epochPosition: String(record.epochPosition),
    epochId: record.epochId,
    nodePriority: record.nodePriority,
    isReadOnlyReplica: record.isReadOnlyReplica,
  };
}

class Invalid extends Error {}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function str(o: Record<string, unknown>, key: string, max: number): string {
  const v = o[key];
  if (typeof v !== "string" || v.length === 0 || v.length > max)
    throw new Invalid(`${key} must be a non-empty string of at most ${max} characters`);
  return v;
}

function bool(o: Record<string, unknown>, key: string): boolean {
  const v = o[key];
  if (typeof v !== "boolean") throw new Invalid(`${key} must be a boolean`);
  return v;
}

function int(o: Record<string, unknown>, key: string): number {
  const v = o[key];
  if (typeof v !== "number" || !Number.isSafeInteger(v))
    throw new Invalid(`${key} must be an integer`);
  return v;
}

function position(o: Record<string, unknown>, key: string): number {
  const v = o[key];
  if (typeof v !== "string" || !POSITION.test(v))
    throw new Invalid(`${key} must be a decimal string`);
  const n = Number(v);
  if (!Number.isSafeInteger(n)) throw new Invalid(`${key} is out of range`);
  return n;
}

function endpoint(o: Record<string, unknown>, key: string): Endpoint {
  const v = o[key];
  if (!isObject(v)) throw new Invalid(`${key} must be {host, port}`);
  const host = str(v, "host", MAX_HOST_LENGTH);
  const port = v.port;
  if (typeof port !== "number" || !Number.isInteger(port) || port < 0 || port > 65_535)
    throw new Invalid(`${key}.port must be an integer in 0..65535`);
  return { host, port };
}

function parseMember(v: unknown): IncomingMember {
  if (!isObject(v)) throw new Invalid("a member must be an object");
  const instanceId = str(v, "instanceId", MAX_ID_LENGTH);
  try {
    const state = str(v, "state", 32);
    if (!STATE_SET.has(state)) throw new Invalid(`state ${JSON.stringify(state)} is unknown`);
    const ts = str(v, "timestamp", 64);
    const timestampMs = Date.parse(ts);
    if (!Number.isFinite(timestampMs)) throw new Invalid("timestamp must be an ISO date");
    const record: MemberRecord = {
      instanceId,
      state: state as MemberState,
      timestampMs,
      internalTcp: endpoint(v, "internalTcp"),
      externalTcp: endpoint(v, "externalTcp"),
      internalHttp: endpoint(v, "internalHttp"),
      externalHttp: endpoint(v, "externalHttp"),
      lastCommitPosition: position(v, "lastCommitPosition"),
      writerCheckpoint: position(v, "writerCheckpoint"),
      chaserCheckpoint: position(v, "chaserCheckpoint"),
      epochNumber: int(v, "epochNumber"),
      epochPosition: position(v, "epochPosition"),
      epochId: str(v, "epochId", MAX_ID_LENGTH),
      nodePriority: int(v, "nodePriority"),
      isReadOnlyReplica: bool(v, "isReadOnlyReplica"),
    };
    return { record, isAlive: bool(v, "isAlive") };
  } catch (err) {
    if (err instanceof Invalid) throw new Invalid(`member ${instanceId}: ${err.message}`);
    throw err;
  }
}

/**
 * Validates a gossip document (already JSON-parsed). All or nothing: one malformed member
 * rejects the whole document, so a bad body never changes the view.
 */
export function parseGossipDocument(body: unknown): ParseResult {
  try {
    if (!isObject(body)) throw new Invalid("the body must be a JSON object");
    const members = body.members;
    if (!Array.isArray(members)) throw new Invalid("members must be an array");
    if (members.length > MAX_MEMBERS_PER_DOCUMENT)
      throw new Invalid(`more than ${MAX_MEMBERS_PER_DOCUMENT} members`);
    const clusterId =
      body.clusterId === undefined ? undefined : str(body, "clusterId", MAX_ID_LENGTH);
    const sender = body.sender === undefined ? undefined : str(body, "sender", MAX_ID_LENGTH);
    const parsed = members.map(parseMember);
    const seen = new Set<string>();
    for (const m of parsed) {
      if (seen.has(m.record.instanceId))
        throw new Invalid(`member ${m.record.instanceId} appears twice`);
      seen.add(m.record.instanceId);
    }
    return { ok: true, doc: { members: parsed, clusterId, sender } };
  } catch (err) {
    if (err instanceof Invalid) return { ok: false, reason: err.message };
    throw err;
  }
}

/** JSON text → document; JSON syntax errors become a reason, like any other bad input. */
export function parseGossipText(text: string): ParseResult {
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    return { ok: false, reason: "the body is not valid JSON" };
  }
  return parseGossipDocument(body);
}
