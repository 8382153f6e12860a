import type { Frame } from "@chorus/protocol";
import { describe, expect, it } from "vitest";
import { silentLogger } from "../util/timers.js";
import { Channels } from "./channels.js";
import type { Channel, ChannelHandler } from "./transport.js";

/** A handler that records what reaches it. */
function recorder(name: string, log: string[]): ChannelHandler {
  return {
    onFrame: (frame) => log.push(`${name} frame ${String(frame.correlationId)}`),
    onClose: (error) => log.push(`${name} closed: ${error.message}`),
  };
}

const frameFor = (id: number) => ({ correlationId: id }) as unknown as Frame;
const noSend = () => undefined;

describe("Channels", () => {
  it("hands each frame to its channel, also when far more are open than the table has slots", () => {
    const channels = new Channels(silentLogger);
    const log: string[] = [];
    // A long-lived channel (a subscription), then more short ones than the table has slots
    // (4,096): the newer ids take the slots of older open ones, which must still be found.
    const sub = channels.open(recorder("sub", log), undefined, noSend);
    const open: Channel[] = [];
    for (let i = 0; i < 10_000; i++)
      open.push(channels.open(recorder(`r${i}`, log), undefined, noSend));
    channels.dispatch(frameFor(sub.id));
    for (const i of [0, 4095, 4096, 8191, 9999]) channels.dispatch(frameFor(open[i]!.id));
    expect(log).toEqual([
      `sub frame ${sub.id}`,
      ...[0, 4095, 4096, 8191, 9999].map((i) => `r${i} frame ${open[i]!.id}`),
    ]);
  });

  it("drops a frame for a closed channel, even when a newer channel took its slot", () => {
    const channels = new Channels(silentLogger);
    const log: string[] = [];
    const first = channels.open(recorder("first", log), undefined, noSend);
    first.close();
    let sameSlot: Channel | undefined;
    for (let i = 0; i < 4096; i++)
      sameSlot = channels.open(recorder("later", log), undefined, noSend);
    expect(sameSlot!.id % 4096).toBe(first.id % 4096);
    channels.dispatch(frameFor(first.id)); // a late reply to the closed channel
    expect(log).toEqual([]);
    channels.dispatch(frameFor(sameSlot!.id));
    expect(log).toEqual([`later frame ${sameSlot!.id}`]);
    // Closing a displaced channel leaves the one in its slot alone, and the other way round.
    const displaced = channels.open(recorder("displaced", log), undefined, noSend);
    for (let i = 0; i < 4095; i++) channels.open(recorder("newer", log), undefined, noSend).close();
    const holder = channels.open(recorder("holder", log), undefined, noSend);
    expect(holder.id % 4096).toBe(displaced.id % 4096);
    displaced.close();
    channels.dispatch(frameFor(displaced.id));
    channels.dispatch(frameFor(holder.id));
    expect(log.slice(1)).toEqual([`holder frame ${holder.id}`]);
  });

  it("tells every open channel once, oldest first, when the transport ends", () => {
    const channels = new Channels(silentLogger);
    const log: string[] = [];
    const a = channels.open(recorder("a", log), undefined, noSend);
    for (let i = 0; i < 5000; i++) channels.open(recorder(`x${i}`, log), undefined, noSend).close();
    const b = channels.open(recorder("b", log), undefined, noSend);
    const c = channels.open(recorder("c", log), undefined, noSend);
    b.close();
    channels.closeAll(new Error("gone"));
    expect(log).toEqual(["a closed: gone", "c closed: gone"]);
    channels.closeAll(new Error("again"));
    channels.dispatch(frameFor(a.id));
    channels.dispatch(frameFor(c.id));
    expect(log).toHaveLength(2);
  });
});
