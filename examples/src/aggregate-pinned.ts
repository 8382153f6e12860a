/**
 * Aggregates handled by several workers: commands for account `<id>` are appended to its
 * own command stream `cmd-<id>`, and one persistent subscription group on "$all" shares the
 * command streams out among the workers. The group's strategy is Pinned: the server hashes
 * each event's stream id over the workers' names, so all the commands of one account go
 * to the same worker, in order, and an account's state is only ever worked on in one place.
 *
 * For each command a worker reads the account's event stream `account-<id>` to rebuild its
 * state, decides, and appends the outcome with `expectedVersion` = the revision it read.
 * Pinned keeps the workers out of each other's way, but not every writer of an account
 * stream need be a worker (or a worker that lost its connection may still be finishing a
 * command that has moved on): a WrongExpectedVersionError means someone else wrote, so the
 * worker reads again and decides again, up to 5 times, and then parks the command. A command
 * is acknowledged only after its outcome is appended; one delivered again (after a consumer
 * crashed between the append and the ack) is recognised by its id and just acknowledged.
 * The workers run in the pool of persistent-worker-pool.ts.
 *
 *   npm start                                  # in one terminal: a local cluster
 *   node examples/dist/aggregate-pinned.js     # in another
 *
 * CHORUS_URL overrides the connection string, WORKERS the number of workers (3), ACCOUNTS
 * the number of accounts (6) and COMMANDS the commands per account (8).
 */
import { randomUUID } from "node:crypto";
import { pathToFileURL } from "node:url";
import {
  ChorusClient,
  PersistentSubscriptionExistsError,
  StreamNotFoundError,
  WrongExpectedVersionError,
  jsonEvent,
  type EventData,
  type PersistentEvent,
} from "@chorus/client";
import { startWorkerPool, type PoolWorker, type WorkerPool } from "./persistent-worker-pool.js";

export interface Command {
  accountId: string;
  /** The command event's id. */
  id: string;
  type: "Deposit" | "Withdraw";
  amount: number;
}

export interface BeforeAppend {
  accountId: string;
  commandId: string;
  /** 1 on the first try. */
  attempt: number;
  /** The revision of the account stream the decision was made on. */
  revision: bigint | "no_stream";
}

export interface AggregateOptions {
  connectionString: string;
  /** The group on "$all". Default "accounts". */
  group?: string;
  /** Default 3. */
  workers?: number;
  /** Default 6. */
  accounts?: number;
  /** Default 8. */
  commandsPerAccount?: number;
  /** Events a worker may hold. Default 10. */
  bufferSize?: number;
  /** Tries of one command before it is parked. Default 5. */
  maxAttempts?: number;
  /** Names this run's accounts `<runId>-<k>`. Default: from the clock. */
  runId?: string;
  /** Called between reading an account and appending to it: another writer can go here. */
  beforeAppend?: (context: BeforeAppend) => Promise<void> | void;
  signal?: AbortSignal;
  log?: (line: string) => void;
}

export interface AggregateSummary {
  /** Every command, in the order appended. */
  commands: Command[];
  /** The workers that handled each account's commands. */
  handledBy: Record<string, string[]>;
  /** WrongExpectedVersionErrors met (each one re-read the account and tried again). */
  conflicts: number;
  /** Ids of the commands parked. */
  parked: string[];
  /** Each account's balance, read back at the end. */
  balances: Record<string, number>;
}

interface Account {
  balance: number;
  revision: bigint | "no_stream";
  /** Commands already applied (a redelivered one is not applied twice). */
  applied: Set<string>;
}

interface Outcome {
  amount: number;
  commandId?: string;
}

const COMMAND_PREFIX = "cmd-";

/** Rebuilds an account from its events. */
async function load(client: ChorusClient, accountId: string): Promise<Account> {
  const account: Account = { balance: 0, revision: "no_stream", applied: new Set() };
  try {
    for await (const { event } of client.readStream(`account-${accountId}`)) {
      const data = event.data as Outcome;
      if (event.type === "Deposited") account.balance += data.amount;
      else if (event.type === "Withdrawn") account.balance -= data.amount;
      if (data.commandId !== undefined) account.applied.add(data.commandId);
      account.revision = event.revision;
    }
  } catch (err) {
    if (!(err instanceof StreamNotFoundError)) throw err;
  }
  return account;
}

/** The account's rule: no overdraft. */
function decide(account: Account, command: Command): EventData {
  const { amount, id: commandId } = command;
  if (command.type === "Deposit")
    return jsonEvent({ type: "Deposited", data: { amount, commandId } });
  if (account.balance >= amount)
    return jsonEvent({ type: "Withdrawn", data: { amount, commandId } });
  return jsonEvent({
    type: "WithdrawalRejected",
    data: { amount, commandId, balance: account.balance },
  });
}

/** The commands of account k: deposits, and every third a withdrawal that may not be covered. */
function makeCommand(accountId: string, k: number, j: number): Command {
  const withdraw = j % 3 === 2;
  return {
    accountId,
    id: randomUUID(),
    type: withdraw ? "Withdraw" : "Deposit",
    amount: withdraw ? 10 + ((k * 31 + j * 17) % 90) : 10 + ((k * 13 + j * 29) % 50),
  };
}

