import { ConfigError } from "./errors";
import { formatDuration, parseIsoDuration } from "./duration";
import { parseTimestampMicros } from "./timestamps";
import { MAX_SOURCES, WORKSPACE_ID, agreeing, configureSources, parseServerHostname, readSources, type SourceConfig } from "./sourcesConfig";

export { SINGLE_SOURCE_NAME, parseServerHostname, sourceConcurrencyFor, type SourceConfig, type SourceSettings } from "./sourcesConfig";

/** The Azure Databricks first-party application: its `.default` scope gets a token the SQL warehouse accepts. */
export const DATABRICKS_DEFAULT_SCOPE = "2ff814a6-3304-4ab8-85cb-cd0e6f879c1d/.default";

/** Workspace-level `service_name` values documented for system.access.audit, plus the ones seen in the table. */
export const DEFAULT_AUDIT_SERVICES: readonly string[] = [
  "accounts",
  "aibiGenie",
  "clusters",
  "clusterPolicies",
  "dashboards",
  "databrickssql",
  "dataMonitoring",
  "dbfs",
  "deltaPipelines",
  "featureStore",
  "filesystem",
  "genie",
  "gitCredentials",
  "globalInitScripts",
  "groups",
  "iamRole",
  "ingestion",
  "instancePools",
  "jobs",
  "lineageTracking",
  "marketplaceConsumer",
  "marketplaceProvider",
  "mlflowAcledArtifact",
  "mlflowExperiment",
  "modelRegistry",
  "notebook",
  "partnerConnect",
  "predictiveOptimization",
  "remoteHistoryService",
  "repos",
  "secrets",
  "serverlessRealTimeInference",
  "sqlPermissions",
  "ssh",
  "vectorSearch",
  "webTerminal",
  "workspace",
  "clusterLibraries",
  "unityCatalog",
  "capsule8-alerts-dataplane",
  "clamAVScanService-dataplane",
];

export const DEFAULTS = {
  container: "databricks-audit",
  schedule: "0 5 * * * *",
  start: "PT24H",
  settleDelay: "PT10M",
  lateHorizon: "PT24H",
  timeBudget: "PT20M",
  backfillTimeBudget: "PT20M",
  queryTimeout: "PT10M",
  /** The Functions host's own default for the Flex Consumption plan, when host.json sets none. */
  functionTimeoutHost: "00:30:00",
  workspaceLookbackHours: 24,
} as const;

export interface DatabricksSettings {
  /** As given: host, optionally `:port`. */
  serverHostname: string;
  host: string;
  port: number;
  httpPath: string;
  /** A personal access token; when absent the app authenticates with Entra ID (managed identity). */
  accessToken?: string;
  scope: string;
}

export interface AuditFilter {
  /** Empty: every workspace the warehouse sees. */
  workspaceIds: readonly string[];
  /** `"all"`: no filter on service_name. */
  services: readonly string[] | "all";
  includeAccountLevel: boolean;
}

/**
 * `container` holds the archive (`audit/`), written once per blob and never rewritten, so it can
 * be write-once (WORM); `stateContainer` holds what the app rewrites and deletes: `_state/`, the
 * dead letters and the detections' alerts. One container for both unless EXPORT_STATE_CONTAINER is set.
 */
export type StorageSettings = ({ kind: "accountUrl"; accountUrl: string } | { kind: "connectionString"; connectionString: string }) & {
  container: string;
  stateContainer: string;
};

export interface LogsIngestionSettings {
  endpoint: string;
  ruleId: string;
  streamName: string;
}

/** Where reconciliation reads what Log Analytics holds (Logs Query API, with the app's identity and Log Analytics Reader). */
export interface LogAnalyticsQuerySettings {
  /** The workspace's ID (its customer ID, a GUID), not its resource ID. */
  workspaceId: string;
  /** The Logs Query API's base URL, e.g. https://api.loganalytics.io/v1. */
  endpoint: string;
}

export const DEFAULT_LOG_ANALYTICS_QUERY_ENDPOINT = "https://api.loganalytics.io/v1";

