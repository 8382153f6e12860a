/**
 * The admin UI: the page a node serves at `/ui/`. It reads the node's JSON endpoints
 * (docs/http-api.md); with authentication on it asks for credentials in its own form first and
 * shows nothing before.
 */
import "uplot/dist/uPlot.min.css";
import "./style.css";
import { render } from "preact";
import { useEffect, useState } from "preact/hooks";
import {
  ApiError,
  api,
  authenticationRequired,
  clearCredentials,
  errorText,
  onUnauthorized,
  setCredentials,
  type NodeInfo,
} from "./api.js";
import { shortId } from "./format.js";
import { useHashRoute } from "./hooks.js";
import { ClusterPage } from "./pages/cluster.js";
import { StatsPage } from "./pages/stats.js";
import { StreamPageView, StreamsPage } from "./pages/streams.js";
import { GroupPage, SubscriptionsPage } from "./pages/subscriptions.js";
import { TailPage } from "./pages/tail.js";

type Session =
  | { kind: "checking" }
  | { kind: "login"; message?: string }
  | { kind: "unreachable"; message: string }
  | { kind: "ready"; info: NodeInfo; authenticated: boolean };

const PAGES: [string, string][] = [
  ["cluster", "Cluster"],
  ["streams", "Streams"],
  ["tail", "Live tail"],
  ["subscriptions", "Subscriptions"],
  ["stats", "Stats"],
];

function decode(segment: string | undefined): string {
  try {
    return decodeURIComponent(segment ?? "");
  } catch {
    return segment ?? "";
  }
}

function Page({ route }: { route: string }) {
  const parts = route.replace(/^\//, "").split("/");
  const page = parts[0] || "cluster";
  switch (page) {
    case "streams":
      return parts.length > 1 ? (
        <StreamPageView key={route} streamId={decode(parts.slice(1).join("/"))} />
      ) : (
        <StreamsPage />
      );
    case "tail":
      return <TailPage />;
    case "subscriptions":
      return parts.length === 3 ? (
        <GroupPage key={route} streamId={decode(parts[1])} group={decode(parts[2])} />
      ) : (
        <SubscriptionsPage />
      );
    case "stats":
      return <StatsPage />;
    case "cluster":
      return <ClusterPage />;
    default:
      return <p class="error">No such page: {page}</p>;
  }
}

function Login({ message, onDone }: { message?: string; onDone: (s: Session) => void }) {
  const [username, setUsername] = useState("admin");
  const [password, setPassword] = useState("");
  const [error, setError] = useState(message);
  const [busy, setBusy] = useState(false);
  const submit = async (): Promise<void> => {
    setBusy(true);
    setCredentials(username, password);
    try {
      const info = await api<NodeInfo>("info");
      onDone({ kind: "ready", info, authenticated: true });
    } catch (err) {
      clearCredentials();
      setError(
        err instanceof ApiError && err.status === 401
          ? "Wrong username or password."
          : errorText(err),
      );
    } finally {
      setBusy(false);
    }
  };
  return (
    <form
      class="login"
      data-testid="login-form"
      onSubmit={(e) => {
        e.preventDefault();
        void submit();
      }}
    >
      <h2>Sign in</h2>
      <p class="note">This node requires authentication.</p>
      <label>
        Username
        <input
          name="username"
          autoComplete="username"
          value={username}
          onInput={(e) => setUsername(e.currentTarget.value)}
        />
      </label>
      <label>
        Password
        <input
          name="password"
          type="password"
          autoComplete="current-password"
          value={password}
          onInput={(e) => setPassword(e.currentTarget.value)}
        />
      </label>
      {error && (
        <p class="error" data-testid="login-error">
          {error}
        </p>
      )}
      <button type="submit" disabled={busy}>
        Sign in
      </button>
    </form>
  );
}

function App() {
  const [session, setSession] = useState<Session>({ kind: "checking" });
  const route = useHashRoute();
  const check = async (): Promise<void> => {
    try {
      if (await authenticationRequired()) {
        setSession({ kind: "login" });
        return;
      }
      const info = await api<NodeInfo>("info");
      setSession({ kind: "ready", info, authenticated: false });
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) setSession({ kind: "login" });
      else setSession({ kind: "unreachable", message: errorText(err) });
    }
  };
  useEffect(() => {
    void check();
    return onUnauthorized(() => {
      clearCredentials();
      setSession({ kind: "login", message: "The node no longer accepts these credentials." });
    });
  }, []);
  const current = route.replace(/^\//, "").split("/")[0] || "cluster";
  return (
    <>
      <header class="top">
        <h1>Chorus</h1>
        {session.kind === "ready" && (
          <>
            <nav>
              {PAGES.map(([id, label]) => (
                <a key={id} href={`#/${id}`} class={current === id ? "active" : ""}>
                  {label}
                </a>
              ))}
            </nav>
            <span class="node" title={session.info.instanceId}>
              node {shortId(session.info.instanceId)} · {session.info.state} · v
              {session.info.version}
            </span>
            {session.authenticated && (
              <button
                class="link"
                onClick={() => {
                  clearCredentials();
                  setSession({ kind: "login" });
                }}
              >
                Sign out
              </button>
            )}
          </>
        )}
      </header>
      <main>
        {session.kind === "checking" && <p class="note">Connecting...</p>}
        {session.kind === "unreachable" && (
          <p class="error">
            {session.message} <button onClick={() => void check()}>Retry</button>
          </p>
        )}
        {session.kind === "login" && <Login message={session.message} onDone={setSession} />}
        {session.kind === "ready" && <Page route={route} />}
      </main>
    </>
  );
}

const root = document.getElementById("app");
if (root) render(<App />, root);
