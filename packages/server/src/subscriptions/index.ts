export {
  MAX_CREDIT,
  Subscription,
  type DropCode,
  type SubscriptionOptions,
  type SubscriptionSink,
  type SubscriptionStart,
  type SubscriptionTarget,
} from "./subscription.js";