export type RedactionAction = "mask" | "drop";
export interface RedactionRule {
  key: string;
  action: RedactionAction;
}

export type ExportStart = { kind: "at"; us: number } | { kind: "ago"; ms: number };

export interface AppConfig {
  /** Every warehouse to read, never empty; the first is `databricks` and `filter` below. */
  sources: readonly SourceConfig[];
  /** The first source's warehouse (the only one unless DATABRICKS_SOURCES lists several). */
  databricks: DatabricksSettings;
  azureClientId?: string;
  /** The first source's filter. */
  filter: AuditFilter;
  storage?: StorageSettings;
  logsIngestion?: LogsIngestionSettings;
  /** Set when LOG_ANALYTICS_WORKSPACE_ID is: what `dbx-audit reconcile` and the reconciliation check query. */
  logAnalyticsQuery?: LogAnalyticsQuerySettings;
  schedule: string;
  redaction: readonly RedactionRule[];
  start: ExportStart;
  settleDelayMs: number;
  lateHorizonMs: number;
  timeBudgetMs: number;
  /** BACKFILL_TIME_BUDGET: a backfill slice's invocation stops starting batches after this and re-enqueues the rest. */
  backfillTimeBudgetMs: number;
  queryTimeoutMs: number;
  workspaceLookbackHours: number;
  /** EXPORT_SOURCE_CONCURRENCY: sources exported at once; unset, it follows the instance's memory (sourceConcurrencyFor). */
  sourceConcurrency?: number;
  /** DATABRICKS_CLOUD_FETCH true or false; unset (auto), the export follows the instance's memory (cloudFetchFor). */
  cloudFetch?: boolean;
}

export type Settings = Readonly<Record<string, string | undefined>>;

/** What a caller needs besides the Databricks settings: the export needs storage, the check does not. */
export interface ConfigNeeds {
  storage: boolean;
  /**
   * The Functions host's functionTimeout (host.json, or AzureFunctionsJobHost__functionTimeout),
   * as the host states it (e.g. '00:30:00'); a time budget that does not fit in it is refused.
   */
  functionTimeout?: string;
}

/**
 * Reads and validates every app setting at once. Pure: pass `process.env` (or the CLI's
 * flags mapped onto setting names). Throws one ConfigError listing every problem.
 */
