import type { AuditRowInput } from "./auditTable";

/**
 * Synthetic `system.access.audit` rows with a realistic mix: the documented workspace-level
 * services and their actions, request_params with the keys the detections read, ~3% failed
 * logins (401/403), account-level rows (workspace_id "0", ACCOUNT_LEVEL), several workspaces,
 * source IPs some with ":port", bursts of 5-50 rows sharing one event_time, a few null maps and
 * structs and some non-ASCII text. The same seed and options give the same rows.
 */
export interface SyntheticOptions {
  /** PRNG seed; the same seed and options give the same rows. Default: a random seed. */
  seed?: number;
  /** Event times are spread over [start, end); default: the 24 h ending 10 minutes before now. */
  start?: Date;
  end?: Date;
  /** Workspaces the workspace-level rows belong to; default: four made-up workspace ids. */
  workspaceIds?: string[];
  accountId?: string;
}

export const DEFAULT_SYNTHETIC_WORKSPACES = ["1234567890123456", "2345678901234567", "3456789012345678", "4567890123456789"];
export const DEFAULT_SYNTHETIC_ACCOUNT = "7d3c6a52-91b4-4e0f-8c2a-5b9e1f04d6a3";

const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"));

function hex32(u: number): string {
  return HEX[u >>> 24]! + HEX[(u >>> 16) & 255]! + HEX[(u >>> 8) & 255]! + HEX[u & 255]!;
}

/** sfc32, seeded through splitmix32: fast, 128-bit state, good enough for test data. */
class Rng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;

  constructor(seed: number) {
    let s = seed >>> 0;
    const next = () => {
      s = (s + 0x9e3779b9) | 0;
      let z = s;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.a = next();
    this.b = next();
    this.c = next();
    this.d = next();
    for (let i = 0; i < 12; i++) this.u32();
  }

  u32(): number {
    const t = (((this.a + this.b) | 0) + this.d) | 0;
    this.d = (this.d + 1) | 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) | 0;
    this.c = (this.c << 21) | (this.c >>> 11);
    this.c = (this.c + t) | 0;
    return t >>> 0;
  }

  /** Uniform in [0, 1) with 53 bits. */
  float(): number {
    return (this.u32() * 2097152 + (this.u32() >>> 11)) / 9007199254740992;
  }

  int(lo: number, hi: number): number {
    return lo + Math.floor(this.float() * (hi - lo + 1));
  }

  chance(p: number): boolean {
    return this.float() < p;
  }

  pick<T>(items: readonly T[]): T {
    return items[Math.floor(this.float() * items.length)]!;
  }

  /** `chars` lowercase hex digits (a multiple of 2). */
  hex(chars: number): string {
    let out = "";
    while (out.length + 8 <= chars) out += hex32(this.u32());
    if (out.length < chars) out += hex32(this.u32()).slice(0, chars - out.length);
    return out;
  }

  /** A version-4-shaped UUID. */
  uuid(): string {
    const a = this.u32();
    const b = this.u32();
    const c = this.u32();
    const d = this.u32();
    return (
      hex32(a) +
      "-" +
      HEX[b >>> 24]! +
      HEX[(b >>> 16) & 255]! +
      "-4" +
      HEX[(b >>> 8) & 15]!.slice(1) +
      HEX[b & 255]! +
      "-" +
      HEX[0x80 | ((c >>> 24) & 0x3f)]! +
      HEX[(c >>> 16) & 255]! +
      "-" +
      HEX[(c >>> 8) & 255]! +
      HEX[c & 255]! +
      hex32(d)
    );
  }
}

