import { ChorusClient, jsonEvent } from "@chorus/client";
import { startNode, type TestNode } from "@chorus/testing";
import { afterAll, beforeAll, expect, it } from "vitest";
import { main, type Command } from "./aggregate-pinned.js";

let node: TestNode;
let teller: ChorusClient;
beforeAll(async () => {
  node = await startNode({ memDb: true });
  teller = new ChorusClient(node.connectionString);
});
afterAll(async () => {
  await teller?.close();
  await node?.stop();
});

const TELLER_AMOUNT = 7;

/** The balance the commands should leave: deposits, and withdrawals the balance covers. */
function expectedBalance(
  commands: readonly Command[],
  tellerBefore: ReadonlyMap<string, number>,
  parked: readonly string[],
): number {
  let balance = 0;
  for (const c of commands) {
    balance += (tellerBefore.get(c.id) ?? 0) * TELLER_AMOUNT;
    if (parked.includes(c.id)) continue;
    if (c.type === "Deposit") balance += c.amount;
    else if (balance >= c.amount) balance -= c.amount;
  }
  return balance;
}

it("pinned workers keep each account on one worker, retry conflicting writes and park a command that keeps conflicting", async () => {
  const runId = "t1";
  const ids = Array.from({ length: 8 }, (_, k) => `${runId}-${k}`);
  // A teller writes to some accounts between a worker's read and its append: once before
  // the third command of account 0, once before the first command of account 1 (the stream
  // does not exist when the worker reads it), and before every try of account 2's fifth
  // command, which is parked after its five tries.
  const seen = new Map<string, string[]>();
  const tellerBefore = new Map<string, number>();
  const lines: string[] = [];
  const summary = await main({
    connectionString: node.connectionString,
    group: "accounts",
    workers: 3,
    accounts: ids.length,
    commandsPerAccount: 6,
    bufferSize: 4,
    maxAttempts: 5,
    runId,
    log: (line) => lines.push(line),
    beforeAppend: async ({ accountId, commandId, attempt }) => {
      const list = seen.get(accountId) ?? [];
      if (attempt === 1) seen.set(accountId, [...list, commandId]);
      const index = (seen.get(accountId) ?? []).indexOf(commandId);
      const interfere =
        (accountId === ids[0] && index === 2 && attempt === 1) ||
        (accountId === ids[1] && index === 0 && attempt === 1) ||
        (accountId === ids[2] && index === 4);
      if (!interfere) return;
      await teller.appendToStream(
        `account-${accountId}`,
        jsonEvent({ type: "Deposited", data: { amount: TELLER_AMOUNT } }),
      );
      tellerBefore.set(commandId, (tellerBefore.get(commandId) ?? 0) + 1);
    },
  });

  expect(summary.commands).toHaveLength(48);
  // Pinned: every account's commands went to one worker, and the accounts were shared out.
  for (const id of ids) expect(summary.handledBy[id]).toHaveLength(1);
  expect(new Set(ids.map((id) => summary.handledBy[id]?.[0])).size).toBeGreaterThan(1);

  const hot = seen.get(ids[2] as string)?.[4];
  expect(summary.conflicts).toBe(1 + 1 + 5);
  expect(summary.parked).toEqual([hot]);
  expect(tellerBefore.get(hot as string)).toBe(5);
  expect(lines.filter((l) => l.includes("changed under command"))).toHaveLength(7);

  for (const id of ids) {
    const commands = summary.commands.filter((c) => c.accountId === id);
    expect(summary.balances[id], `account ${id}`).toBe(
      expectedBalance(commands, tellerBefore, summary.parked),
    );
    // Each command that was not parked has exactly one outcome, in command order.
    const outcomes: string[] = [];
    for await (const { event } of teller.readStream(`account-${id}`)) {
      const commandId = (event.data as { commandId?: string }).commandId;
      if (commandId !== undefined) outcomes.push(commandId);
    }
    expect(outcomes).toEqual(commands.map((c) => c.id).filter((c) => c !== hot));
  }
  // Account 1 was created by the teller before its first command was applied.
  const first = teller.readStream(`account-${ids[1]}`, { maxCount: 1 });
  for await (const { event } of first) expect(event.data).toEqual({ amount: TELLER_AMOUNT });

  const info = await teller.persistentSubscriptions.getInfo("$all", "accounts");
  expect(info.settings.consumerStrategy).toBe("Pinned");
  expect(info.parkedCount).toBe(1);
});
