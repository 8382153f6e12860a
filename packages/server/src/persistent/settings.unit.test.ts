import { chorus } from "@chorus/protocol";
import { describe, expect, it } from "vitest";
import {
  DEFAULT_GROUP_SETTINGS,
  SettingsError,
  settingsFromJson,
  settingsFromWire,
  settingsToWire,
  validateSettings,
  type GroupSettings,
} from "./settings.js";

describe("group settings", () => {
  it("has the defaults of api.md", () => {
    expect(DEFAULT_GROUP_SETTINGS).toEqual({
      startFrom: "start",
      consumerStrategy: "RoundRobin",
      messageTimeoutMs: 30_000,
      maxRetryCount: 10,
      liveBufferSize: 500,
      readBatchSize: 20,
      historyBufferSize: 500,
      checkpointAfterMs: 2_000,
      minCheckpointCount: 10,
      maxCheckpointCount: 1_000,
      maxSubscriberCount: 0,
      resolveLinks: false,
    });
  });

  it.each<[Partial<GroupSettings>, RegExp]>([
    [{ readBatchSize: 500 }, /readBatchSize \(500\) must be below historyBufferSize \(500\)/],
    [
      { minCheckpointCount: 20, maxCheckpointCount: 10 },
      /minCheckpointCount \(20\) must not exceed/,
    ],
    [{ liveBufferSize: 0 }, /liveBufferSize must be an integer in 1\.\./],
    [{ messageTimeoutMs: -1 }, /messageTimeoutMs must be an integer/],
    [{ maxRetryCount: 1.5 }, /maxRetryCount must be an integer/],
    [{ consumerStrategy: "Random" as never }, /consumerStrategy must be one of/],
    [{ startFrom: -3 }, /startFrom must be an integer/],
    [{ resolveLinks: true }, /resolveLinks is not supported/],
  ])("refuses %j", (change, message) => {
    expect(() => validateSettings({ ...DEFAULT_GROUP_SETTINGS, ...change })).toThrow(SettingsError);
    expect(() => validateSettings({ ...DEFAULT_GROUP_SETTINGS, ...change })).toThrow(message);
  });

  it("applies only the wire fields that are present (update keeps the rest)", () => {
    const base = { ...DEFAULT_GROUP_SETTINGS, consumerStrategy: "Pinned" as const };
    const s = settingsFromWire({ messageTimeoutMs: 0 }, base);
    expect(s.messageTimeoutMs).toBe(0);
    expect(s.consumerStrategy).toBe("Pinned");
    expect(settingsFromWire(null, base)).toEqual(base);
  });

  it("round-trips through the wire and through JSON", () => {
    const s: GroupSettings = {
      ...DEFAULT_GROUP_SETTINGS,
      startFrom: 42,
      consumerStrategy: "DispatchToSingle",
      maxSubscriberCount: 3,
    };
    const wire = chorus.PersistentSettings.decode(
      chorus.PersistentSettings.encode(settingsToWire(s)).finish(),
    );
    expect(settingsFromWire(wire, DEFAULT_GROUP_SETTINGS)).toEqual(s);
    expect(settingsFromJson(JSON.parse(JSON.stringify(s)))).toEqual(s);
    expect(settingsFromJson({})).toEqual(DEFAULT_GROUP_SETTINGS);
  });

  describe("filter", () => {
    const filter = { streamNamePrefix: ["order-"], eventTypeRegex: "^Order(Placed|Paid)$" };

    it("round-trips through the wire and through JSON (as the config stream stores it)", () => {
      const s: GroupSettings = { ...DEFAULT_GROUP_SETTINGS, filter };
      const wire = chorus.PersistentSettings.decode(
        chorus.PersistentSettings.encode(settingsToWire(s)).finish(),
      );
      expect(wire.filter?.streamNamePrefix).toEqual(["order-"]);
      expect(settingsFromWire(wire, DEFAULT_GROUP_SETTINGS).filter).toEqual(filter);
      expect(settingsFromJson(JSON.parse(JSON.stringify(s))).filter).toEqual(filter);
    });

    it("is kept by an update without one, replaced by one with one, and dropped by an empty one", () => {
      const base: GroupSettings = { ...DEFAULT_GROUP_SETTINGS, filter };
      expect(settingsFromWire({ maxRetryCount: 3 }, base).filter).toEqual(filter);
      expect(settingsFromWire({ filter: { streamNameRegex: "^cart-" } }, base).filter).toEqual({
        streamNameRegex: "^cart-",
      });
      expect(settingsFromWire({ filter: {} }, base).filter).toBeUndefined();
      expect(settingsFromWire({ filter: { includeSystem: true } }, base).filter).toEqual({
        includeSystem: true,
      });
    });

    it.each<[chorus.IFilter, RegExp]>([
      [{ streamNameRegex: "(" }, /^filter: streamNameRegex is not a valid regular expression/],
      [{ eventTypeRegex: "(?=a)a|b" }, /^filter: eventTypeRegex runs on a linear-time engine/],
      [
        { streamNamePrefix: ["a"], streamNameRegex: "^b" },
        /^filter: a filter takes streamNamePrefix or streamNameRegex, not both/,
      ],
      [{ streamNameRegex: "x".repeat(1_001) }, /at most 1000 are accepted/],
      [{ checkpointInterval: 10 }, /^filter: checkpoint_interval does not apply to persistent/],
    ])("refuses %j with the message a read gets", (wireFilter, message) => {
      expect(() => settingsFromWire({ filter: wireFilter }, DEFAULT_GROUP_SETTINGS)).toThrow(
        SettingsError,
      );
      expect(() => settingsFromWire({ filter: wireFilter }, DEFAULT_GROUP_SETTINGS)).toThrow(
        message,
      );
    });
  });
});