const FIRST = [
  "ana",
  "ben",
  "chen",
  "dana",
  "eli",
  "fatima",
  "gus",
  "hana",
  "ivan",
  "jo",
  "kai",
  "lena",
  "marek",
  "nora",
  "omar",
  "priya",
  "quinn",
  "rosa",
  "sam",
  "tomas",
  "ulla",
  "vik",
  "wen",
  "yusuf",
  "zoe",
  "josé",
  "zoë",
  "søren",
];
const LAST = ["smith", "nguyen", "garcia", "müller", "kowalski", "okafor", "tanaka", "rossi", "dubois", "silva", "khan", "berg", "o'neil"];
const DOMAIN = "contoso.com";
const PUBLIC_IPS = [
  "20.50.2.14",
  "20.61.4.99",
  "40.74.28.1",
  "52.232.19.240",
  "51.105.64.7",
  "13.69.66.140",
  "104.45.12.3",
  "20.86.93.41",
  "91.198.174.192",
  "185.199.108.153",
  "151.101.1.69",
  "81.2.69.160",
  "203.0.113.77",
  "198.51.100.23",
  "192.0.2.146",
];
const PRIVATE_IPS = ["10.1.0.4", "10.1.0.5", "10.1.2.17", "10.2.8.33", "172.16.4.10", "172.16.9.200", "192.168.10.25"];
const USER_AGENTS = [
  "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
  "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
  "databricks-cli/0.218.0 databricks-sdk-go/0.36.0 go/1.21.8 os/linux",
  "databricks-sdk-py/0.28.0 python/3.11.9 os/linux auth/pat",
  "Terraform/1.8.2 terraform-provider-databricks/1.43.0",
  "Apache-HttpClient/4.5.14 (Java/17.0.10)",
  "PowerBI/2.129 (Databricks ODBC 2.8.0)",
  "nodejs-sql-driver/1.8.4 (Node.js 20.12.0; Linux 5.15)",
];
const SCOPES = ["prod-kv", "etl", "ml-secrets", "storage", "api-keys"];
/** The secret key names the synthetic activity reads and writes (the demo's attack reads all of them). */
export const SYNTHETIC_SECRET_KEYS = [
  "sql-password",
  "storage-key",
  "sp-secret",
  "api-token",
  "webhook-url",
  "jdbc-url",
  "sas-token",
  "gh-pat",
  "openai-key",
  "kafka-pass",
  "smtp-pass",
  "s3-key",
];
const CONF_KEYS = [
  "enableTokensConfig",
  "enableIpAccessLists",
  "enableDbfsFileBrowser",
  "enableExportNotebook",
  "enableResultsDownloading",
  "maxTokenLifetimeDays",
  "enableVerboseAuditLogs",
];
const CATALOGS = ["main", "sales", "finance", "hr", "ml"];
const SCHEMAS = ["raw", "silver", "gold", "reporting", "features"];
const TABLES = ["orders", "customers", "payroll", "events", "invoices", "clicks", "inventory", "ledger"];
const SPARK_VERSIONS = ["13.3.x-scala2.12", "14.3.x-scala2.12", "15.4.x-scala2.12"];
const NODE_TYPES = ["Standard_DS3_v2", "Standard_E8ds_v5", "Standard_D4ds_v5", "Standard_NC6s_v3"];
const COMMANDS = [
  "df = spark.table('main.sales.orders')\ndisplay(df.limit(10))",
  "print(df.count())",
  "SELECT count(*) FROM main.sales.orders WHERE order_date >= '2024-01-01'",
  "dbutils.fs.ls('/mnt/raw')",
  "%sql\nSELECT * FROM hr.payroll LIMIT 100",
  'print("rows: ", n)',
  'val df = spark.read.parquet("abfss://raw@contoso.dfs.core.windows.net/events")',
  'spark.conf.set("spark.sql.shuffle.partitions", 64)',
  "token = dbutils.secrets.get(scope='api-keys', key='openai-key')",
];

interface Actor {
  email: string;
  isServicePrincipal: boolean;
}

interface Context {
  rng: Rng;
  actor: Actor;
  workspaceId: string;
  accountId: string;
  eventMs: number;
  clusterIds: string[];
  warehouseIds: string[];
}

type Params = Record<string, string | null> | null;

interface ActionSpec {
  service: string;
  action: string;
  weight: number;
  level: "workspace" | "account";
  params: (ctx: Context) => Params;
  /** Probability that the call fails, and how. */
  fail?: { p: number; status: number[]; message: string };
  result?: (ctx: Context) => string | null;
  /** Runs as a job (identity_metadata set). */
  job?: boolean;
}