export function loadConfig(settings: Settings, needs: ConfigNeeds = { storage: true }): AppConfig {
  const problems: string[] = [];
  const read = (name: string): string | undefined => {
    const value = settings[name]?.trim();
    return value ? value : undefined;
  };

  const sources = readSources(read("DATABRICKS_SOURCES"), problems);
  const first = sources?.[0];
  // DATABRICKS_SOURCES names the warehouses; the single-source settings, when also set, must agree with its first.
  // A DATABRICKS_SOURCES with problems has named them; the single-source settings it stands for are not also "required".
  const sourcesBroken = read("DATABRICKS_SOURCES") !== undefined && !sources;
  const databricks = readDatabricks(
    (name) => {
      if (first && name === "DATABRICKS_SERVER_HOSTNAME") return agreeing(name, read(name), first.serverHostname, problems);
      if (first && name === "DATABRICKS_HTTP_PATH") return agreeing(name, read(name), first.httpPath, problems);
      return read(name);
    },
    sourcesBroken ? [] : problems,
  );
  const azureClientId = read("AZURE_CLIENT_ID");
  if (azureClientId && !GUID.test(azureClientId)) {
    problems.push(`AZURE_CLIENT_ID must be the client ID (a GUID) of a user-assigned managed identity; got '${azureClientId}'.`);
  }

  const filter: AuditFilter = {
    workspaceIds: readWorkspaceIds(read("DATABRICKS_WORKSPACE_IDS"), "DATABRICKS_WORKSPACE_IDS", problems),
    services: readServices(read("AUDIT_SERVICES"), "AUDIT_SERVICES", problems),
    includeAccountLevel: readBoolean(read("AUDIT_INCLUDE_ACCOUNT_LEVEL"), true, "AUDIT_INCLUDE_ACCOUNT_LEVEL", problems),
  };
  const sourceConfigs = databricks ? configureSources(sources, databricks, filter, read, problems) : [];

  const storage = readStorage(read, problems, needs.storage);
  const logsIngestion = readLogsIngestion(read, problems);
  const logAnalyticsQuery = readLogAnalyticsQuery(read, problems);
  const schedule = read("EXPORT_SCHEDULE") ?? DEFAULTS.schedule;
  if (!isNcrontab(schedule)) {
    problems.push(
      `EXPORT_SCHEDULE must be an NCRONTAB expression with six fields (second minute hour day month weekday), e.g. '${DEFAULTS.schedule}'; got '${schedule}'.`,
    );
  }

  const settleDelayMs = readDuration(read("EXPORT_SETTLE_DELAY"), DEFAULTS.settleDelay, "EXPORT_SETTLE_DELAY", problems, { max: 24 * 3600_000 });
  const lateHorizonMs = readDuration(read("EXPORT_LATE_HORIZON"), DEFAULTS.lateHorizon, "EXPORT_LATE_HORIZON", problems, { max: 30 * 86_400_000 });
  const timeBudgetMs = readDuration(read("EXPORT_TIME_BUDGET"), DEFAULTS.timeBudget, "EXPORT_TIME_BUDGET", problems, { min: 10_000, max: 24 * 3600_000 });
  const functionTimeout = read("AzureFunctionsJobHost__functionTimeout") ?? needs.functionTimeout;
  checkBudgetFitsHost("EXPORT_TIME_BUDGET", timeBudgetMs, read("EXPORT_TIME_BUDGET") ?? DEFAULTS.timeBudget, functionTimeout, problems);
  const backfillTimeBudgetMs = readDuration(read("BACKFILL_TIME_BUDGET"), DEFAULTS.backfillTimeBudget, "BACKFILL_TIME_BUDGET", problems, {
    min: 10_000,
    max: 24 * 3600_000,
  });
  checkBudgetFitsHost("BACKFILL_TIME_BUDGET", backfillTimeBudgetMs, read("BACKFILL_TIME_BUDGET") ?? DEFAULTS.backfillTimeBudget, functionTimeout, problems);
  const queryTimeoutMs = readDuration(read("EXPORT_QUERY_TIMEOUT"), DEFAULTS.queryTimeout, "EXPORT_QUERY_TIMEOUT", problems, {
    min: 10_000,
    max: 6 * 3600_000,
  });
  const start = readStart(read("EXPORT_START"), problems);
  const lookback = read("CHECK_WORKSPACE_LOOKBACK_HOURS");
  const workspaceLookbackHours = lookback === undefined ? DEFAULTS.workspaceLookbackHours : Number(lookback);
  if (!Number.isInteger(workspaceLookbackHours) || workspaceLookbackHours < 1 || workspaceLookbackHours > 24 * 365) {
    problems.push(`CHECK_WORKSPACE_LOOKBACK_HOURS must be a whole number of hours from 1 to 8760; got '${lookback}'.`);
  }

  const redaction = readRedaction(read("AUDIT_REDACT_PARAMS"), problems);
  const concurrencyText = read("EXPORT_SOURCE_CONCURRENCY");
  const sourceConcurrency = concurrencyText === undefined ? undefined : Number(concurrencyText);
  if (sourceConcurrency !== undefined && (!Number.isInteger(sourceConcurrency) || sourceConcurrency < 1 || sourceConcurrency > MAX_SOURCES)) {
    problems.push(`EXPORT_SOURCE_CONCURRENCY must be a whole number of sources exported at once, from 1 to ${MAX_SOURCES}; got '${concurrencyText}'.`);
  }

  const cloudFetch = readCloudFetch(read("DATABRICKS_CLOUD_FETCH"), problems);

  if (problems.length > 0) throw new ConfigError(problems);
  return {
    sources: sourceConfigs,
    databricks: sourceConfigs[0]!.databricks,
    ...(azureClientId ? { azureClientId } : {}),
    filter: sourceConfigs[0]!.filter,
    ...(storage ? { storage } : {}),
    ...(logsIngestion ? { logsIngestion } : {}),
    ...(logAnalyticsQuery ? { logAnalyticsQuery } : {}),
    schedule,
    redaction,
    start,
    settleDelayMs,
    lateHorizonMs,
    timeBudgetMs,
    backfillTimeBudgetMs,
    queryTimeoutMs,
    workspaceLookbackHours,
    ...(sourceConcurrency !== undefined ? { sourceConcurrency } : {}),
    ...(cloudFetch !== undefined ? { cloudFetch } : {}),
  };
}

