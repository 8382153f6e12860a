/** The `chorus` command line: parses the arguments, runs one command, returns the exit code. */
import { readFileSync } from "node:fs";
import { Command, CommanderError, Option } from "commander";
import { Context, type Io, type Target } from "./context.js";
import {
  CONNECTION_ENV,
  DEFAULT_CONNECTION,
  resolveConnection,
  scrub,
  secretsOf,
} from "./connection.js";
import { describeError, exitCodeOf, EXIT_OK, EXIT_USAGE, UsageError } from "./errors.js";
import { status } from "./commands/status.js";
import {
  append,
  read,
  tail,
  type AppendOptions,
  type ReadOptions,
  type TailOptions,
} from "./commands/streams.js";
import {
  exportEvents,
  importEvents,
  type ExportOptions,
  type ImportOptions,
} from "./commands/transfer.js";
import {
  createGroup,
  deleteGroup,
  updateGroup,
  groupInfo,
  listGroups,
  replayParked,
  type CreateOptions,
  type ListOptions,
  type ReplayOptions,
} from "./commands/subscriptions.js";
import {
  deleteStream,
  metadata,
  type DeleteOptions,
  type MetadataOptions,
} from "./commands/stream-admin.js";
import * as values from "./values.js";

/** Deadline of each network wait unless --timeout-ms says otherwise. */
export const DEFAULT_TIMEOUT_MS = 10_000;

function version(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as {
      version?: unknown;
    };
    return typeof pkg.version === "string" ? pkg.version : "unknown";
  } catch {
    return "unknown";
  }
}

interface GlobalOptions {
  connection?: string;
  partition?: readonly string[];
  timeoutMs: number;
}

/**
 * Where the store is: each `--partition NAME=CONNECTION` (a partitioned deployment), else
 * the connection string. Both at once is a usage error.
 */
export function resolveTarget(
  globals: GlobalOptions,
  env: Readonly<Record<string, string | undefined>>,
): Target {
  const partitions = globals.partition ?? [];
  if (partitions.length === 0) return resolveConnection(globals.connection, env);
  if (globals.connection !== undefined)
    throw new UsageError(
      "give either --connection or --partition NAME=CONNECTION (one per replication group), not both",
    );
  const target: Record<string, string> = {};
  for (const value of partitions) {
    // The name comes before the first "=", and holds no ":", "/" or "?" (a connection string
    // given alone has an "=" in its query).
    const match = /^([^=:/?]*)=(.*)$/s.exec(value);
    const name = match?.[1]?.trim() ?? "";
    const connection = match?.[2]?.trim() ?? "";
    if (name === "" || connection === "")
      throw new UsageError(
        `--partition takes NAME=CONNECTION (a replication group's name and connection string), got ${JSON.stringify(value)}`,
      );
    if (Object.hasOwn(target, name))
      throw new UsageError(`--partition: partition ${JSON.stringify(name)} is given twice`);
    target[name] = connection;
  }
  return target;
}

const JSON_HELP = "print one JSON object per line";

/** The flags of a group's settings, shared by `subscriptions create` and `update`. */
function withGroupSettings(cmd: Command): Command {
  return cmd
    .option(
      "--start-from <from>",
      "start | end | a revision (position for $all)",
      values.startOrEndOrNumber,
    )
    .addOption(
      new Option("--strategy <strategy>", "how events are shared among consumers").choices([
        "RoundRobin",
        "DispatchToSingle",
        "Pinned",
      ]),
    )
    .option(
      "--message-timeout-ms <ms>",
      "redeliver an event not acknowledged within this time",
      values.nonNegativeInteger,
    )
    .option(
      "--max-retry-count <n>",
      "deliveries after the first before an event is parked",
      values.nonNegativeInteger,
    )
    .option("--max-subscriber-count <n>", "most consumers (0: no limit)", values.nonNegativeInteger)
    .option("--live-buffer-size <n>", "events read ahead while live", values.nonNegativeInteger)
    .option("--read-batch-size <n>", "events per read of the source", values.nonNegativeInteger)
    .option(
      "--history-buffer-size <n>",
      "events read ahead while catching up",
      values.nonNegativeInteger,
    )
    .option(
      "--checkpoint-after-ms <ms>",
      "checkpoint at most this often",
      values.nonNegativeInteger,
    )
    .option(
      "--min-checkpoint-count <n>",
      "events done before a checkpoint",
      values.nonNegativeInteger,
    )
    .option(
      "--max-checkpoint-count <n>",
      "checkpoint at once after this many events",
      values.nonNegativeInteger,
    );
}