export async function main(options: AggregateOptions): Promise<AggregateSummary> {
  const group = options.group ?? "accounts";
  const runId = options.runId ?? Date.now().toString(36);
  const maxAttempts = options.maxAttempts ?? 5;
  const log = options.log ?? (() => undefined);
  const accountIds = Array.from({ length: options.accounts ?? 6 }, (_, k) => `${runId}-${k}`);
  const ours = new Set(accountIds);

  const client = new ChorusClient(options.connectionString);
  const summary: AggregateSummary = {
    commands: [],
    handledBy: {},
    conflicts: 0,
    parked: [],
    balances: {},
  };
  let settled = 0;
  let total = Infinity;
  let pool: WorkerPool | undefined;

  /** One command: read, decide, append with the revision read; again on a conflict. */
  const execute = async (w: PoolWorker, e: PersistentEvent, accountId: string): Promise<void> => {
    const command: Command = {
      accountId,
      id: e.event.id,
      type: e.event.type as Command["type"],
      amount: (e.event.data as { amount: number }).amount,
    };
    for (let attempt = 1; ; attempt++) {
      const account = await load(client, accountId);
      if (account.applied.has(command.id)) break; // applied before a redelivery
      const outcome = decide(account, command);
      await options.beforeAppend?.({
        accountId,
        commandId: command.id,
        attempt,
        revision: account.revision,
      });
      try {
        await client.appendToStream(`account-${accountId}`, outcome, {
          expectedVersion: account.revision,
        });
        break;
      } catch (err) {
        if (!(err instanceof WrongExpectedVersionError)) throw err;
        summary.conflicts++;
        log(`${w.name}: account ${accountId} changed under command ${command.id} (try ${attempt})`);
        if (attempt >= maxAttempts) {
          void w.sub.nack("park", `still conflicting after ${attempt} tries`, e);
          summary.parked.push(command.id);
          return;
        }
      }
    }
    void w.sub.ack(e);
  };

  const onEvent = async (w: PoolWorker, e: PersistentEvent): Promise<void> => {
    const { streamId } = e.event;
    if (!streamId.startsWith(COMMAND_PREFIX)) {
      // The group sees every stream; account events are not for the workers.
      void w.sub.nack("skip", "not a command", e);
      return;
    }
    const accountId = streamId.slice(COMMAND_PREFIX.length);
    try {
      await execute(w, e, accountId);
    } catch (err) {
      // Not a conflict (the node went away, a timeout): let the group deliver it again.
      void w.sub.nack("retry", String(err), e);
      return;
    }
    if (ours.has(accountId)) {
      const by = (summary.handledBy[accountId] ??= []);
      if (!by.includes(w.name)) by.push(w.name);
      if (++settled >= total) pool?.stop();
    }
  };

  try {
    try {
      // startFrom "end": the group serves commands written from now on.
      await client.persistentSubscriptions.create("$all", group, {
        consumerStrategy: "Pinned",
        startFrom: "end",
      });
    } catch (err) {
      if (!(err instanceof PersistentSubscriptionExistsError)) throw err;
    }
    // Pinned places streams by the consumer's name (`worker-<i>`): a worker that joins
    // again (after a reconnect, or a restart under the same name) gets its accounts back.
    pool = startWorkerPool(
      client,
      {
        stream: "$all",
        group,
        workers: options.workers ?? 3,
        bufferSize: options.bufferSize ?? 10,
        ...(options.signal && { signal: options.signal }),
        log,
      },
      onEvent,
    );
    // Every worker is in the group before the first command: a stream is placed among the
    // consumers present, so one that joined late would take over streams that had started
    // elsewhere.
    await pool.joined(10_000);
    log(`${pool.workers.length} workers joined group "${group}" on $all (Pinned)`);

    const perAccount = options.commandsPerAccount ?? 8;
    for (let j = 0; j < perAccount && !pool.stopping; j++) {
      for (const [k, accountId] of accountIds.entries()) {
        const command = makeCommand(accountId, k, j);
        await client.appendToStream(
          `${COMMAND_PREFIX}${accountId}`,
          jsonEvent({ type: command.type, id: command.id, data: { amount: command.amount } }),
        );
        summary.commands.push(command);
      }
    }
    total = summary.commands.length;
    if (settled >= total) pool.stop();
    log(`sent ${total} commands for ${accountIds.length} accounts`);
    await pool.finished;

    for (const accountId of accountIds)
      summary.balances[accountId] = (await load(client, accountId)).balance;
  } finally {
    await client.close();
  }
  for (const accountId of accountIds) {
    log(
      `account ${accountId}: balance ${summary.balances[accountId]}, handled by ${(summary.handledBy[accountId] ?? []).join(", ")}`,
    );
  }
  log(`done: ${summary.conflicts} conflicts retried, ${summary.parked.length} commands parked`);
  return summary;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  const controller = new AbortController();
  process.once("SIGINT", () => controller.abort());
  await main({
    connectionString:
      process.env.CHORUS_URL ??
      "chorus+discover://127.0.0.1:21113,127.0.0.1:22113,127.0.0.1:23113?tls=false",
    workers: Number(process.env.WORKERS ?? 3),
    accounts: Number(process.env.ACCOUNTS ?? 6),
    commandsPerAccount: Number(process.env.COMMANDS ?? 8),
    signal: controller.signal,
    log: (line) => console.log(line),
  });
}
