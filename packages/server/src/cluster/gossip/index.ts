export {
  GossipService,
  systemClock,
  DEFAULT_GOSSIP_INTERVAL_MS,
  DEFAULT_DEAD_AFTER_ROUNDS,
  DEFAULT_REMOVE_AFTER_MS,
  DEFAULT_GOSSIP_TIMEOUT_MS,
  DEFAULT_MAX_GOSSIP_BODY_BYTES,
  type GossipClock,
  type GossipLogger,
  type GossipMember,
  type GossipServiceOptions,
  type SelfMemberInfo,
} from "./service.js";
export {
  HttpGossipTransport,
  GossipRequestError,
  type GossipTransport,
  type HttpGossipTransportOptions,
} from "./transport.js";
export { Membership, type MemberEntry, type MembershipOptions } from "./membership.js";
export { gossipTargets, type TargetInput } from "./targets.js";
export {
  MEMBER_STATES,
  endpointKey,
  parseEndpoint,
  parseGossipDocument,
  parseGossipText,
  recordToWire,
  type MemberRecord,
  type MemberState,
} from "./wire.js";