/** Builds the program; `run` is what a command does with its context. */
function program(
  io: Io,
  run: (fn: (ctx: Context) => Promise<void>, cmd: Command) => void,
): Command {
  const root = new Command("chorus")
    .description("The command-line client of the Chorus event store.")
    .version(version(), "-V, --version")
    .option(
      "--connection <string>",
      `where the cluster is (default: $${CONNECTION_ENV}, else ${DEFAULT_CONNECTION})`,
    )
    .option(
      "--partition <name=connection>",
      "a partitioned deployment: one replication group's name and connection string (repeat for each group; instead of --connection)",
      (value: string, previous: string[] = []) => [...previous, value],
    )
    .addOption(
      new Option("--timeout-ms <ms>", "deadline of each network wait, in ms")
        .argParser(values.positiveInteger)
        .default(DEFAULT_TIMEOUT_MS),
    )
    .exitOverride()
    .showSuggestionAfterError(true)
    .configureOutput({
      writeOut: (text) => io.stdout.write(text),
      writeErr: (text) => io.stderr.write(text),
      outputError: (text, write) => write(`chorus: ${text.replace(/^error: /, "")}`),
    });

  const action =
    <A extends unknown[]>(fn: (ctx: Context, ...args: A) => Promise<void>) =>
    (...args: unknown[]) => {
      const cmd = args[args.length - 1] as Command;
      run((ctx) => fn(ctx, ...(args.slice(0, -1) as A)), cmd);
    };

  root
    .command("status")
    .description("the cluster's members: states, epochs, positions and replication lag")
    .option("--json", JSON_HELP)
    .action(action((ctx, opts: { json?: boolean }) => status(ctx, opts)));

  root
    .command("append")
    .description("append one event to a stream")
    .argument("<stream>", "the stream")
    .requiredOption("--type <type>", "the event type")
    .option("--data <json>", "the event's data, JSON (default {})", values.json)
    .option(
      "--file <file>",
      "the event's data from a file (- for stdin): a JSON event when it holds JSON, else binary",
    )
    .option("--metadata <json>", "the event's metadata, JSON", values.json)
    .option(
      "--expected-version <version>",
      "any | no_stream | stream_exists | the revision of the stream's last event",
      values.expectedVersion,
    )
    .option(
      "--id <uuid>",
      "the event id (default: a new one); appending the same id again is a no-op",
      values.uuid,
    )
    .option("--json", JSON_HELP)
    .action(action((ctx, stream: string, opts: AppendOptions) => append(ctx, stream, opts)));

  root
    .command("read")
    .description("print a stream's events ('$all' for every non-system stream)")
    .argument("<stream>", "the stream, or '$all'")
    .option(
      "--from <n>",
      "first revision (position for $all), or start | end",
      values.startOrEndOrNumber,
    )
    .option("--count <n>", "at most this many events (default: all)", values.nonNegativeInteger)
    .option("--backwards", "newest first")
    .option("--json", JSON_HELP)
    .action(action((ctx, stream: string, opts: ReadOptions) => read(ctx, stream, opts)));

  root
    .command("tail")
    .description("follow a stream ('$all' for every non-system stream) live until Ctrl-C")
    .argument("<stream>", "the stream, or '$all'")
    .option(
      "--from <from>",
      "start | end | a revision (position for $all) to start at (default: end, live events only)",
      values.startOrEndOrNumber,
    )
    .option("--json", JSON_HELP)
    .action(action((ctx, stream: string, opts: TailOptions) => tail(ctx, stream, opts)));

  root
    .command("delete")
    .description("delete a stream: soft (it can be written again) or, with --hard, for good")
    .argument("<stream>", "the stream")
    .option("--hard", "for good: the stream can never be written again (a tombstone)")
    .option(
      "--expected-version <version>",
      "any | no_stream | stream_exists | the revision of the stream's last event",
      values.expectedVersion,
    )
    .option("--json", JSON_HELP)
    .action(action((ctx, stream: string, opts: DeleteOptions) => deleteStream(ctx, stream, opts)));

  root
    .command("metadata")
    .description("print a stream's metadata, or replace it with --set")
    .argument("<stream>", "the stream")
    .option(
      "--set <json>",
      "the new metadata, a JSON object (maxCount, maxAgeSec, truncateBefore, keys of your own), e.g. '{\"maxCount\":100}'",
      values.json,
    )
    .option(
      "--expected-version <version>",
      "with --set: any | no_stream | stream_exists | the revision of the last metadata event",
      values.expectedVersion,
    )
    .option("--json", JSON_HELP)
    .action(action((ctx, stream: string, opts: MetadataOptions) => metadata(ctx, stream, opts)));

  root
    .command("export")
    .description("write events to a JSON-lines file, one event per line")
    .option("--stream <stream>", "the events of this stream")
    .option("--all", "the events of every stream (system streams left out)")
    .requiredOption("--out <file>", "the file to write (- for stdout)")
    .option("--json", JSON_HELP)
    .action(action((ctx, opts: ExportOptions) => exportEvents(ctx, opts)));

  root
    .command("import")
    .description("append the events of a JSON-lines file (as export writes it), keeping their ids")
    .argument("<file>", "the file to read")
    .option("--json", JSON_HELP)
    .action(action((ctx, file: string, opts: ImportOptions) => importEvents(ctx, file, opts)));

  const subs = root.command("subscriptions").description("persistent subscription groups");
  subs
    .command("list")
    .description("every group, or the groups of one stream")
    .argument("[stream]", "the stream ('$all' for groups over every stream)")
    .option("--json", JSON_HELP)
    .action(
      action((ctx, stream: string | undefined, opts: ListOptions) => listGroups(ctx, stream, opts)),
    );
  subs
    .command("info")
    .description("a group's settings, consumers and counters")
    .argument("<stream>")
    .argument("<group>")
    .option("--json", JSON_HELP)
    .action(
      action((ctx, stream: string, group: string, opts: ListOptions) =>
        groupInfo(ctx, stream, group, opts),
      ),
    );
  withGroupSettings(
    subs
      .command("create")
      .description("create a group")
      .argument("<stream>", "the stream, or '$all'")
      .argument("<group>"),
  )
    .option("--json", JSON_HELP)
    .action(
      action((ctx, stream: string, group: string, opts: CreateOptions) =>
        createGroup(ctx, stream, group, opts),
      ),
    );
  withGroupSettings(
    subs
      .command("update")
      .description("change some of a group's settings (the others keep theirs)")
      .argument("<stream>", "the stream, or '$all'")
      .argument("<group>"),
  )
    .option("--json", JSON_HELP)
    .action(
      action((ctx, stream: string, group: string, opts: CreateOptions) =>
        updateGroup(ctx, stream, group, opts),
      ),
    );
  subs
    .command("delete")
    .description("delete a group")
    .argument("<stream>")
    .argument("<group>")
    .option("--json", JSON_HELP)
    .action(
      action((ctx, stream: string, group: string, opts: ListOptions) =>
        deleteGroup(ctx, stream, group, opts),
      ),
    );
  subs
    .command("replay-parked")
    .description("offer a group's parked events to its consumers again")
    .argument("<stream>")
    .argument("<group>")
    .option("--stop-at <n>", "replay at most this many parked events", values.positiveInteger)
    .option("--json", JSON_HELP)
    .action(
      action((ctx, stream: string, group: string, opts: ReplayOptions) =>
        replayParked(ctx, stream, group, opts),
      ),
    );

  return root;
}