const clusterId = (ctx: Context) => ctx.rng.pick(ctx.clusterIds);
const tableName = (ctx: Context) => `${ctx.rng.pick(CATALOGS)}.${ctx.rng.pick(SCHEMAS)}.${ctx.rng.pick(TABLES)}`;
const notebookPath = (ctx: Context) =>
  `/Users/${ctx.actor.email}/${ctx.rng.pick(["etl", "Analyse ventes", "scratch", "features", "Q3 report"])} ${ctx.rng.int(1, 40)}`;

const LOGIN_FAIL = { p: 0.2, status: [401], message: "Invalid credentials" };

const ACTIONS: ActionSpec[] = [
  // accounts: logins (failed ones are ~3% of all rows), tokens, IP access lists.
  {
    service: "accounts",
    action: "tokenLogin",
    weight: 6,
    level: "workspace",
    params: (c) => ({ user: c.actor.email, tokenId: c.rng.hex(64) }),
    fail: { p: 0.1, status: [401, 403], message: "Invalid access token" },
  },
  {
    service: "accounts",
    action: "login",
    weight: 2.5,
    level: "workspace",
    params: (c) => ({ user: c.actor.email, authenticationMethod: "password" }),
    fail: LOGIN_FAIL,
  },
  {
    service: "accounts",
    action: "aadBrowserLogin",
    weight: 3,
    level: "workspace",
    params: (c) => ({ user: c.actor.email }),
    fail: { p: 0.12, status: [403], message: "User is not a member of this workspace" },
  },
  {
    service: "accounts",
    action: "aadTokenLogin",
    weight: 2,
    level: "workspace",
    params: (c) => ({ user: c.actor.email }),
    fail: { p: 0.08, status: [401], message: "Token is expired" },
  },
  { service: "accounts", action: "logout", weight: 0.6, level: "workspace", params: () => null },
  {
    service: "accounts",
    action: "generateDbToken",
    weight: 0.8,
    level: "workspace",
    params: (c) => ({
      tokenExpirationTime: c.rng.chance(0.1) ? "0" : String(c.eventMs + c.rng.int(1, 180) * 86_400_000),
      comment: c.rng.pick(["ci", "powerbi", "terraform", "notebook job", null]),
    }),
  },
  {
    service: "accounts",
    action: "IpAccessDenied",
    weight: 0.25,
    level: "workspace",
    params: (c) => ({ path: c.rng.pick(["/api/2.0/clusters/list", "/api/2.0/jobs/run-now", "/login.html"]), user: c.actor.email }),
    fail: { p: 1, status: [403], message: "Source IP address is blocked by the workspace IP access list" },
  },
  { service: "accounts", action: "acceptTos", weight: 0.03, level: "workspace", params: (c) => ({ workspace_id: c.workspaceId, tosVersion: "2024-03" }) },
  { service: "accounts", action: "login", weight: 1.2, level: "account", params: (c) => ({ user: c.actor.email }), fail: LOGIN_FAIL },
  {
    service: "accounts",
    action: "aadBrowserLogin",
    weight: 1,
    level: "account",
    params: (c) => ({ user: c.actor.email }),
    fail: { p: 0.15, status: [401], message: "AADSTS50126: invalid username or password" },
  },
  {
    service: "accounts",
    action: "setSetting",
    weight: 0.15,
    level: "account",
    params: (c) => ({
      settingTypeName: c.rng.pick(["default_namespace", "ip_access_list_enabled", "esm_enablement"]),
      settingValueForAudit: c.rng.pick(["true", "false", "main"]),
    }),
  },
  {
    service: "accounts",
    action: "addPrincipalToGroup",
    weight: 0.2,
    level: "account",
    params: (c) => ({ targetGroupName: c.rng.pick(["admins", "data-engineers", "analysts"]), targetUserName: `${c.rng.pick(FIRST)}@${DOMAIN}` }),
  },
  {
    service: "accounts",
    action: "accountIpAclsValidationFailed",
    weight: 0.05,
    level: "account",
    params: (c) => ({ user: c.actor.email }),
    fail: { p: 1, status: [403], message: "IP address is not allowed by the account IP access list" },
  },
  { service: "accounts", action: "setAccountAdmin", weight: 0.02, level: "account", params: (c) => ({ targetUserName: `${c.rng.pick(FIRST)}@${DOMAIN}` }) },
  // clusters
  {
    service: "clusters",
    action: "create",
    weight: 0.8,
    level: "workspace",
    params: (c) => ({
      cluster_name: `${c.rng.pick(["etl", "adhoc", "ml", "bi"])}-${c.rng.int(1, 99)}`,
      spark_version: c.rng.pick(SPARK_VERSIONS),
      node_type_id: c.rng.pick(NODE_TYPES),
      num_workers: String(c.rng.int(0, 16)),
      autotermination_minutes: String(c.rng.pick([30, 60, 120])),
    }),
    result: (c) => `{"cluster_id":"${clusterId(c)}"}`,
  },
  { service: "clusters", action: "start", weight: 1.2, level: "workspace", params: (c) => ({ cluster_id: clusterId(c) }) },
  { service: "clusters", action: "restart", weight: 0.4, level: "workspace", params: (c) => ({ cluster_id: clusterId(c) }) },
  {
    service: "clusters",
    action: "edit",
    weight: 0.5,
    level: "workspace",
    params: (c) => ({ cluster_id: clusterId(c), num_workers: String(c.rng.int(1, 32)) }),
  },
  {
    service: "clusters",
    action: "resize",
    weight: 0.3,
    level: "workspace",
    params: (c) => ({ cluster_id: clusterId(c), num_workers: String(c.rng.int(1, 32)) }),
  },
  {
    service: "clusters",
    action: "delete",
    weight: 0.6,
    level: "workspace",
    params: (c) => ({ cluster_id: clusterId(c) }),
    fail: { p: 0.05, status: [403], message: "User does not have permission to terminate this cluster" },
  },
  { service: "clusters", action: "permanentDelete", weight: 0.1, level: "workspace", params: (c) => ({ cluster_id: clusterId(c) }) },
  {
    service: "clusters",
    action: "changeClusterAcl",
    weight: 0.15,
    level: "workspace",
    params: (c) => ({
      shardName: c.workspaceId,
      aclPermissionSet: `{"user":"${c.rng.pick(FIRST)}@${DOMAIN}","permission":"CAN_MANAGE"}`,
      resourceId: clusterId(c),
    }),
  },
  {
    service: "clusterLibraries",
    action: "installLibraries",
    weight: 0.3,
    level: "workspace",
    params: (c) => ({ clusterId: clusterId(c), library: `{"pypi":{"package":"${c.rng.pick(["pandas==2.2.2", "requests", "xgboost"])}"}}` }),
  },
  {
    service: "clusterLibraries",
    action: "installLibraryOnAllClusters",
    weight: 0.01,
    level: "workspace",
    params: () => ({ library: '{"maven":{"coordinates":"com.example:agent:1.0"}}' }),
  },
  // jobs (identity_metadata set: run_by / run_as)
  {
    service: "jobs",
    action: "runNow",
    weight: 1.5,
    level: "workspace",
    params: (c) => ({ job_id: String(c.rng.int(100, 999)) }),
    result: (c) => `{"run_id":${c.rng.int(1e6, 9e6)}}`,
  },
  {
    service: "jobs",
    action: "runStart",
    weight: 1.5,
    level: "workspace",
    params: (c) => ({ jobId: String(c.rng.int(100, 999)), runId: String(c.rng.int(1e6, 9e6)), jobTriggerType: c.rng.pick(["cron", "onetime", "periodic"]) }),
    job: true,
  },
  {
    service: "jobs",
    action: "runSucceeded",
    weight: 1.2,
    level: "workspace",
    params: (c) => ({ jobId: String(c.rng.int(100, 999)), runId: String(c.rng.int(1e6, 9e6)), idInJob: String(c.rng.int(1, 500)) }),
    job: true,
  },
  {
    service: "jobs",
    action: "runFailed",
    weight: 0.2,
    level: "workspace",
    params: (c) => ({ jobId: String(c.rng.int(100, 999)), runId: String(c.rng.int(1e6, 9e6)), jobTerminalState: "FAILED" }),
    job: true,
  },
  { service: "jobs", action: "create", weight: 0.2, level: "workspace", params: (c) => ({ name: `nightly ${c.rng.pick(TABLES)}`, job_type: "NORMAL" }) },
  { service: "jobs", action: "delete", weight: 0.1, level: "workspace", params: (c) => ({ job_id: String(c.rng.int(100, 999)) }) },
  {
    service: "jobs",
    action: "changeJobAcl",
    weight: 0.1,
    level: "workspace",
    params: (c) => ({ resourceId: String(c.rng.int(100, 999)), aclPermissionSet: "CAN_MANAGE_RUN" }),
  },
  // notebook (runCommand needs verbose audit logs)
  {
    service: "notebook",
    action: "runCommand",
    weight: 9,
    level: "workspace",
    params: (c) => ({
      notebookId: String(c.rng.int(1e15, 9e15)),
      executionTime: (c.rng.float() * 20).toFixed(3),
      status: c.rng.chance(0.06) ? "failed" : "finished",
      commandId: c.rng.hex(32),
      commandText: c.rng.pick(COMMANDS),
      commandLanguage: c.rng.pick(["python", "sql", "scala"]),
    }),
  },
  {
    service: "notebook",
    action: "attachNotebook",
    weight: 1,
    level: "workspace",
    params: (c) => ({ path: notebookPath(c), clusterId: clusterId(c), notebookId: String(c.rng.int(1e15, 9e15)) }),
  },
  {
    service: "notebook",
    action: "createNotebook",
    weight: 0.3,
    level: "workspace",
    params: (c) => ({ path: notebookPath(c), notebookId: String(c.rng.int(1e15, 9e15)) }),
  },
  {
    service: "notebook",
    action: "deleteNotebook",
    weight: 0.1,
    level: "workspace",
    params: (c) => ({ notebookId: String(c.rng.int(1e15, 9e15)), notebookName: "old", path: notebookPath(c) }),
  },
  {
    service: "notebook",
    action: "downloadPreviewResults",
    weight: 0.15,
    level: "workspace",
    params: (c) => ({ notebookId: String(c.rng.int(1e15, 9e15)), notebookFullPath: notebookPath(c) }),
  },
  {
    service: "notebook",
    action: "downloadLargeResults",
    weight: 0.05,
    level: "workspace",
    params: (c) => ({ notebookId: String(c.rng.int(1e15, 9e15)), notebookFullPath: notebookPath(c) }),
  },
  // workspace
  {
    service: "workspace",
    action: "workspaceConfEdit",
    weight: 0.1,
    level: "workspace",
    params: (c) => ({ workspaceConfKeys: c.rng.pick(CONF_KEYS), workspaceConfValues: c.rng.pick(["true", "false", "90"]) }),
  },
  { service: "workspace", action: "fileCreate", weight: 0.4, level: "workspace", params: (c) => ({ path: notebookPath(c) }) },
  {
    service: "workspace",
    action: "mkdirs",
    weight: 0.2,
    level: "workspace",
    params: (c) => ({ path: `/Users/${c.actor.email}/${c.rng.pick(["tmp", "projects", "données"])}` }),
  },
  {
    service: "workspace",
    action: "workspaceExport",
    weight: 0.2,
    level: "workspace",
    params: (c) => ({ workspaceExportFormat: c.rng.pick(["SOURCE", "SOURCE", "HTML", "DBC", "JUPYTER"]), notebookFullPath: notebookPath(c) }),
  },
  {
    service: "workspace",
    action: "moveWorkspaceNode",
    weight: 0.1,
    level: "workspace",
    params: (c) => ({ path: notebookPath(c), destinationPath: "/Shared/Trash" }),
  },
  // secrets
  {
    service: "secrets",
    action: "getSecret",
    weight: 3,
    level: "workspace",
    params: (c) => ({ scope: c.rng.pick(SCOPES), key: c.rng.pick(SYNTHETIC_SECRET_KEYS) }),
    fail: { p: 0.03, status: [403], message: "User does not have READ permission on scope" },
  },
  { service: "secrets", action: "listSecrets", weight: 0.5, level: "workspace", params: (c) => ({ scope: c.rng.pick(SCOPES) }) },
  {
    service: "secrets",
    action: "putSecret",
    weight: 0.1,
    level: "workspace",
    params: (c) => ({ scope: c.rng.pick(SCOPES), key: c.rng.pick(SYNTHETIC_SECRET_KEYS) }),
  },
  {
    service: "secrets",
    action: "deleteSecret",
    weight: 0.03,
    level: "workspace",
    params: (c) => ({ scope: c.rng.pick(SCOPES), key: c.rng.pick(SYNTHETIC_SECRET_KEYS) }),
  },
  // databrickssql
  {
    service: "databrickssql",
    action: "commandSubmit",
    weight: 3,
    level: "workspace",
    params: (c) => ({
      warehouseId: c.rng.pick(c.warehouseIds),
      commandId: c.rng.uuid(),
      commandText: `SELECT * FROM ${tableName(c)} WHERE region = 'EMEA' LIMIT ${c.rng.int(10, 1000)}`,
    }),
  },
  {
    service: "databrickssql",
    action: "commandFinish",
    weight: 3,
    level: "workspace",
    params: (c) => ({ warehouseId: c.rng.pick(c.warehouseIds), commandId: c.rng.uuid() }),
  },
  {
    service: "databrickssql",
    action: "createQuery",
    weight: 0.2,
    level: "workspace",
    params: (c) => ({ queryId: c.rng.uuid(), name: `Weekly ${c.rng.pick(TABLES)}` }),
  },
  {
    service: "databrickssql",
    action: "downloadQueryResult",
    weight: 0.1,
    level: "workspace",
    params: (c) => ({ queryResultId: c.rng.uuid(), fileType: c.rng.pick(["csv", "arrows", "xlsx"]) }),
  },
  {
    service: "databrickssql",
    action: "changeWarehouseAcls",
    weight: 0.03,
    level: "workspace",
    params: (c) => ({ aclPermissionSet: "CAN_USE", resourceId: c.rng.pick(c.warehouseIds) }),
  },
  // unityCatalog (some account-level)
  {
    service: "unityCatalog",
    action: "getTable",
    weight: 4,
    level: "workspace",
    params: (c) => ({ full_name_arg: tableName(c), workspace_id: c.workspaceId, metastore_id: "5b7c1f0e-8d1a-4b8e-9f2d-3a6c4e7b9d10" }),
    fail: { p: 0.04, status: [403], message: "PERMISSION_DENIED: User does not have SELECT on Table" },
  },
  {
    service: "unityCatalog",
    action: "generateTemporaryTableCredential",
    weight: 2,
    level: "workspace",
    params: (c) => ({
      table_id: c.rng.uuid(),
      operation: c.rng.pick(["READ", "READ", "READ_WRITE"]),
      table_full_name: tableName(c),
      metastore_id: "5b7c1f0e-8d1a-4b8e-9f2d-3a6c4e7b9d10",
    }),
    fail: { p: 0.03, status: [401, 403], message: "PERMISSION_DENIED" },
  },
  {
    service: "unityCatalog",
    action: "listSchemas",
    weight: 0.8,
    level: "workspace",
    params: (c) => ({ catalog_name: c.rng.pick(CATALOGS), metastore_id: "5b7c1f0e-8d1a-4b8e-9f2d-3a6c4e7b9d10" }),
  },
  {
    service: "unityCatalog",
    action: "deltaSharingQueryTable",
    weight: 0.05,
    level: "workspace",
    params: (c) => ({ share: "partners", schema: "gold", name: c.rng.pick(TABLES), is_ip_access_denied: c.rng.chance(0.1) ? "true" : "false" }),
  },
  {
    service: "unityCatalog",
    action: "createRecipient",
    weight: 0.01,
    level: "workspace",
    params: (c) => ({ name: `partner-${c.rng.int(1, 9)}`, ip_access_list: c.rng.chance(0.5) ? null : "203.0.113.0/24" }),
  },
  {
    service: "unityCatalog",
    action: "getMetastoreSummary",
    weight: 0.8,
    level: "account",
    params: () => ({ metastore_id: "5b7c1f0e-8d1a-4b8e-9f2d-3a6c4e7b9d10" }),
  },
  // dbfs
  {
    service: "dbfs",
    action: "getStatus",
    weight: 1.2,
    level: "workspace",
    params: (c) => ({ path: `/mnt/${c.rng.pick(["raw", "curated", "tmp"])}/${c.rng.pick(TABLES)}` }),
  },
  { service: "dbfs", action: "list", weight: 0.6, level: "workspace", params: (c) => ({ path: `/mnt/${c.rng.pick(["raw", "curated", "tmp"])}` }) },
  { service: "dbfs", action: "delete", weight: 0.1, level: "workspace", params: (c) => ({ path: `/tmp/${c.rng.hex(8)}`, recursive: "true" }) },
  {
    service: "dbfs",
    action: "mount",
    weight: 0.01,
    level: "workspace",
    params: (c) => ({ mountPoint: `/mnt/${c.rng.pick(["ext", "landing", "partner"])}`, owner: c.actor.email }),
  },
  // repos
  {
    service: "repos",
    action: "updateRepo",
    weight: 0.4,
    level: "workspace",
    params: (c) => ({ id: String(c.rng.int(1e14, 9e14)), branch: c.rng.pick(["main", "dev", "feature/ingest"]) }),
  },
  {
    service: "repos",
    action: "createRepo",
    weight: 0.05,
    level: "workspace",
    params: () => ({ url: "https://github.com/contoso/data-pipelines.git", provider: "gitHub" }),
  },
  // sqlPermissions / genie / globalInitScripts
  {
    service: "sqlPermissions",
    action: "grantPermission",
    weight: 0.1,
    level: "workspace",
    params: (c) => ({ permission: "SELECT", securable: `TABLE ${tableName(c)}`, principal: `${c.rng.pick(FIRST)}@${DOMAIN}` }),
  },
  {
    service: "sqlPermissions",
    action: "changeSecurableOwner",
    weight: 0.02,
    level: "workspace",
    params: (c) => ({ securable: `TABLE ${tableName(c)}`, principal: "data-owners" }),
  },
  {
    service: "genie",
    action: "databricksAccess",
    weight: 0.01,
    level: "workspace",
    params: (c) => ({ user: "support@databricks.com", approver: c.actor.email, duration: "8", reason: "SF-0042317 cluster start failures", authType: "SAML" }),
  },
  {
    service: "globalInitScripts",
    action: "update",
    weight: 0.005,
    level: "workspace",
    params: (c) => ({ name: "install-agent.sh", script_id: c.rng.hex(16).toUpperCase(), enabled: "true", "script-SHA256": c.rng.hex(64) }),
  },
];

