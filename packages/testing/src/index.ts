export {
  serverBinPath,
  startNode,
  type Endpoint,
  type NodeEndpoints,
  type StartNodeOptions,
  type TestNode,
} from "./node.js";
export {
  DEFAULT_WAIT_INTERVAL_MS,
  DEFAULT_WAIT_TIMEOUT_MS,
  delay,
  waitFor,
  type WaitForOptions,
} from "./wait.js";
export {
  startDnsServer,
  type DnsRecords,
  type StartDnsServerOptions,
  type TestDnsServer,
} from "./dns-server.js";
export {
  startFaultProxy,
  type DropRepliesOptions,
  type FaultProxy,
  type FaultProxyStats,
  type LatencyOptions,
  type StartFaultProxyOptions,
} from "./fault-proxy.js";
export {
  freePorts,
  freePortsOnAll,
  retryWhilePortTaken,
  getJson,
  startCluster,
  timingArgs,
  type ClusterKernelFaults,
  type ClusterTimings,
  type LeaderOptions,
  type StartClusterOptions,
  type TestCluster,
} from "./cluster.js";
export { makeTestCertificates, type TestCertificates } from "./certificates.js";
export type { LinkProxies } from "./links.js";
export {
  DEFAULT_IPTABLES_TIMEOUT_MS,
  IPTABLES_COMMANDS,
  KERNEL_FAULTS_CHAIN_PREFIX,
  kernelFaultsSupport,
  removeStaleKernelFaultChains,
  startKernelFaults,
  type BlockMode,
  type BlockOptions,
  type IsolateOptions,
  type KernelFaults,
  type KernelFaultsSupport,
  type StartKernelFaultsOptions,
} from "./kernel-faults.js";
export { mountTmpfs, type Tmpfs } from "./tmpfs.js";
export {
  mountFaultyFs,
  type DiskErrno,
  type DiskOperation,
  type FaultyFs,
  type PowerLossOptions,
  type PowerLossReport,
} from "./faulty-fs.js";
export {
  DEFAULT_POSTGRES_BIN_DIR,
  DEFAULT_POSTGRES_START_TIMEOUT_MS,
  DEFAULT_PSQL_TIMEOUT_MS,
  POSTGRES_APP_ROLE,
  POSTGRES_REPLICATION_ROLE,
  postgresSupport,
  startPostgres,
  type StartPostgresOptions,
  type TestPostgres,
  type TestPostgresPrimary,
  type TestPostgresStandby,
} from "./postgres.js";
