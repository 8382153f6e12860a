/** What every command gets: where to print, the cluster, the deadline of each network wait. */
import { once } from "node:events";
import {
  ChorusClient,
  ConnectionSettings,
  InvalidArgumentError,
  type MemberInfo,
} from "@chorus/client";
import { CommandError, UsageError } from "./errors.js";
import { redactConnection } from "./connection.js";

export interface OutputStream {
  readonly isTTY?: boolean;
  readonly columns?: number;
  write(text: string): boolean;
  once(event: "drain" | "error" | "close", listener: (...args: unknown[]) => void): unknown;
  removeListener(
    event: "drain" | "error" | "close",
    listener: (...args: unknown[]) => void,
  ): unknown;
}

export interface Io {
  readonly stdout: OutputStream;
  readonly stderr: OutputStream;
  readonly env: Readonly<Record<string, string | undefined>>;
}

/** Writes lines to stdout, waiting for it to drain when its buffer is full. */
export class Printer {
  readonly #stream: OutputStream;

  constructor(stream: OutputStream) {
    this.#stream = stream;
  }

  async line(text: string): Promise<void> {
    if (!this.#stream.write(`${text}\n`)) await once(this.#stream as never, "drain");
  }

  async lines(texts: readonly string[]): Promise<void> {
    for (const t of texts) await this.line(t);
  }
}

/**
 * Where the store is: a connection string, or (a partitioned deployment) each replication
 * group's connection string by group name. Holds credentials: never print it.
 */
export type Target = string | Readonly<Record<string, string>>;

export class Context {
  readonly io: Io;
  readonly out: Printer;
  readonly #target: Target;
  /** Where the store is, safe to print (credentials masked). */
  readonly where: string;
  /** Deadline of each network wait, in ms. */
  readonly timeoutMs: number;

  constructor(io: Io, target: Target, timeoutMs: number) {
    this.io = io;
    this.out = new Printer(io.stdout);
    this.#target = target;
    this.where =
      typeof target === "string"
        ? redactConnection(target)
        : `partitions ${Object.entries(target)
            .map(([name, connection]) => `${name}=${redactConnection(connection)}`)
            .join(", ")}`;
    this.timeoutMs = timeoutMs;
  }

  /** True when the store is a partitioned deployment (--partition). */
  get partitioned(): boolean {
    return typeof this.#target !== "string";
  }

  /** A notice for a person at a terminal (stderr, only when it is a TTY). */
  notice(text: string): void {
    if (this.io.stderr.isTTY === true) this.io.stderr.write(`chorus: ${text}\n`);
  }

  /** A client for the target (not connected yet). A malformed connection string is a usage error. */
  client(): ChorusClient {
    const target = this.#target;
    try {
      return typeof target === "string"
        ? new ChorusClient(target)
        : new ChorusClient(ConnectionSettings.create().withPartitions(target).build());
    } catch (err) {
      if (err instanceof InvalidArgumentError)
        throw new UsageError(
          `${typeof target === "string" ? "--connection" : "--partition"}: ${err.message}`,
        );
      throw err;
    }
  }

  /**
   * Runs `fn` with a client connected to the leader (connecting within the deadline), then
   * closes the client (also within the deadline).
   */
  async withClient<T>(fn: (client: ChorusClient) => Promise<T>, connect = true): Promise<T> {
    const client = this.client();
    try {
      if (connect) await this.#connect(client);
      return await fn(client);
    } finally {
      await this.#close(client);
    }
  }

  /** An AbortSignal that aborts after the deadline with a message naming the wait. */
  deadline(what: string): { signal: AbortSignal; clear: () => void } {
    const controller = new AbortController();
    const timer = setTimeout(
      () =>
        controller.abort(new CommandError(`${what} did not finish within ${this.timeoutMs} ms`)),
      this.timeoutMs,
    );
    return { signal: controller.signal, clear: () => clearTimeout(timer) };
  }

  async #connect(client: ChorusClient): Promise<void> {
    const { signal, clear } = this.deadline("connecting");
    try {
      await client.connect({ signal });
    } catch (err) {
      if (!signal.aborted || err !== signal.reason) throw err;
      throw new CommandError(
        `could not connect to ${this.where} within ${this.timeoutMs} ms${await this.#diagnose(client)}`,
      );
    } finally {
      clear();
    }
  }

  /** Why a connection did not come: what one quick gossip round says (for the message). */
  async #diagnose(client: ChorusClient): Promise<string> {
    try {
      const members = await client.clusterMembers({
        signal: AbortSignal.timeout(Math.min(1_000, this.timeoutMs)),
      });
      if (members.length === 0) return "";
      const leader = members.some((m) => m.isAlive && m.state === "Leader");
      return ` (${leader ? "" : "no leader; "}members: ${members.map(describeMember).join(", ")})`;
    } catch (err) {
      return err instanceof Error && err.message ? ` (${err.message})` : "";
    }
  }

  async #close(client: ChorusClient): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      client.close().catch(() => undefined),
      new Promise<void>((resolve) => {
        timer = setTimeout(resolve, this.timeoutMs);
      }),
    ]);
    clearTimeout(timer);
  }
}

export function endpointOf(m: MemberInfo): string {
  return m.externalHttp ? `${m.externalHttp.host}:${m.externalHttp.port}` : m.instanceId;
}

function describeMember(m: MemberInfo): string {
  return `${endpointOf(m)} ${m.isAlive ? m.state : "dead"}`;
}
