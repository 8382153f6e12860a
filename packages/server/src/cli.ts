import { ConfigError, parseConfig, serverVersion } from "./config/index.js";
import { StartupError, createNode, type ChorusNode } from "./node.js";

export interface MainDeps {
  readonly env?: Readonly<Record<string, string | undefined>>;
  readonly stdout?: (text: string) => void;
  readonly stderr?: (text: string) => void;
  /** Resolves when the process is asked to stop; defaults to SIGINT / SIGTERM. */
  readonly stopSignal?: () => Promise<string>;
}

/**
 * Resolves on SIGINT / SIGTERM, or, when CHORUS_EXIT_WITH_PARENT=1 (set by @chorus/testing),
 * when standard input closes: the parent that holds its other end has gone, even if it was
 * SIGKILLed, so a test runner that dies leaves no server behind. `cancel()` stops listening.
 */
function waitForSignal(env: Readonly<Record<string, string | undefined>>): {
  stopped: Promise<string>;
  cancel(): void;
} {
  let cancel = (): void => {};
  const stopped = new Promise<string>((resolve) => {
    const watchParent = env.CHORUS_EXIT_WITH_PARENT === "1";
    const onSignal = (signal: NodeJS.Signals): void => {
      cancel();
      resolve(signal);
    };
    const onParentGone = (): void => {
      cancel();
      resolve("parent exited");
    };
    cancel = () => {
      process.off("SIGINT", onSignal);
      process.off("SIGTERM", onSignal);
      if (watchParent) {
        process.stdin.off("end", onParentGone);
        process.stdin.off("close", onParentGone);
        process.stdin.destroy();
      }
    };
    process.on("SIGINT", onSignal);
    process.on("SIGTERM", onSignal);
    if (watchParent) {
      process.stdin.on("end", onParentGone);
      process.stdin.on("close", onParentGone);
      process.stdin.resume();
    }
  });
  return { stopped, cancel };
}

function oneLine(text: string): string {
  return text.replace(/\s*\n\s*/g, " ").trim();
}

/**
 * `chorus-server`: returns the exit code. 0 after a graceful stop (SIGINT/SIGTERM), 2 for a
 * configuration error, 1 when the node cannot start.
 */
export async function main(argv: string[], deps: MainDeps = {}): Promise<number> {
  const out = deps.stdout ?? ((t: string) => void process.stdout.write(t));
  const err = deps.stderr ?? ((t: string) => void process.stderr.write(t));
  let node: ChorusNode;
  try {
    const cmd = parseConfig(argv, { env: deps.env ?? process.env });
    if (cmd.kind === "help") {
      out(cmd.text);
      return 0;
    }
    if (cmd.kind === "version") {
      out(`chorus-server ${serverVersion()}\n`);
      return 0;
    }
    // Listen for signals before starting, so a stop during startup is not lost.
    const stop = deps.stopSignal
      ? { stopped: deps.stopSignal(), cancel: () => {} }
      : waitForSignal(deps.env ?? process.env);
    try {
      node = await createNode(cmd.options);
    } catch (e) {
      stop.cancel();
      throw e;
    }
    const signal = await stop.stopped;
    node.logger.info({ signal }, "stopping");
    await node.close();
    return 0;
  } catch (e) {
    if (e instanceof ConfigError) {
      err(`chorus-server: ${oneLine(e.message)}\n`);
      return e.exitCode;
    }
    if (e instanceof StartupError) {
      err(`chorus-server: ${oneLine(e.message)}\n`);
      return e.exitCode;
    }
    err(`chorus-server: cannot start: ${oneLine(e instanceof Error ? e.message : String(e))}\n`);
    return 1;
  }
}
