import { ConfigError, parseConfig, serverVersion } from "./config/index.js";
import { StartupError, createNode, type ChorusNode } from "./node.js";

export interface MainDeps {
  readonly env?: Readonly<Record<string, string | undefined>>;
  readonly stdout?: (text: string) => void;
  readonly stderr?: (text: string) => void;
  /** Resolves when the process is asked to stop; defaults to SIGINT / SIGTERM. */
  readonly stopSignal?: () => Promise<string>;
}

function waitForSignal(): Promise<string> {
  return new Promise((resolve) => {
    const onSignal = (signal: NodeJS.Signals): void => {
      process.off("SIGINT", onSignal);
      process.off("SIGTERM", onSignal);
      resolve(signal);
    };
    process.on("SIGINT", onSignal);
    process.on("SIGTERM", onSignal);
  });
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
    const stop = (deps.stopSignal ?? waitForSignal)();
    node = await createNode(cmd.options);
    const signal = await stop;
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