/** DATABRICKS_CLOUD_FETCH: `auto` (or unset) leaves the choice to the instance's memory. */
function readCloudFetch(text: string | undefined, problems: string[]): boolean | undefined {
  if (text === undefined || text === "auto") return undefined;
  if (text === "true" || text === "false") return text === "true";
  problems.push(`DATABRICKS_CLOUD_FETCH must be auto (CloudFetch links on instances of 2,048 MB or more, inline pages below), true or false; got '${text}'.`);
  return undefined;
}

/** Time a run needs after its budget to finish the calls and writes in flight and release its lock. */
export const BUDGET_MARGIN_MS = 2 * 60_000;

/**
 * A run stops starting work at EXPORT_TIME_BUDGET and then finishes what is in flight: the
 * budget plus that margin must fit in the host's functionTimeout, or the host kills the run
 * mid-batch every time (it still loses nothing, but never gets anywhere).
 */
function checkBudgetFitsHost(setting: string, budgetMs: number, budgetText: string, functionTimeout: string | undefined, problems: string[]): void {
  if (functionTimeout === undefined) return;
  const hostMs = parseHostTimeout(functionTimeout);
  if (hostMs === undefined) {
    problems.push(`The Functions host's functionTimeout must look like '00:30:00' (hh:mm:ss) or be -1 for none; got '${functionTimeout}'.`);
    return;
  }
  if (hostMs === Infinity || budgetMs + BUDGET_MARGIN_MS <= hostMs) return;
  problems.push(
    `${setting} ('${budgetText}') must leave ${formatDuration(BUDGET_MARGIN_MS)} to finish in-flight work inside the host's functionTimeout (${functionTimeout}, from host.json or AzureFunctionsJobHost__functionTimeout): ` +
      `set it to at most ${formatDuration(Math.max(0, hostMs - BUDGET_MARGIN_MS))}, or raise functionTimeout.`,
  );
}

/** host.json's functionTimeout: 'hh:mm:ss' or 'd.hh:mm:ss'; -1 means none. Milliseconds, Infinity for none. */
export function parseHostTimeout(text: string): number | undefined {
  const value = text.trim();
  if (value === "-1") return Infinity;
  const match = /^(?:(\d+)\.)?(\d{1,2}):(\d{2}):(\d{2})(?:\.\d+)?$/.exec(value);
  if (!match) return undefined;
  const [, days = "0", hours, minutes, seconds] = match;
  return ((Number(days) * 24 + Number(hours)) * 3600 + Number(minutes) * 60 + Number(seconds)) * 1000;
}

const GUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
/** service_name values are identifiers with dashes (capsule8-alerts-dataplane); nothing that could end a SQL literal. */
const SERVICE_NAME = /^[A-Za-z][A-Za-z0-9_-]{0,99}$/;
const CONTAINER = /^(?=.{3,63}$)[a-z0-9]+(?:-[a-z0-9]+)*$/;
const RULE_ID = /^dcr-[0-9a-f]{32}$/i;
export const STREAM = /^(Custom|Microsoft)-[A-Za-z0-9_]{1,200}$/;
const PARAM_KEY = /^[A-Za-z0-9_.$@:-]{1,200}$/;

