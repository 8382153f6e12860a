/**
 * The cluster of instances on one database. There is no consensus to run: the database orders
 * every write. What remains is knowing who is there and who serves the persistent
 * subscription groups.
 * - Membership: each instance upserts its gossip record into `chorus.members` every heartbeat
 *   (the database's clock stamps it); records younger than the dead-after bound are alive.
 *   `/gossip` on any instance lists them, so clients find and follow instances as they find
 *   and follow the nodes of a replicated cluster. Every alive instance shows as `Leader`: each
 *   takes writes. One whose last heartbeat failed shows as `Unknown` and refuses writes, reads
 *   and catch-up subscriptions with NOT_LEADER, so that its clients move to an instance that
 *   reaches the database.
 * - Persistent subscription groups are served by the one instance holding a session-level
 *   advisory lock (`PERSISTENT_LOCK`) on a connection of its own. Every instance tries to take
 *   it each heartbeat; the holder checks each heartbeat that it still holds it (the same
 *   backend process) and stops serving groups at once when it does not. The others refuse a
 *   consumer with NOT_LEADER naming the holder, and the client moves there. A lock query that
 *   goes unanswered may still have run (the database's answers can be lost while what the
 *   instance sends still arrives): the instance then closes that connection and opens
 *   another, so that a lock its session took unknown to it ends with the session.
 */
import type { Logger } from "pino";
import type { Sql } from "postgres";
import type {
  ClusterView,
  GossipDocument,
  GossipEndpoint,
  MemberInfo,
  WriteRefusal,
} from "../node-types.js";
import { withDeadline } from "./deadline.js";
import { describeDatabaseError } from "./url.js";

/** The advisory lock of the persistent subscription service ("chorusps" in ASCII). */
export const PERSISTENT_LOCK = 0x63686f72757370;
/** Member records not refreshed for this long are removed by whoever sees them. */
const FORGET_AFTER_MS = 3_600_000;
/** A heartbeat (one query) that takes longer than this counts as failed. */
const HEARTBEAT_TIMEOUT_MS = 2_000;

/**
 * How long the database keeps the lock session of an instance that has sent nothing on it
 * (`idle_session_timeout`): an instance cut off from the database, or paused, would otherwise
 * hold the persistent lock for as long as the database keeps its connection (hours, without
 * TCP keepalives), and no instance would serve the groups. Every heartbeat sends a query on
 * it; a heartbeat lasts at most two queries' timeouts, and the next starts an interval later.
 * An instance whose heartbeat fails stops serving at once, well before its session ends.
 */
export function lockIdleTimeoutMs(heartbeatIntervalMs: number): number {
  return heartbeatIntervalMs + 2 * HEARTBEAT_TIMEOUT_MS + 1_000;
}

export interface MembershipOptions {
  readonly sql: Sql;
  /**
   * Opens a pool of one connection of its own for the persistent lock; called again to replace
   * one whose answers stopped coming (the membership ends the pools it opened). `onClose`:
   * tell it when the pool's connection closes.
   */
  readonly lockSession: (onClose: () => void) => Sql;
  readonly instanceId: string;
  /** This instance's gossip record (state, endpoints, positions), as the HTTP API builds it. */
  readonly selfInfo: () => MemberInfo;
  readonly heartbeatIntervalMs: number;
  /** A member whose last heartbeat is older than this is shown as dead. */
  readonly deadAfterMs: number;
  readonly logger: Logger;
  /** Told when a heartbeat fails after one that did not: the database cannot be reached. */
  readonly onUnreachable?: () => void;
}

interface MemberRow {
  instance_id: string;
  info: MemberInfo & { servesPersistent?: boolean };
  age_ms: number;
}

export class DatabaseMembership {
  readonly #o: MembershipOptions;
  #members: Array<MemberInfo & { servesPersistent?: boolean }> = [];
  /** Whether the last heartbeat reached the database (start() fails when the first does not). */
  #healthy = true;
  #lastError: unknown;
  #timer: NodeJS.Timeout | undefined;
  #beating: Promise<void> | undefined;
  #closed = false;
  /** The backend pid of the lock connection's session that holds the persistent lock. */
  #lock: { pid: number } | undefined;
  /** Bumped on every acquisition: the persistent service's "epoch". */
  #lockTerm = 0;
  /** The lock connection's pool (replaced by #renewLockSession). */
  #lockSql: Sql;

  constructor(options: MembershipOptions) {
    this.#o = options;
    this.#lockSql = this.#openLockSession();
    const gossip = this.#gossipEndpoint();
    this.view = {
      writeRefusal: () => this.#unreachableRefusal(),
      readRefusal: () => this.#unreachableRefusal(),
      epoch: 0,
      logEnd: 0,
      epochInfo: () => undefined,
      gossip,
    };
    const lockTerm = (): number => this.#lockTerm;
    this.persistentView = {
      writeRefusal: () => this.#persistentRefusal(),
      get epoch() {
        return lockTerm();
      },
      logEnd: 0,
      epochInfo: () => undefined,
      gossip,
    };
  }

