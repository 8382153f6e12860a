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
});