const TOTAL_WEIGHT = ACTIONS.reduce((s, a) => s + a.weight, 0);
const CUMULATIVE = (() => {
  let acc = 0;
  return ACTIONS.map((a) => (acc += a.weight / TOTAL_WEIGHT));
})();

function pickAction(rng: Rng): ActionSpec {
  const x = rng.float();
  let lo = 0;
  let hi = CUMULATIVE.length - 1;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (CUMULATIVE[mid]! > x) hi = mid;
    else lo = mid + 1;
  }
  return ACTIONS[lo]!;
}

function isoMicros(us: number): string {
  const ms = Math.floor(us / 1000);
  const sub = us - ms * 1000;
  return `${new Date(ms).toISOString().slice(0, 23)}${String(sub).padStart(3, "0")}Z`;
}

/** A synthetic row with its event time as microseconds; `row.event_time` is "" until {@link syntheticRows} formats it. */
export interface SyntheticRecord {
  eventTimeUs: number;
  row: AuditRowInput;
}

/**
 * `n` synthetic audit rows. Rows come in groups that share one event_time (most groups have one
 * row, ~15% are bursts of 5-50 by one actor); groups are spread uniformly over [start, end).
 */
export function* syntheticRows(n: number, options: SyntheticOptions = {}): Generator<AuditRowInput> {
  for (const record of syntheticRecords(n, options)) {
    record.row.event_time = isoMicros(record.eventTimeUs);
    yield record.row;
  }
}