  /** Writes the first heartbeat (so a started instance is listed at once) and starts beating. */
  async start(): Promise<void> {
    await this.#beat();
    if (!this.#healthy) throw new Error(describeDatabaseError(this.#lastError));
    this.#timer = setInterval(() => {
      this.#beating ??= this.#beat().finally(() => (this.#beating = undefined));
    }, this.#o.heartbeatIntervalMs);
    this.#timer.unref();
  }

  /** Whether the last heartbeat reached the database. */
  get healthy(): boolean {
    return this.#healthy;
  }

  /** Stops beating, releases the lock, removes this instance's record (clients stop routing here). */
  async close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#timer);
    await this.#beating;
    await this.#releaseLock();
    await this.#lockSql.end({ timeout: 2 }).catch(() => undefined);
    try {
      await this.#o.sql`DELETE FROM chorus.members WHERE instance_id = ${this.#o.instanceId}`;
    } catch (err) {
      this.#o.logger.warn(
        { err: describeDatabaseError(err) },
        "could not remove this instance's member record",
      );
    }
  }

  /** The view the API layer uses: every instance takes writes; /gossip lists the members. */
  readonly view: ClusterView;

  /** The view the persistent subscription service uses: only the lock holder serves groups. */
  readonly persistentView: ClusterView;

  /** Whether this instance serves the persistent subscription groups now. */
  get servesPersistent(): boolean {
    return this.#lock !== undefined;
  }

  #gossipEndpoint(): GossipEndpoint {
    return {
      document: (): GossipDocument => ({ members: this.#document() }),
      handlePost: () => ({
        status: 405,
        body: {
          error: "METHOD_NOT_ALLOWED",
          message:
            "instances on a shared database find each other through the database; nothing is pushed",
        },
      }),
      maxBodyBytes: 0,
      logError: (err) => this.#o.logger.error({ err }, "serving /gossip failed"),
    };
  }

  #document(): MemberInfo[] {
    const self = this.#o.selfInfo();
    const others = this.#members.filter((m) => m.instanceId !== this.#o.instanceId);
    return [{ ...self, isAlive: this.#healthy }, ...others.map(publicInfo)];
  }

  /**
   * While the last heartbeat failed: this instance cannot reach the database, and its writes
   * and reads would wait for it in vain. The refusal names no other instance: this one's view
   * of them is as old as its last heartbeat (when the database itself is down, each would name
   * another). The client moves to the leader it knows, or discovers one, in which this
   * instance shows as Unknown.
   */
  #unreachableRefusal(): WriteRefusal | undefined {
    if (this.#healthy) return undefined;
    return {
      message: "this instance cannot reach the database; retry on another instance",
      leaderTcp: undefined,
      leaderHttp: undefined,
    };
  }

  #persistentRefusal(): WriteRefusal | undefined {
    if (this.#lock !== undefined) return undefined;
    const holder = this.#members.find(
      (m) => m.isAlive && m.servesPersistent === true && m.instanceId !== this.#o.instanceId,
    );
    return {
      message: holder
        ? `persistent subscription groups are served by instance ${holder.instanceId}`
        : "no instance serves the persistent subscription groups yet; retry",
      leaderTcp: holder?.externalTcp,
      leaderHttp: holder?.externalHttp,
    };
  }

  async #beat(): Promise<void> {
    if (this.#closed) return;
    const { sql, instanceId } = this.#o;
    // The lock is checked (or tried) on its own connection while the record is written: a
    // database out of reach is then known one query timeout after the heartbeat starts, not
    // after the lock's queries time out too. The record says whether this instance served the
    // groups when the heartbeat started.
    const lock = this.#keepOrTakeLock();
    try {
      const info = { ...this.#o.selfInfo(), servesPersistent: this.#lock !== undefined };
      // The record needs no standby's confirmation (it is written again every heartbeat): a
      // heartbeat that waited for an absent synchronous standby would fail, and this instance
      // would refuse the reads the database still serves. So the statement's own transaction
      // commits with synchronous_commit = local, set inside it (one statement: the heartbeat
      // never idles in a transaction between round trips). The INSERT always runs, and with
      // it the set_config its row's timestamp is taken through.
      const rows = await withTimeout(
        sql<MemberRow[]>`
          WITH up AS (
            INSERT INTO chorus.members (instance_id, info, heartbeat_at)
            VALUES (${instanceId}, ${sql.json(info as never)},
                    (SELECT now() FROM (SELECT set_config('synchronous_commit', 'local', true)) AS local_commit))
            ON CONFLICT (instance_id) DO UPDATE SET info = EXCLUDED.info, heartbeat_at = now()
          ), gone AS (
            DELETE FROM chorus.members
            WHERE heartbeat_at < now() - make_interval(secs => ${FORGET_AFTER_MS / 1000})
          )
          SELECT instance_id, info, (extract(epoch FROM now() - heartbeat_at) * 1000)::float8 AS age_ms
          FROM chorus.members WHERE instance_id <> ${instanceId}`,
        HEARTBEAT_TIMEOUT_MS,
      );
      this.#members = rows.map((r) => ({
        ...r.info,
        instanceId: r.instance_id,
        isAlive: r.age_ms <= this.#o.deadAfterMs,
      }));
      if (!this.#healthy) this.#o.logger.info("the database can be reached again: serving");
      this.#healthy = true;
      await lock;
    } catch (err) {
      this.#lastError = err;
      const was = this.#healthy;
      this.#healthy = false;
      if (was) {
        this.#o.logger.warn({ err: describeDatabaseError(err) }, "the database cannot be reached");
        this.#o.onUnreachable?.();
      }
      await lock;
      await this.#releaseLock();
    }
  }

  /**
   * Checks the held lock (the lock connection's session is the same backend) or tries to take
   * it. The lock connection is a pool of one: after a lost connection it reconnects to a new
   * session, which does not hold the lock, and the pid check says so.
   */
  async #keepOrTakeLock(): Promise<void> {
    const sql = this.#lockSql;
    const lock = this.#lock;
    if (lock !== undefined) {
      try {
        const [row] = await withTimeout(
          sql<{ pid: number }[]>`SELECT pg_backend_pid() AS pid`,
          HEARTBEAT_TIMEOUT_MS,
        );
        if (row?.pid === lock.pid) return;
        // Another session: the lock went with the one that held it.
      } catch {
        // Lost with its connection, or no answer: the session may hold it still.
        this.#renewLockSession();
      }
      this.#o.logger.warn("lost the persistent subscription lock");
      this.#lock = undefined;
      return;
    }
    try {
      const [row] = await withTimeout(
        sql<
          { locked: boolean; pid: number }[]
        >`SELECT pg_try_advisory_lock(${PERSISTENT_LOCK}) AS locked, pg_backend_pid() AS pid`,
        HEARTBEAT_TIMEOUT_MS,
      );
      if (row?.locked !== true) return;
      if (this.#closed) {
        await withTimeout(sql`SELECT pg_advisory_unlock(${PERSISTENT_LOCK})`, HEARTBEAT_TIMEOUT_MS);
        return;
      }
      this.#lock = { pid: row.pid };
      this.#lockTerm++;
      this.#o.logger.info("serving the persistent subscription groups");
    } catch (err) {
      this.#o.logger.debug(
        { err: describeDatabaseError(err) },
        "could not try the persistent subscription lock",
      );
      // It may have been taken all the same, unknown to this instance: end that session.
      this.#renewLockSession();
    }
  }

  async #releaseLock(): Promise<void> {
    if (this.#lock === undefined) return;
    this.#lock = undefined;
    try {
      await withTimeout(
        this.#lockSql`SELECT pg_advisory_unlock(${PERSISTENT_LOCK})`,
        HEARTBEAT_TIMEOUT_MS,
      );
    } catch {
      // Gone with its session, or no answer: end the session, and the lock with it.
      this.#renewLockSession();
    }
  }

  #openLockSession(): Sql {
    const pool: Sql = this.#o.lockSession(() => {
      // A pool replaced already closing does not concern the lock of the current one.
      if (pool === this.#lockSql) this.lockConnectionClosed();
    });
    return pool;
  }

  /**
   * Closes the lock connection and opens another for the next heartbeat. The database ends the
   * old session once it sees the connection close (the direction that still works when only
   * its answers are lost), and any lock that session held with it.
   */
  #renewLockSession(): void {
    if (this.#closed) return;
    const old = this.#lockSql;
    this.#lockSql = this.#openLockSession();
    void old.end({ timeout: 0 }).catch(() => undefined);
  }

  /**
   * The lock connection closed (the database went away, or failed over): its session and the
   * lock with it are gone. Stop serving at once rather than at the next heartbeat, so that
   * another instance that takes the lock on a promoted standby does not serve alongside.
   */
  lockConnectionClosed(): void {
    if (this.#lock === undefined) return;
    this.#lock = undefined;
    this.#o.logger.warn("lost the persistent subscription lock with its connection");
  }

  /** The persistent service's epoch: changes whenever this instance (re)takes the lock. */
  get lockTerm(): number {
    return this.#lockTerm;
  }
}

function publicInfo(m: MemberInfo & { servesPersistent?: boolean }): MemberInfo {
  const { servesPersistent: _, ...info } = m;
  return info;
}

/** Rejects when `work` takes longer than `ms` (the query itself is left to the driver). */
function withTimeout<T>(work: PromiseLike<T>, ms: number): Promise<T> {
  return withDeadline(work, ms, () => new Error(`no answer from the database within ${ms} ms`));
}
