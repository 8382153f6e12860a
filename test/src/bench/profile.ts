/**
 * `npm run bench -- --profile`: a V8 CPU profile of every process of the run, in
 * `bench-profiles/<timestamp>/` at the repository root (git-ignored).
 *
 * - The bench process (the client) profiles itself through `node:inspector` from the start
 *   to the end of the run: `client-<pid>.cpuprofile`.
 * - Every server starts with `node --cpu-prof --cpu-prof-dir DIR` (`nodeArgs` of
 *   @chorus/testing's startNode/startCluster) and writes `CPU.<date>.<time>.<pid>.<...>.cpuprofile`
 *   when it exits after a graceful stop (SIGTERM, as `stop()` sends). A SIGKILLed server
 *   (failover, recovery, index-scale) writes none.
 * - `processes.json` names the role of each pid.
 *
 * Open a profile in Chrome DevTools (Performance, or chrome://inspect → Node → Profiler) or
 * https://www.speedscope.app.
 */
import { mkdir, writeFile } from "node:fs/promises";
import { Session } from "node:inspector/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

/** `bench-profiles/` at the repository root (this file is test/dist/bench/profile.js). */
const PROFILES_ROOT = fileURLToPath(new URL("../../../bench-profiles/", import.meta.url));

export interface ProfiledProcess {
  pid: number;
  role: string;
}

export class Profiling {
  private readonly processes: ProfiledProcess[] = [];

  private constructor(
    /** Where every profile of this run goes. */
    readonly dir: string,
    private readonly session: Session,
  ) {}

  /** Makes the run's directory and starts profiling this process. */
  static async start(): Promise<Profiling> {
    const dir = join(PROFILES_ROOT, new Date().toISOString().replace(/[:.]/g, "-"));
    await mkdir(dir, { recursive: true });
    const session = new Session();
    session.connect();
    await session.post("Profiler.enable");
    await session.post("Profiler.start");
    const profiling = new Profiling(dir, session);
    profiling.note(process.pid, "client (the bench process)");
    return profiling;
  }

  /** `node` flags for a server process: write a CPU profile into `dir` at exit. */
  get nodeArgs(): string[] {
    return ["--cpu-prof", "--cpu-prof-dir", this.dir];
  }

  /** Records what the process `pid` is, for processes.json. */
  note(pid: number | undefined, role: string): void {
    if (pid !== undefined) this.processes.push({ pid, role });
  }

  /** Stops the client's profiler and writes its profile and processes.json. */
  async stop(): Promise<void> {
    const { profile } = await this.session.post("Profiler.stop");
    this.session.disconnect();
    await writeFile(join(this.dir, `client-${process.pid}.cpuprofile`), JSON.stringify(profile));
    await writeFile(
      join(this.dir, "processes.json"),
      JSON.stringify(this.processes, undefined, 2) + "\n",
    );
  }
}