/** The rows of {@link syntheticRows} (same seed, same rows) with event times as microseconds, for bulk loading. */
export function* syntheticRecords(n: number, options: SyntheticOptions = {}): Generator<SyntheticRecord> {
  if (!Number.isInteger(n) || n < 0) throw new RangeError(`n must be a whole number of rows, got ${n}`);
  const seed = options.seed ?? Math.floor(Math.random() * 2 ** 32);
  const rng = new Rng(seed);
  const endMs = options.end?.getTime() ?? Date.now() - 10 * 60_000;
  const startMs = options.start?.getTime() ?? endMs - 24 * 3600_000;
  if (!(endMs > startMs)) throw new RangeError("synthetic rows: end must be after start");
  const startUs = startMs * 1000;
  const spanUs = (endMs - startMs) * 1000;
  const workspaces = options.workspaceIds && options.workspaceIds.length > 0 ? options.workspaceIds : DEFAULT_SYNTHETIC_WORKSPACES;
  const accountId = options.accountId ?? DEFAULT_SYNTHETIC_ACCOUNT;

  const humans: Actor[] = [];
  for (let i = 0; i < 40; i++) {
    const first = rng.pick(FIRST);
    const last = rng.pick(LAST);
    humans.push({ email: `${first}.${last}${i % 7 === 0 ? i : ""}@${DOMAIN}`, isServicePrincipal: false });
  }
  const principals: Actor[] = [];
  for (let i = 0; i < 6; i++) principals.push({ email: rng.uuid(), isServicePrincipal: true });
  const machines = [...principals, { email: "System-User", isServicePrincipal: true }];
  const ips = [...PUBLIC_IPS, ...PRIVATE_IPS];
  const clusterIds = Array.from({ length: 12 }, () => `${rng.int(1000, 1299)}-${rng.int(100000, 999999)}-${rng.hex(8)}`);
  const warehouseIds = Array.from({ length: 3 }, () => rng.hex(16));

  let produced = 0;
  while (produced < n) {
    const burst = rng.chance(0.15) ? rng.int(5, 50) : 1;
    const size = Math.min(burst, n - produced);
    const timeUs = startUs + Math.floor(rng.float() * spanUs);
    const actor = rng.chance(0.93) ? rng.pick(humans) : rng.pick(machines);
    const workspaceId = rng.pick(workspaces);
    const ip = rng.pick(ips);
    const ipText = rng.chance(0.3) ? `${ip}:${rng.int(1024, 65535)}` : ip;
    const userAgent = rng.pick(USER_AGENTS);
    const sessionId = rng.chance(0.8) ? rng.hex(32) : null;
    const ctx: Context = { rng, actor, workspaceId, accountId, eventMs: Math.floor(timeUs / 1000), clusterIds, warehouseIds };
    const burstAction = burst > 1 ? pickAction(rng) : undefined;
    for (let k = 0; k < size; k++) {
      const spec = burstAction && rng.chance(0.7) ? burstAction : pickAction(rng);
      const accountLevel = spec.level === "account";
      const failed = spec.fail !== undefined && rng.chance(spec.fail.p);
      const params = spec.params(ctx);
      const row: AuditRowInput = {
        account_id: accountId,
        workspace_id: accountLevel ? "0" : workspaceId,
        version: "2.0",
        event_time: "",
        source_ip_address: ipText,
        user_agent: userAgent,
        session_id: sessionId,
        user_identity: rng.chance(0.005) ? null : { email: actor.email, subject_name: actor.isServicePrincipal ? actor.email : null },
        service_name: spec.service,
        action_name: spec.action,
        request_id: rng.uuid(),
        request_params: params === null || rng.chance(0.01) ? null : params,
        response: rng.chance(0.002)
          ? null
          : failed
            ? { status_code: rng.pick(spec.fail!.status), error_message: spec.fail!.message, result: null }
            : { status_code: 200, error_message: null, result: spec.result ? spec.result(ctx) : null },
        audit_level: accountLevel ? "ACCOUNT_LEVEL" : "WORKSPACE_LEVEL",
        event_id: rng.uuid(),
        identity_metadata: spec.job ? { run_by: actor.email, run_as: rng.pick(principals).email } : null,
      };
      produced++;
      yield { eventTimeUs: timeUs, row };
    }
  }
}