function readDatabricks(read: (n: string) => string | undefined, problems: string[]): DatabricksSettings | undefined {
  const rawHost = read("DATABRICKS_SERVER_HOSTNAME");
  const httpPath = read("DATABRICKS_HTTP_PATH");
  let hostPart: { host: string; port: number } | undefined;
  if (!rawHost) {
    problems.push(
      "DATABRICKS_SERVER_HOSTNAME is required: the SQL warehouse's server hostname from its Connection details, e.g. 'adb-1234567890123456.7.azuredatabricks.net'.",
    );
  } else {
    hostPart = parseServerHostname(rawHost);
    if (!hostPart) {
      problems.push(
        `DATABRICKS_SERVER_HOSTNAME must be a host name, optionally with ':port' (no 'https://', no path), e.g. 'adb-1234567890123456.7.azuredatabricks.net'; got '${rawHost}'.`,
      );
    }
  }
  if (!httpPath) {
    problems.push("DATABRICKS_HTTP_PATH is required: the warehouse's HTTP path from its Connection details, e.g. '/sql/1.0/warehouses/1234567890abcdef'.");
  } else if (!/^\/[A-Za-z0-9._~/-]+$/.test(httpPath)) {
    problems.push(`DATABRICKS_HTTP_PATH must be a path such as '/sql/1.0/warehouses/1234567890abcdef'; got '${httpPath}'.`);
  }
  const scope = read("DATABRICKS_SCOPE") ?? DATABRICKS_DEFAULT_SCOPE;
  if (!/^\S+\/\.default$/.test(scope)) {
    problems.push(`DATABRICKS_SCOPE must be an Entra ID scope ending in '/.default', e.g. '${DATABRICKS_DEFAULT_SCOPE}'; got '${scope}'.`);
  }
  const accessToken = read("DATABRICKS_ACCESS_TOKEN");
  if (!hostPart || !httpPath) return undefined;
  return { serverHostname: rawHost!, ...hostPart, httpPath, scope, ...(accessToken ? { accessToken } : {}) };
}

export function readWorkspaceIds(value: string | undefined, name: string, problems: string[]): string[] {
  if (!value) return [];
  const ids = splitList(value);
  const bad = ids.filter((id) => !WORKSPACE_ID.test(id));
  if (bad.length > 0) {
    problems.push(
      `${name} must be a comma-separated list of numeric workspace IDs (the number after 'adb-' or '?o=' in the workspace URL); ` +
        `account-level rows (workspace "0") are controlled by AUDIT_INCLUDE_ACCOUNT_LEVEL. Invalid: ${bad.map((b) => `'${b}'`).join(", ")}.`,
    );
  }
  return [...new Set(ids)];
}

export function readServices(value: string | undefined, name: string, problems: string[]): readonly string[] | "all" {
  if (!value) return DEFAULT_AUDIT_SERVICES;
  if (value === "*") return "all";
  const services = splitList(value);
  const bad = services.filter((s) => !SERVICE_NAME.test(s));
  if (bad.length > 0 || services.length === 0) {
    problems.push(
      `${name} must be a comma-separated list of service_name values (letters, digits, '-' and '_', case-sensitive, e.g. 'accounts,clusters,jobs'), or '*' for every service. Invalid: ${bad.map((b) => `'${b}'`).join(", ") || "(empty)"}.`,
    );
  }
  return [...new Set(services)];
}