/** Runs the command line `argv` (without `node` and the script) and returns the exit code. */
export async function main(argv: readonly string[], io: Io): Promise<number> {
  let pending: Promise<void> | undefined;
  let secrets: string[] = [];
  const cli = program(io, (fn, cmd) => {
    const globals = cmd.optsWithGlobals<GlobalOptions>();
    // The raw values too: a malformed --partition must not echo a password either.
    secrets = [globals.connection ?? "", ...(globals.partition ?? [])].flatMap(secretsOf);
    // A usage error thrown here ends parseAsync with it.
    const target = resolveTarget(globals, io.env);
    secrets = [
      ...secrets,
      ...(typeof target === "string" ? [target] : Object.values(target)).flatMap(secretsOf),
    ].sort((a, b) => b.length - a.length);
    pending = fn(new Context(io, target, globals.timeoutMs));
  });
  try {
    await cli.parseAsync([...argv], { from: "user" });
    if (pending) await pending;
    return EXIT_OK;
  } catch (err) {
    if (err instanceof CommanderError) {
      // commander printed its message (or the help) already
      return err.exitCode === 0 ? EXIT_OK : EXIT_USAGE;
    }
    io.stderr.write(`chorus: ${scrub(describeError(err), secrets)}\n`);
    return exitCodeOf(err);
  }
}