function readStorage(read: (n: string) => string | undefined, problems: string[], required: boolean): StorageSettings | undefined {
  const accountUrl = read("EXPORT_STORAGE_ACCOUNT_URL");
  const connectionString = read("EXPORT_STORAGE_CONNECTION_STRING");
  const container = read("EXPORT_CONTAINER") ?? DEFAULTS.container;
  if (!CONTAINER.test(container)) {
    problems.push(`EXPORT_CONTAINER must be a valid container name (3-63 lowercase letters, digits and single dashes); got '${container}'.`);
  }
  // Unset: state in the archive's container, as deployments before the write-once archive have it.
  const stateContainer = read("EXPORT_STATE_CONTAINER") ?? container;
  if (!CONTAINER.test(stateContainer)) {
    problems.push(
      `EXPORT_STATE_CONTAINER must be a valid container name (3-63 lowercase letters, digits and single dashes), or unset to keep the state in EXPORT_CONTAINER; got '${stateContainer}'.`,
    );
  }
  if (accountUrl && connectionString) {
    problems.push("Set only one of EXPORT_STORAGE_ACCOUNT_URL (managed identity, recommended) and EXPORT_STORAGE_CONNECTION_STRING (local runs, Azurite).");
    return undefined;
  }
  if (accountUrl) {
    if (!/^https:\/\/[^/\s]+(\/[^\s?#]*)?$/i.test(accountUrl)) {
      problems.push(
        `EXPORT_STORAGE_ACCOUNT_URL must be the blob endpoint URL, e.g. 'https://mystorage.blob.core.windows.net', without a SAS; got a value that is not an https URL.`,
      );
      return undefined;
    }
    return { kind: "accountUrl", accountUrl: accountUrl.replace(/\/+$/, ""), container, stateContainer };
  }
  if (connectionString) {
    if (!/(^|;)\s*(BlobEndpoint|AccountName)=/i.test(connectionString) && connectionString !== "UseDevelopmentStorage=true") {
      problems.push("EXPORT_STORAGE_CONNECTION_STRING is not a storage connection string (it has neither AccountName= nor BlobEndpoint=).");
      return undefined;
    }
    return { kind: "connectionString", connectionString, container, stateContainer };
  }
  if (required) {
    problems.push(
      "EXPORT_STORAGE_ACCOUNT_URL is required (e.g. 'https://mystorage.blob.core.windows.net', with the Storage Blob Data Contributor role for the app's identity), or EXPORT_STORAGE_CONNECTION_STRING for local runs.",
    );
  }
  return undefined;
}

function readLogsIngestion(read: (n: string) => string | undefined, problems: string[]): LogsIngestionSettings | undefined {
  const endpoint = read("LOGS_INGESTION_ENDPOINT");
  const ruleId = read("LOGS_INGESTION_RULE_ID");
  const streamName = read("LOGS_INGESTION_STREAM");
  const given = [endpoint, ruleId, streamName].filter(Boolean).length;
  if (given === 0) return undefined;
  if (given < 3) {
    const missing = [
      ["LOGS_INGESTION_ENDPOINT", endpoint],
      ["LOGS_INGESTION_RULE_ID", ruleId],
      ["LOGS_INGESTION_STREAM", streamName],
    ]
      .filter(([, v]) => !v)
      .map(([n]) => n);
    problems.push(
      `Log Analytics forwarding needs all three of LOGS_INGESTION_ENDPOINT, LOGS_INGESTION_RULE_ID and LOGS_INGESTION_STREAM (or none of them); missing: ${missing.join(", ")}.`,
    );
    return undefined;
  }
  let ok = true;
  if (!/^https:\/\/[^/\s?#]+\/?$/i.test(endpoint!)) {
    problems.push(
      `LOGS_INGESTION_ENDPOINT must be the https logs ingestion endpoint of the data collection endpoint or rule, e.g. 'https://my-dce-abcd.westeurope-1.ingest.monitor.azure.com'; got '${endpoint}'.`,
    );
    ok = false;
  }
  if (!RULE_ID.test(ruleId!)) {
    problems.push(
      `LOGS_INGESTION_RULE_ID must be the data collection rule's immutable ID ('dcr-' and 32 hex digits, shown as immutableId in the DCR's JSON view), not its resource ID; got '${ruleId}'.`,
    );
    ok = false;
  }
  if (!STREAM.test(streamName!)) {
    problems.push(`LOGS_INGESTION_STREAM must be a stream declared in the DCR, e.g. 'Custom-DatabricksAudit'; got '${streamName}'.`);
    ok = false;
  }
  return ok ? { endpoint: endpoint!.replace(/\/+$/, ""), ruleId: ruleId!, streamName: streamName! } : undefined;
}

function readLogAnalyticsQuery(read: (n: string) => string | undefined, problems: string[]): LogAnalyticsQuerySettings | undefined {
  const workspaceId = read("LOG_ANALYTICS_WORKSPACE_ID");
  const endpointText = read("LOG_ANALYTICS_QUERY_ENDPOINT");
  if (!workspaceId) {
    if (endpointText)
      problems.push("LOG_ANALYTICS_QUERY_ENDPOINT is set but LOG_ANALYTICS_WORKSPACE_ID is not: set the workspace ID (a GUID) as well, or neither.");
    return undefined;
  }
  let ok = true;
  if (!GUID.test(workspaceId)) {
    problems.push(
      `LOG_ANALYTICS_WORKSPACE_ID must be the Log Analytics workspace's ID (customer ID, a GUID shown as 'Workspace ID' on its Overview), not its resource ID or name; got '${workspaceId}'.`,
    );
    ok = false;
  }
  const endpoint = (endpointText ?? DEFAULT_LOG_ANALYTICS_QUERY_ENDPOINT).replace(/\/+$/, "");
  if (!/^https:\/\/[^/\s?#]+(?:\/[A-Za-z0-9._~-]+)*$/i.test(endpoint)) {
    problems.push(
      `LOG_ANALYTICS_QUERY_ENDPOINT must be the https base URL of the Logs Query API, e.g. '${DEFAULT_LOG_ANALYTICS_QUERY_ENDPOINT}' (no query string); got '${endpointText}'.`,
    );
    ok = false;
  }
  return ok ? { workspaceId: workspaceId.toLowerCase(), endpoint } : undefined;
}

function readBoolean(value: string | undefined, fallback: boolean, name: string, problems: string[]): boolean {
  if (value === undefined) return fallback;
  if (/^(true|1|yes)$/i.test(value)) return true;
  if (/^(false|0|no)$/i.test(value)) return false;
  problems.push(`${name} must be true or false; got '${value}'.`);
  return fallback;
}

function readDuration(value: string | undefined, fallback: string, name: string, problems: string[], limits: { min?: number; max?: number }): number {
  const text = value ?? fallback;
  const ms = parseIsoDuration(text);
  if (ms === undefined) {
    problems.push(`${name} must be an ISO-8601 duration such as 'PT10M', 'PT24H' or 'P2D'; got '${text}'.`);
    return parseIsoDuration(fallback)!;
  }
  if ((limits.min !== undefined && ms < limits.min) || (limits.max !== undefined && ms > limits.max)) {
    problems.push(`${name} must be between ${formatDuration(limits.min ?? 0)} and ${formatDuration(limits.max ?? Infinity)}; got '${text}'.`);
  }
  return ms;
}

function readStart(value: string | undefined, problems: string[]): ExportStart {
  const text = value ?? DEFAULTS.start;
  const ago = parseIsoDuration(text);
  if (ago !== undefined) {
    if (ago > 366 * 86_400_000) problems.push(`EXPORT_START reaches back more than the audit table's 365-day retention; got '${text}'.`);
    return { kind: "ago", ms: ago };
  }
  const us = parseTimestampMicros(text);
  if (us === undefined) {
    problems.push(`EXPORT_START must be an ISO timestamp (e.g. '2024-09-01T00:00:00Z') or a duration back from now (e.g. 'P7D'); got '${text}'.`);
    return { kind: "ago", ms: parseIsoDuration(DEFAULTS.start)! };
  }
  return { kind: "at", us };
}

function readRedaction(value: string | undefined, problems: string[]): RedactionRule[] {
  if (!value) return [];
  const rules: RedactionRule[] = [];
  for (const entry of splitList(value)) {
    const [key, action = "mask"] = entry.split("=").map((p) => p.trim());
    if (!key || !PARAM_KEY.test(key) || (action !== "mask" && action !== "drop")) {
      problems.push(
        `AUDIT_REDACT_PARAMS entries are request_params keys, each optionally '=mask' (default: value replaced) or '=drop' (key removed), e.g. 'commandText=drop,password'; invalid entry '${entry}'.`,
      );
      continue;
    }
    rules.push({ key, action });
  }
  return rules;
}

export function isNcrontab(value: string): boolean {
  const fields = value.trim().split(/\s+/);
  return fields.length === 6 && fields.every((f) => /^[\d*/,A-Za-z-]+$/.test(f));
}

function splitList(value: string): string[] {
  return value
    .split(",")
    .map((v) => v.trim())
    .filter((v) => v.length > 0);
}

/** Where a first run starts, given the clock. */
export function resolveStart(start: ExportStart, nowMs: number): number {
  return start.kind === "at" ? start.us : (nowMs - start.ms) * 1000;
}
