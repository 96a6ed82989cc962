import { randomUUID } from "node:crypto";
import type { AccessToken, TokenCredential } from "@azure/identity";
import type { ContainerClient } from "@azure/storage-blob";
import { AUDIT_COLUMNS } from "./auditEvent";
import { AUDIT_TABLE, SCHEMA_PROBE_SQL, workspaceActivityQuery } from "./auditQueries";
import { BlobExportStore, STATE_BLOB } from "./blobStore";
import { createAzureCredential, createContainerClient } from "./composition";
import { DEFAULTS, loadConfig, type AppConfig, type ConfigNeeds, type Settings } from "./config";
import { Warehouse, warehouseErrorKind } from "./databricks";
import { SYSTEM_TABLE_GRANTS_REMEDIATION } from "./remediation";
import { ConfigError, describeError, ensureError, redactSecrets, statusOf } from "./errors";
import type { ExportState } from "./export/state";
import { LOGS_INGESTION_SCOPE, LogsIngestionSink } from "./logsIngestion";
import { assessLogAnalyticsLag } from "./checks/logAnalyticsLag";
import { detectionsStateCheck } from "./detections/health";

/**
 * The prerequisite checks behind the `checkPrerequisites` HTTP function and `dbx-audit check`.
 * Every check answers PASS, WARN or FAIL with a detail and a precise remediation; a check whose
 * dependency failed is reported as skipped, never left out. The whole run keeps to a time
 * budget (each network step has its own timeout as well), because an HTTP answer must come
 * within 230 s and a stopped warehouse can take minutes to start.
 */

export type CheckStatus = "PASS" | "WARN" | "FAIL";

export const CHECK_NAMES = [
  "configuration",
  "azure_authentication",
  "warehouse_connectivity",
  "system_table_access",
  "workspace_filter",
  "audit_table_columns",
  "blob_container",
  "logs_ingestion",
  "export_freshness",
  "log_analytics_lag",
  "detections_state",
] as const;

export type CheckName = (typeof CHECK_NAMES)[number];

export interface CheckResult {
  name: CheckName;
  status: CheckStatus;
  detail: string;
  /** What to do about a WARN or FAIL; empty on PASS. */
  remediation: string;
}

export interface CheckReport {
  /** The worst status of all checks. */
  status: CheckStatus;
  checkedAt: string;
  durationMs: number;
  checks: CheckResult[];
}

export interface CheckOptions {
  /** Wall clock for the lookback window and freshness (default Date.now); the time budget always uses the real clock. */
  now?: () => number;
  /** Total time for every check together; default 60 s. */
  budgetMs?: number;
  /** Overrides CHECK_WORKSPACE_LOOKBACK_HOURS. */
  lookbackHours?: number;
  /** What the configuration must provide: the HTTP function needs storage (the export does), the CLI check does not. */
  needs?: ConfigNeeds;
  /** Azure SDK retries per token request (default 1: a health check answers fast rather than waiting out back-offs). */
  maxRetries?: number;
}

export const DEFAULT_CHECK_BUDGET_MS = 60_000;
const TOKEN_TIMEOUT_MS = 15_000;
const CONNECT_TIMEOUT_MS = 20_000;
const BLOB_STEP_TIMEOUT_MS = 10_000;
const INGESTION_TIMEOUT_MS = 20_000;
/** Freshness: PASS up to this many schedule intervals since the last success, WARN up to the next, FAIL beyond. */
export const FRESH_INTERVALS = 2;
export const STALE_INTERVALS = 6;

const STORAGE_SCOPE = "https://storage.azure.com/.default";

export async function runChecks(settings: Settings, env: Settings, options: CheckOptions = {}): Promise<CheckReport> {
  const now = options.now ?? Date.now;
  const startedMs = now();
  const budget = new Budget(options.budgetMs ?? DEFAULT_CHECK_BUDGET_MS);
  const scrub = secretScrubber(settings, env);
  const results = new Map<CheckName, CheckResult>();
  const record = (result: CheckResult): CheckResult => {
    const clean = { ...result, detail: scrub(result.detail), remediation: scrub(result.remediation) };
    results.set(result.name, clean);
    return clean;
  };

  const loaded = loadForChecks(settings, options.needs ?? { storage: false });
  record(configurationCheck(loaded));
  const { config, broken } = loaded;
  const configSkip = (name: CheckName, sections: Section[]): CheckResult | undefined => {
    const bad = sections.filter((s) => broken.has(s));
    if (!config || bad.length > 0) {
      const names = bad.flatMap((s) => loaded.badSettings.filter((n) => SECTION_SETTINGS[s].includes(n)));
      return skipped(name, "configuration", "FAIL", names.length > 0 ? names.join(", ") : undefined);
    }
    return undefined;
  };

  const lookbackHours = options.lookbackHours ?? config?.workspaceLookbackHours ?? DEFAULTS.workspaceLookbackHours;
  let credential: TokenCredential | undefined;
  const getCredential = (): TokenCredential => (credential ??= createAzureCredential(config!, env, { maxRetries: options.maxRetries ?? 1 }));

  // Azure authentication first: every other check that needs a token depends on it.
  const auth = configSkip("azure_authentication", ["identity"]);
  const tokens = new Map<string, TokenOutcome>();
  if (auth) {
    record(auth);
  } else {
    const scopes = neededScopes(config!, broken);
    const outcome = await azureAuthenticationCheck(scopes, getCredential, budget, tokens);
    record(outcome);
    for (const token of tokens.values()) if (token.ok) scrub.add(token.token);
  }
  const authFailedFor = (scope: string): boolean => {
    const token = tokens.get(scope);
    return results.get("azure_authentication")?.status === "FAIL" && (token === undefined || !token.ok);
  };

  const databricksChain = async (): Promise<void> => {
    const skip = configSkip("warehouse_connectivity", ["databricks"]);
    if (skip) {
      record(skip);
    } else if (!config!.databricks.accessToken && authFailedFor(config!.databricks.scope)) {
      record(skipped("warehouse_connectivity", "azure_authentication", "FAIL"));
    } else {
      const token = tokens.get(config!.databricks.scope);
      const principal = token?.ok ? token.principal : undefined;
      await warehouseChecks(config!, getCredential, budget, { lookbackHours, nowMs: now(), broken, ...(principal ? { principal } : {}) }, record);
    }
    for (const [name, dependency] of [
      ["system_table_access", "warehouse_connectivity"],
      ["audit_table_columns", "system_table_access"],
      ["workspace_filter", "system_table_access"],
    ] as const) {
      if (!results.has(name)) record(skippedAfter(name, results.get(dependency)!));
    }
  };

  const blobChain = async (): Promise<void> => {
    let container: ContainerClient | undefined;
    const skip = configSkip("blob_container", ["storage"]);
    if (skip) {
      record(skip);
    } else if (!config!.storage) {
      record({
        name: "blob_container",
        status: "WARN",
        detail: "No storage configured: the export has nowhere to write its archive and state.",
        remediation:
          "Set EXPORT_STORAGE_ACCOUNT_URL to the blob endpoint (e.g. 'https://mystorage.blob.core.windows.net') and give the app's identity the Storage Blob Data Contributor role on the account or the container (or EXPORT_STORAGE_CONNECTION_STRING for local runs).",
      });
    } else if (config!.storage.kind === "accountUrl" && authFailedFor(STORAGE_SCOPE)) {
      record(skipped("blob_container", "azure_authentication", "FAIL"));
    } else {
      container = createContainerClient(config!.storage, config!.storage.kind === "accountUrl" ? getCredential() : noCredential);
      record(await blobContainerCheck(container, config!.storage.container, budget));
    }
    const blob = results.get("blob_container")!;
    if (!container || blob.status === "FAIL") {
      const blobSkip = (name: CheckName) => skipped(name, "blob_container", blob.status === "FAIL" ? "FAIL" : "WARN");
      record(broken.has("schedule") ? configSkip("export_freshness", ["schedule"])! : blobSkip("export_freshness"));
      record(blobSkip("log_analytics_lag"));
    } else {
      const [freshness, lag] = await exportStateChecks(new BlobExportStore(container), config!, broken.has("schedule"), now(), budget);
      record(freshness ?? configSkip("export_freshness", ["schedule"])!);
      record(lag);
    }
    const blobUsable = container && blob.status !== "FAIL";
    record(
      blobUsable
        ? await detectionsStateCheck(container!, settings, now())
        : skipped("detections_state", "blob_container", blob.status === "FAIL" ? "FAIL" : "WARN"),
    );
  };

  const logsChain = async (): Promise<void> => {
    const skip = configSkip("logs_ingestion", ["logsIngestion"]);
    if (skip) record(skip);
    else if (!config!.logsIngestion) {
      record({
        name: "logs_ingestion",
        status: "PASS",
        detail:
          "Log Analytics forwarding is off (LOGS_INGESTION_ENDPOINT, LOGS_INGESTION_RULE_ID and LOGS_INGESTION_STREAM are not set); only the Blob archive is written.",
        remediation: "",
      });
    } else if (authFailedFor(LOGS_INGESTION_SCOPE)) record(skipped("logs_ingestion", "azure_authentication", "FAIL"));
    else record(await logsIngestionCheck(config!, getCredential(), budget));
  };

  await Promise.all([databricksChain(), blobChain(), logsChain()].map((chain) => chain.catch(() => undefined)));

  // Anything a chain could not record (an unexpected throw) is still reported, never omitted.
  const checks = CHECK_NAMES.map(
    (name) =>
      results.get(name) ??
      record({ name, status: "FAIL", detail: "The check did not complete.", remediation: "Run the check again; if it persists, look at the function's logs." }),
  );
  return {
    status: worstStatus(checks.map((c) => c.status)),
    checkedAt: new Date(startedMs).toISOString(),
    durationMs: Math.round(budget.elapsed()),
    checks,
  };
}

export function worstStatus(statuses: readonly CheckStatus[]): CheckStatus {
  if (statuses.includes("FAIL")) return "FAIL";
  if (statuses.includes("WARN")) return "WARN";
  return "PASS";
}

// ---------------------------------------------------------------------------------------------
// configuration

/** Groups of settings; a check is skipped when a setting it relies on is invalid. */
type Section = "databricks" | "identity" | "workspaces" | "lookback" | "storage" | "logsIngestion" | "schedule";

const SECTION_SETTINGS: Record<Section, readonly string[]> = {
  databricks: ["DATABRICKS_SERVER_HOSTNAME", "DATABRICKS_HTTP_PATH", "DATABRICKS_SCOPE", "DATABRICKS_ACCESS_TOKEN"],
  identity: ["AZURE_CLIENT_ID"],
  workspaces: ["DATABRICKS_WORKSPACE_IDS"],
  lookback: ["CHECK_WORKSPACE_LOOKBACK_HOURS"],
  storage: ["EXPORT_STORAGE_ACCOUNT_URL", "EXPORT_STORAGE_CONNECTION_STRING", "EXPORT_CONTAINER"],
  logsIngestion: ["LOGS_INGESTION_ENDPOINT", "LOGS_INGESTION_RULE_ID", "LOGS_INGESTION_STREAM"],
  schedule: ["EXPORT_SCHEDULE"],
};

interface LoadedConfig {
  config?: AppConfig;
  problems: readonly string[];
  /** Setting names the problems mention. */
  badSettings: string[];
  broken: Set<Section>;
}

/**
 * loadConfig reports every problem at once but returns nothing when any is found. So that the
 * other checks still run where they can, load again without the settings the problems name
 * (optional ones fall back to their defaults; a missing warehouse gets a placeholder and its
 * checks are skipped).
 */
function loadForChecks(settings: Settings, needs: ConfigNeeds): LoadedConfig {
  try {
    return { config: loadConfig(settings, needs), problems: [], badSettings: [], broken: new Set() };
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    const mentioned = new Set(error.problems.flatMap((p) => p.match(/\b[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+\b/g) ?? []));
    const badSettings = [...mentioned].filter((name) => Object.values(SECTION_SETTINGS).some((names) => names.includes(name)) || name in settings);
    const broken = new Set((Object.keys(SECTION_SETTINGS) as Section[]).filter((s) => SECTION_SETTINGS[s].some((n) => mentioned.has(n))));
    const retry: Record<string, string | undefined> = { ...settings };
    // A whole group goes: one of the three Logs Ingestion settings alone would be a new problem.
    for (const name of [...mentioned, ...[...broken].flatMap((s) => SECTION_SETTINGS[s])]) delete retry[name];
    if (!retry.DATABRICKS_SERVER_HOSTNAME?.trim() || !retry.DATABRICKS_HTTP_PATH?.trim()) {
      broken.add("databricks");
      retry.DATABRICKS_SERVER_HOSTNAME = "placeholder.invalid";
      retry.DATABRICKS_HTTP_PATH = "/sql/1.0/warehouses/placeholder";
    }
    let config: AppConfig | undefined;
    try {
      config = loadConfig(retry, { storage: false });
    } catch {
      config = undefined;
    }
    return { ...(config ? { config } : {}), problems: error.problems, badSettings, broken };
  }
}

function configurationCheck(loaded: LoadedConfig): CheckResult {
  if (loaded.problems.length > 0) {
    return {
      name: "configuration",
      status: "FAIL",
      detail: `${loaded.problems.length} setting problem${loaded.problems.length === 1 ? "" : "s"}: ${loaded.problems.join(" ")}`,
      remediation:
        `Set or correct ${loaded.badSettings.length > 0 ? loaded.badSettings.join(", ") : "the settings named above"} ` +
        "(Function App > Settings > Environment variables, or the CLI's flags); each problem says what is expected.",
    };
  }
  const config = loaded.config!;
  const parts = [
    `warehouse ${config.databricks.serverHostname}${config.databricks.httpPath}`,
    config.databricks.accessToken
      ? "auth: personal access token"
      : `auth: Entra ID token (${config.azureClientId ? `user-assigned identity ${config.azureClientId}` : "default identity"})`,
    config.filter.workspaceIds.length > 0 ? `workspaces ${config.filter.workspaceIds.join(", ")}` : "all workspaces the warehouse sees",
    config.storage
      ? `storage ${config.storage.kind === "accountUrl" ? config.storage.accountUrl : "(connection string)"}, container ${config.storage.container}`
      : "no storage",
    config.logsIngestion ? `Log Analytics stream ${config.logsIngestion.streamName}` : "Log Analytics off",
    `schedule '${config.schedule}'`,
  ];
  return { name: "configuration", status: "PASS", detail: `Settings valid: ${parts.join("; ")}.`, remediation: "" };
}

// ---------------------------------------------------------------------------------------------
// azure_authentication

type TokenOutcome = { ok: true; token: string; principal?: string } | { ok: false; detail: string };

function neededScopes(config: AppConfig, broken: Set<Section>): { scope: string; purpose: string }[] {
  const scopes: { scope: string; purpose: string }[] = [];
  if (!broken.has("databricks") && !config.databricks.accessToken) scopes.push({ scope: config.databricks.scope, purpose: "Databricks" });
  if (!broken.has("storage") && config.storage?.kind === "accountUrl") scopes.push({ scope: STORAGE_SCOPE, purpose: "Blob Storage" });
  if (!broken.has("logsIngestion") && config.logsIngestion) scopes.push({ scope: LOGS_INGESTION_SCOPE, purpose: "Logs Ingestion" });
  return scopes;
}

async function azureAuthenticationCheck(
  scopes: { scope: string; purpose: string }[],
  getCredential: () => TokenCredential,
  budget: Budget,
  tokens: Map<string, TokenOutcome>,
): Promise<CheckResult> {
  if (scopes.length === 0) {
    return {
      name: "azure_authentication",
      status: "PASS",
      detail: "No Entra ID token is needed: the warehouse uses a personal access token, storage a connection string, and Log Analytics is off.",
      remediation: "",
    };
  }
  let credential: TokenCredential;
  try {
    credential = getCredential();
  } catch (error) {
    return {
      name: "azure_authentication",
      status: "FAIL",
      detail: `Could not create the Azure credential: ${describeError(error)}.`,
      remediation: IDENTITY_REMEDIATION,
    };
  }
  await Promise.all(
    scopes.map(async ({ scope }) => {
      const ms = budget.stepMs(TOKEN_TIMEOUT_MS);
      const outcome = await timed(() => credential.getToken(scope, { abortSignal: AbortSignal.timeout(ms) }), ms);
      tokens.set(scope, tokenOutcome(outcome, ms));
    }),
  );
  const lines = scopes.map(({ scope, purpose }) => {
    const token = tokens.get(scope)!;
    if (!token.ok) return `${purpose} (${scope}): FAILED, ${token.detail}`;
    return `${purpose} (${scope}): token obtained${token.principal ? ` for ${token.principal}` : ""}`;
  });
  const failed = scopes.filter(({ scope }) => !tokens.get(scope)!.ok);
  if (failed.length === 0) return { name: "azure_authentication", status: "PASS", detail: `${lines.join("; ")}.`, remediation: "" };
  const databricksFailed = failed.some((f) => f.purpose === "Databricks");
  return {
    name: "azure_authentication",
    status: "FAIL",
    detail: `${lines.join("; ")}.`,
    remediation:
      IDENTITY_REMEDIATION +
      (databricksFailed
        ? " For the Databricks token: the scope is the Azure Databricks application's ('2ff814a6-3304-4ab8-85cb-cd0e6f879c1d/.default'); a sovereign cloud may need another one (DATABRICKS_SCOPE / --scope). Or use a personal access token (DATABRICKS_ACCESS_TOKEN / --access-token)."
        : ""),
  };
}

const IDENTITY_REMEDIATION =
  "In Azure: enable the Function App's managed identity (system-assigned, or set AZURE_CLIENT_ID to the client ID of the attached user-assigned identity). " +
  "From a shell: sign in with 'az login' to the tenant of the workspace, or pass --managed-identity-client-id on a VM with that identity.";

function tokenOutcome(outcome: Outcome<AccessToken | null>, ms: number): TokenOutcome {
  if (outcome.kind === "timeout") return { ok: false, detail: `no token within ${seconds(ms)}` };
  if (outcome.kind === "failed") return { ok: false, detail: describeError(outcome.error) };
  if (!outcome.value) return { ok: false, detail: "the credential returned no token" };
  const principal = tokenPrincipal(outcome.value.token);
  return { ok: true, token: outcome.value.token, ...(principal ? { principal } : {}) };
}

/** Who the token is for (application or object ID): the principal to grant things to. Never the token itself. */
function tokenPrincipal(token: string): string | undefined {
  try {
    const claims = JSON.parse(Buffer.from(token.split(".")[1] ?? "", "base64url").toString("utf8")) as Record<string, unknown>;
    const pick = (key: string): string | undefined => {
      const value = claims[key];
      return typeof value === "string" ? value : undefined;
    };
    const appId = pick("appid") ?? pick("azp");
    if (appId) return `application ID ${appId}`;
    const upn = pick("upn") ?? pick("unique_name");
    if (upn) return upn;
    const oid = pick("oid");
    return oid ? `object ID ${oid}` : undefined;
  } catch {
    return undefined;
  }
}

// ---------------------------------------------------------------------------------------------
// warehouse_connectivity, system_table_access, audit_table_columns, workspace_filter

const STARTING_REMEDIATION =
  "Retry in a few minutes: a stopped SQL warehouse starts on the first query and can take several minutes. " +
  "If it keeps happening, check the warehouse's state in Databricks (SQL Warehouses), its auto-stop setting, or use a serverless warehouse (starts in seconds).";

async function warehouseChecks(
  config: AppConfig,
  getCredential: () => TokenCredential,
  budget: Budget,
  context: { lookbackHours: number; nowMs: number; broken: Set<Section>; principal?: string },
  record: (result: CheckResult) => CheckResult,
): Promise<void> {
  const settings = config.databricks;
  const target = `https://${settings.serverHostname}${settings.httpPath}`;
  const connectMs = budget.stepMs(CONNECT_TIMEOUT_MS);
  const connected = await timed(
    () => Warehouse.connect(settings, settings.accessToken ? undefined : getCredential(), { retryMaxAttempts: 2, socketTimeoutMs: Math.max(connectMs, 5_000) }),
    connectMs,
    (late) => void late.close(),
  );
  if (connected.kind === "timeout") {
    record({
      name: "warehouse_connectivity",
      status: "WARN",
      detail: `No session from ${target} within ${seconds(connectMs)}: the warehouse may be starting, or the network drops the connection.`,
      remediation: `${STARTING_REMEDIATION} If it persists, check that this host can reach ${settings.serverHostname} on port ${settings.port} (private endpoint, firewall, IP access list).`,
    });
    return;
  }
  if (connected.kind === "failed") {
    record(warehouseFailure("warehouse_connectivity", connected.error, config, target, context.principal));
    return;
  }
  const warehouse = connected.value;
  try {
    const selectMs = budget.stepMs(Infinity);
    const probe = await timed(() => warehouse.all({ sql: "SELECT 1 AS ok", params: {} }), selectMs);
    if (probe.kind === "timeout") {
      record({
        name: "warehouse_connectivity",
        status: "WARN",
        detail: `The warehouse is starting: a session opened at ${target}, but SELECT 1 was still pending after ${seconds(selectMs)}. Retry in a few minutes.`,
        remediation: STARTING_REMEDIATION,
      });
      return;
    }
    if (probe.kind === "failed") {
      record(warehouseFailure("warehouse_connectivity", probe.error, config, target, context.principal));
      return;
    }
    record({ name: "warehouse_connectivity", status: "PASS", detail: `Session opened and SELECT 1 answered by ${target}.`, remediation: "" });

    const schemaMs = budget.stepMs(Infinity);
    const schema = await timed(() => warehouse.columns(SCHEMA_PROBE_SQL), schemaMs);
    if (schema.kind === "timeout") {
      record(slowQuery("system_table_access", schemaMs));
      return;
    }
    if (schema.kind === "failed") {
      record(warehouseFailure("system_table_access", schema.error, config, target, context.principal));
      return;
    }
    record({ name: "system_table_access", status: "PASS", detail: `${AUDIT_TABLE} is readable by this identity.`, remediation: "" });
    record(auditColumnsCheck(schema.value.map((c) => c.name)));

    const badFilter = (["workspaces", "lookback"] as const).filter((s) => context.broken.has(s));
    if (badFilter.length > 0) {
      record(skipped("workspace_filter", "configuration", "FAIL", badFilter.flatMap((s) => SECTION_SETTINGS[s]).join(", ")));
      return;
    }
    record(await workspaceFilterCheck(warehouse, config.filter.workspaceIds, context.lookbackHours, context.nowMs, budget));
  } finally {
    await timed(() => warehouse.close(), Math.max(100, Math.floor(Math.min(2_000, budget.leftMs()))));
  }
}

function warehouseFailure(name: CheckName, error: unknown, config: AppConfig, target: string, principal?: string): CheckResult {
  const settings = config.databricks;
  const tokenFor = principal ? ` (the Entra ID token used here is for ${principal})` : "";
  const detail = describeError(error);
  const text = `${ensureError(error).message} ${(error as { response?: { errorMessage?: string } }).response?.errorMessage ?? ""}`;
  switch (warehouseErrorKind(error)) {
    case "auth":
      return {
        name,
        status: "FAIL",
        detail: `The SQL warehouse at ${target} refused the credentials (${detail}).`,
        remediation: settings.accessToken
          ? "The personal access token (DATABRICKS_ACCESS_TOKEN / --access-token) is invalid, expired or from another workspace: create a new one (User settings > Developer > Access tokens) and update the setting (a Key Vault reference in Azure)."
          : `Add the app's managed identity${tokenFor} to the workspace as a service principal (Settings > Identity and access > Service principals, by its application ID) ` +
            "with the 'Databricks SQL access' entitlement and CAN USE on the warehouse. In a sovereign cloud, set DATABRICKS_SCOPE / --scope to that cloud's Azure Databricks scope.",
      };
    case "permission":
      if (name === "system_table_access") {
        return {
          name,
          status: "FAIL",
          detail: `INSUFFICIENT_PERMISSIONS: the identity cannot read ${AUDIT_TABLE} (${detail}).`,
          remediation: `${SYSTEM_TABLE_GRANTS_REMEDIATION}${tokenFor}.`,
        };
      }
      return {
        name,
        status: "FAIL",
        detail: `The identity may not use the SQL warehouse at ${target} (${detail}).`,
        remediation:
          "A workspace admin or the warehouse's owner must give the identity CAN USE on the SQL warehouse (SQL Warehouses > the warehouse > Permissions).",
      };
    case "unreachable":
      return {
        name,
        status: "FAIL",
        detail: `Cannot reach the SQL warehouse at ${target} (${detail}).`,
        remediation:
          `Check DATABRICKS_SERVER_HOSTNAME / --server-hostname ('${settings.serverHostname}': the warehouse's Connection details) and that this host can reach it on port ${settings.port} ` +
          "(DNS, private endpoint, firewall, the workspace's IP access list).",
      };
    case "sql":
      if (name === "system_table_access" && /TABLE_OR_VIEW_NOT_FOUND|SCHEMA_NOT_FOUND|CATALOG_NOT_FOUND|not found/i.test(text)) {
        return {
          name,
          status: "FAIL",
          detail: `${AUDIT_TABLE} does not exist for this warehouse (${detail}).`,
          remediation:
            "The workspace must be attached to a Unity Catalog metastore, and the 'access' system schema must be enabled for it by an account admin ('databricks system-schemas enable <metastore-id> access').",
        };
      }
      return {
        name,
        status: "FAIL",
        detail: `The SQL warehouse at ${target} rejected the query (${detail}).`,
        remediation: "Check that DATABRICKS_HTTP_PATH points at a Databricks SQL warehouse ('/sql/1.0/warehouses/<id>').",
      };
    default: {
      const status = (error as { statusCode?: number }).statusCode;
      return {
        name,
        status: "FAIL",
        detail: `The SQL warehouse call to ${target} failed (${detail}).`,
        remediation:
          status === 404
            ? `No warehouse at that HTTP path: check DATABRICKS_HTTP_PATH / --http-path ('${settings.httpPath}') against the warehouse's Connection details.`
            : "Check DATABRICKS_SERVER_HOSTNAME and DATABRICKS_HTTP_PATH against the warehouse's Connection details, and that the warehouse exists and is not deleted.",
      };
    }
  }
}

function slowQuery(name: CheckName, ms: number): CheckResult {
  return {
    name,
    status: "WARN",
    detail: `The query was still running after ${seconds(ms)} (the check's time budget ran out).`,
    remediation: "Retry in a few minutes; if it stays slow, the warehouse may be overloaded or too small (see its query history).",
  };
}

export function auditColumnsCheck(liveColumns: readonly string[]): CheckResult {
  const live = new Set(liveColumns.map((c) => c.toLowerCase()));
  const missing = AUDIT_COLUMNS.filter((c) => !live.has(c));
  const known = new Set<string>(AUDIT_COLUMNS);
  const extra = liveColumns.filter((c) => !known.has(c.toLowerCase()));
  if (missing.length > 0) {
    return {
      name: "audit_table_columns",
      status: "FAIL",
      detail: `${AUDIT_TABLE} lacks column${missing.length === 1 ? "" : "s"} the exporter reads: ${missing.join(", ")} (it has: ${liveColumns.join(", ") || "none"}).`,
      remediation: `The warehouse serves a different table than Databricks' system table, or its schema changed: the exporter needs ${AUDIT_COLUMNS.join(", ")}. Check that the workspace uses the Unity Catalog system table; if Databricks changed it, update the exporter.`,
    };
  }
  return {
    name: "audit_table_columns",
    status: "PASS",
    detail:
      `All ${AUDIT_COLUMNS.length} columns the exporter reads are present.` +
      (extra.length > 0 ? ` Newer columns, archived as they are (Log Analytics keeps its declared columns): ${extra.join(", ")}.` : ""),
    remediation: "",
  };
}

async function workspaceFilterCheck(
  warehouse: Warehouse,
  workspaceIds: readonly string[],
  lookbackHours: number,
  nowMs: number,
  budget: Budget,
): Promise<CheckResult> {
  if (workspaceIds.length === 0) {
    return {
      name: "workspace_filter",
      status: "PASS",
      detail: "No workspace filter (DATABRICKS_WORKSPACE_IDS is empty): every workspace this warehouse sees is exported.",
      remediation: "",
    };
  }
  const toUs = nowMs * 1000;
  const fromUs = (nowMs - lookbackHours * 3_600_000) * 1000;
  const ms = budget.stepMs(Infinity);
  const counted = await timed(() => warehouse.all(workspaceActivityQuery(workspaceIds, fromUs, toUs)), ms);
  if (counted.kind === "timeout") return slowQuery("workspace_filter", ms);
  if (counted.kind === "failed") {
    return {
      name: "workspace_filter",
      status: "FAIL",
      detail: `Counting recent events per workspace failed (${describeError(counted.error)}).`,
      remediation: "Run the check again; if it persists, look at the warehouse's query history for the failed query.",
    };
  }
  const counts = new Map(counted.value.map((row) => [String(row.workspace_id), Number(row.event_count)]));
  const summary = workspaceIds.map((id) => `${id}: ${counts.get(id) ?? 0}`).join(", ");
  const quiet = workspaceIds.filter((id) => !(counts.get(id) ?? 0));
  if (quiet.length === 0) {
    return { name: "workspace_filter", status: "PASS", detail: `Events in the last ${lookbackHours} h per workspace: ${summary}.`, remediation: "" };
  }
  return {
    name: "workspace_filter",
    status: "WARN",
    detail: `No events in the last ${lookbackHours} h for workspace${quiet.length === 1 ? "" : "s"} ${quiet.join(", ")} (per workspace: ${summary}).`,
    remediation:
      "Check each ID in DATABRICKS_WORKSPACE_IDS / --workspace-id (the number after 'adb-' or '?o=' in the workspace URL). " +
      "Workspace events are regional: a warehouse sees only the workspaces of its own region, so use a warehouse in the same region. " +
      "If the workspace is just quiet, widen the window with CHECK_WORKSPACE_LOOKBACK_HOURS / --workspace-check-lookback-hours.",
  };
}

// ---------------------------------------------------------------------------------------------
// blob_container

const noCredential: TokenCredential = {
  getToken: () => Promise.reject(new Error("storage uses a connection string: no token needed")),
};

async function blobContainerCheck(container: ContainerClient, name: string, budget: Budget): Promise<CheckResult> {
  const where = `container '${name}' at ${container.accountName ? `account ${container.accountName}` : "the storage account"}`;
  const step = async <T>(work: (signal: AbortSignal) => Promise<T>): Promise<Outcome<T>> => {
    const ms = budget.stepMs(BLOB_STEP_TIMEOUT_MS);
    return timed(() => work(AbortSignal.timeout(ms)), ms);
  };
  let created = false;
  let publicAccess: string | undefined;
  const properties = await step((abortSignal) => container.getProperties({ abortSignal }));
  if (properties.kind === "failed" && statusOf(properties.error) === 404) {
    const create = await step((abortSignal) => container.createIfNotExists({ abortSignal }));
    if (create.kind !== "done") return blobFailure(create, where, "create the container");
    created = true;
  } else if (properties.kind !== "done") {
    return blobFailure(properties, where, "read the container's properties");
  } else {
    publicAccess = properties.value.blobPublicAccess;
  }

  // Never the state blob itself: a probe of our own, written only if absent, then deleted.
  const probeName = `_state/prerequisite-check-${randomUUID()}.probe`;
  if (probeName === STATE_BLOB) throw new Error("unreachable: the probe blob must not be the state blob");
  const body = "dbx-audit prerequisite check: safe to delete";
  const write = await step((abortSignal) =>
    container.getBlockBlobClient(probeName).upload(body, Buffer.byteLength(body), { abortSignal, conditions: { ifNoneMatch: "*" } }),
  );
  if (write.kind !== "done") return blobFailure(write, where, "write a probe blob under _state/");
  const remove = await step((abortSignal) => container.deleteBlob(probeName, { abortSignal }));
  if (remove.kind !== "done") return blobFailure(remove, where, `delete the probe blob ${probeName} (delete it by hand)`);

  const done = `${where} ${created ? "was missing and was created (private)" : "is reachable"}; a probe blob under _state/ was written and deleted.`;
  if (publicAccess) {
    return {
      name: "blob_container",
      status: "WARN",
      detail: `${done} But the container allows anonymous read access ('${publicAccess}'), and exported audit data is sensitive.`,
      remediation: `Set the container's public access level to private (az storage container set-permission --name ${name} --public-access off), and disable 'Allow Blob anonymous access' on the storage account.`,
    };
  }
  return { name: "blob_container", status: "PASS", detail: done, remediation: "" };
}

function blobFailure(outcome: Outcome<unknown>, where: string, action: string): CheckResult {
  if (outcome.kind === "timeout") {
    return {
      name: "blob_container",
      status: "FAIL",
      detail: `No answer from ${where} within the time allowed when trying to ${action}.`,
      remediation:
        "Check the storage endpoint (EXPORT_STORAGE_ACCOUNT_URL) and that this host can reach it (DNS, private endpoint, the storage account's firewall and network rules).",
    };
  }
  const error = outcome.kind === "failed" ? outcome.error : new Error("unknown");
  const status = statusOf(error);
  const code = (error as { code?: string }).code ?? "";
  const detail = `Could not ${action} in ${where} (${describeError(error)}).`;
  let remediation: string;
  if (code === "KeyBasedAuthenticationNotPermitted") {
    remediation =
      "Shared keys are disabled on the storage account (as recommended): use EXPORT_STORAGE_ACCOUNT_URL with the app's managed identity instead of a connection string.";
  } else if (code === "AuthorizationFailure" || code === "AuthorizationSourceIPMismatch") {
    remediation =
      "The storage account's firewall or network rules block this host: allow the Function App's subnet or private endpoint (Networking on the storage account).";
  } else if (status === 403 && code !== "AuthenticationFailed") {
    remediation =
      "Assign the app's identity the Storage Blob Data Contributor role on the storage account or on the container (it reads and writes the archive and the _state/ blobs); role assignments can take a few minutes to apply.";
  } else if (status === 401 || code === "AuthenticationFailed") {
    remediation =
      "The storage account refused the credentials: with EXPORT_STORAGE_CONNECTION_STRING check the account key; with EXPORT_STORAGE_ACCOUNT_URL check the identity belongs to the account's tenant.";
  } else if (status === undefined) {
    remediation =
      "Check the storage endpoint (EXPORT_STORAGE_ACCOUNT_URL or the connection string's BlobEndpoint) and that this host can reach it (DNS, private endpoint, firewall).";
  } else {
    remediation = "Check the storage account and container settings (EXPORT_STORAGE_ACCOUNT_URL, EXPORT_CONTAINER); see TROUBLESHOOTING.md.";
  }
  return { name: "blob_container", status: "FAIL", detail, remediation };
}

// ---------------------------------------------------------------------------------------------
// logs_ingestion

async function logsIngestionCheck(config: AppConfig, credential: TokenCredential, budget: Budget): Promise<CheckResult> {
  const settings = config.logsIngestion!;
  const target = `stream '${settings.streamName}' of rule ${settings.ruleId} at ${settings.endpoint}`;
  const ms = budget.stepMs(INGESTION_TIMEOUT_MS);
  const probe = await timed(() => new LogsIngestionSink(settings, credential, { maxRetries: 0 }).check(), ms);
  if (probe.kind === "timeout") {
    return {
      name: "logs_ingestion",
      status: "FAIL",
      detail: `No answer from ${target} within ${seconds(ms)}.`,
      remediation:
        "Check LOGS_INGESTION_ENDPOINT (the data collection endpoint's or rule's logs ingestion URL) and that this host can reach it (private link, firewall).",
    };
  }
  if (probe.kind === "failed") {
    return {
      name: "logs_ingestion",
      status: "FAIL",
      detail: `Could not call ${target} (${describeFetchError(probe.error)}).`,
      remediation:
        "Check LOGS_INGESTION_ENDPOINT (e.g. 'https://my-dce-abcd.westeurope-1.ingest.monitor.azure.com') and that this host can reach it (DNS, private link, firewall).",
    };
  }
  const { status, message } = probe.value;
  const said = message ? `: ${message}` : "";
  if (status === 204 || status === 200) {
    return {
      name: "logs_ingestion",
      status: "PASS",
      detail: `${target} accepted an empty upload (HTTP ${status}): token, rule and stream are valid and the identity may ingest. No rows were added.`,
      remediation: "",
    };
  }
  if (status === 403) {
    return {
      name: "logs_ingestion",
      status: "FAIL",
      detail: `${target} refused the identity (HTTP 403${said}).`,
      remediation: `Assign the app's identity the Monitoring Metrics Publisher role on the data collection rule (scope: the DCR whose immutable ID is ${settings.ruleId}); role assignments can take up to 30 minutes to apply.`,
    };
  }
  if (status === 401) {
    return {
      name: "logs_ingestion",
      status: "FAIL",
      detail: `${target} did not accept the token (HTTP 401${said}).`,
      remediation:
        "The token must be for https://monitor.azure.com from the DCR's tenant: check the identity (AZURE_CLIENT_ID) and the tenant of the data collection rule.",
    };
  }
  if (status === 404) {
    return {
      name: "logs_ingestion",
      status: "FAIL",
      detail: `${target} was not found (HTTP 404${said}).`,
      remediation:
        "LOGS_INGESTION_RULE_ID must be the DCR's immutableId ('dcr-...', from its JSON view) and LOGS_INGESTION_STREAM a stream declared in it; LOGS_INGESTION_ENDPOINT must be the endpoint that DCR is associated with.",
    };
  }
  if (status === 429 || status >= 500) {
    return {
      name: "logs_ingestion",
      status: "WARN",
      detail: `${target} is busy or unavailable (HTTP ${status}${said}).`,
      remediation:
        "Transient on the service side: retry in a few minutes. Persistent 429s mean the DCR's limits (12,000 requests or 2 GB per minute) are reached.",
    };
  }
  return {
    name: "logs_ingestion",
    status: "FAIL",
    detail: `${target} answered HTTP ${status}${said}.`,
    remediation: "Check LOGS_INGESTION_ENDPOINT, LOGS_INGESTION_RULE_ID and LOGS_INGESTION_STREAM against the data collection rule; see TROUBLESHOOTING.md.",
  };
}

/** fetch hides the network error in `cause`. */
function describeFetchError(error: unknown): string {
  const cause = (error as { cause?: unknown }).cause;
  return cause ? `${describeError(error)}: ${describeError(cause)}` : describeError(error);
}

// ---------------------------------------------------------------------------------------------
// export_freshness

/** export_freshness (undefined when the schedule setting is broken) and log_analytics_lag, from one read of the state. */
async function exportStateChecks(
  store: BlobExportStore,
  config: AppConfig,
  scheduleBroken: boolean,
  nowMs: number,
  budget: Budget,
): Promise<[CheckResult | undefined, CheckResult]> {
  const ms = budget.stepMs(BLOB_STEP_TIMEOUT_MS);
  const read = await timed(() => store.readState(), ms);
  const both = (result: Omit<CheckResult, "name">): [CheckResult | undefined, CheckResult] => [
    scheduleBroken ? undefined : { name: "export_freshness", ...result },
    { name: "log_analytics_lag", ...result },
  ];
  if (read.kind === "timeout") {
    return both({ status: "WARN", detail: `Reading ${STATE_BLOB} took longer than ${seconds(ms)}.`, remediation: "Retry in a few minutes." });
  }
  if (read.kind === "failed") {
    return both({
      status: "FAIL",
      detail: `Could not read the export state ${STATE_BLOB}: ${describeError(read.error)}`,
      remediation: "Restore the state blob from a blob version or snapshot, or delete it to restart from EXPORT_START (see TROUBLESHOOTING.md).",
    });
  }
  const state = read.value?.state ?? null;
  const listed = await timed(() => store.listDeadLetters(), budget.stepMs(BLOB_STEP_TIMEOUT_MS));
  const deadLetters = listed.kind === "done" ? listed.value : [];
  return [
    scheduleBroken ? undefined : { name: "export_freshness", ...assessFreshness(state, config.schedule, nowMs) },
    { name: "log_analytics_lag", ...assessLogAnalyticsLag(state, config.logsIngestion !== undefined, deadLetters) },
  ];
}

/**
 * How fresh the export is, against its schedule: PASS when the last success is within
 * FRESH_INTERVALS schedule intervals, WARN up to STALE_INTERVALS (or when nothing ran yet),
 * FAIL beyond. Mentions a held or abandoned lock and the last error.
 */
export function assessFreshness(state: ExportState | null, schedule: string, nowMs: number): Omit<CheckResult, "name"> {
  const intervalMs = scheduleIntervalMs(schedule);
  const every = `schedule '${schedule}' runs at least every ${formatAge(intervalMs)}`;
  if (!state) {
    return {
      status: "WARN",
      detail: `No export has run yet (no ${STATE_BLOB}); ${every}.`,
      remediation:
        "The exportAuditLogs timer writes the state on its first run. If the app was deployed more than one interval ago, check that the function app is running and its timer fires (Application Insights, the function's Invocations), or run 'dbx-audit run' with the same settings.",
    };
  }
  const notes: string[] = [];
  if (state.lock) {
    const until = new Date(state.lock.expiresAtMs).toISOString();
    notes.push(
      state.lock.expiresAtMs > nowMs
        ? `a run (${state.lock.runId}) holds the export lock until ${until}`
        : `a run (${state.lock.runId}) stopped without releasing its lock (expired ${until}); the next run takes it over`,
    );
  }
  const successMs = state.lastSuccessAt ? Date.parse(state.lastSuccessAt) : NaN;
  const failureMs = state.lastFailureAt ? Date.parse(state.lastFailureAt) : NaN;
  if (state.lastError && (Number.isNaN(successMs) || !(failureMs <= successMs))) {
    notes.push(`last failure${state.lastFailureAt ? ` at ${state.lastFailureAt}` : ""}: ${redactSecrets(state.lastError)}`);
  }
  const tail = notes.length > 0 ? ` Note: ${notes.join("; ")}.` : "";
  const lookAtRuns =
    "Look at the exportAuditLogs invocations and their errors (Application Insights), fix what they report (run 'dbx-audit check' for the prerequisites), then let the timer catch up or run 'dbx-audit run --until-caught-up'.";
  if (Number.isNaN(successMs)) {
    return {
      status: "WARN",
      detail: `No export has succeeded yet${state.lastRunAt ? ` (last run started ${state.lastRunAt})` : ""}; ${every}.${tail}`,
      remediation: lookAtRuns,
    };
  }
  const ageMs = Math.max(0, nowMs - successMs);
  const detail = `Last successful export ${state.lastSuccessAt} (${formatAge(ageMs)} ago); ${every}.${tail}`;
  if (ageMs <= FRESH_INTERVALS * intervalMs) return { status: "PASS", detail, remediation: "" };
  const status: CheckStatus = ageMs <= STALE_INTERVALS * intervalMs ? "WARN" : "FAIL";
  return {
    status,
    detail: `${detail} That is more than ${status === "WARN" ? FRESH_INTERVALS : STALE_INTERVALS} intervals.`,
    remediation: lookAtRuns,
  };
}

const HOURLY_MS = 3_600_000;
const DAY_MINUTES = 24 * 60;

/**
 * The longest gap between two runs of an NCRONTAB schedule (`second minute hour day month
 * weekday`), from its minute and hour fields; hourly when they cannot be read. Day, month and
 * weekday restrictions are not taken into account.
 */
export function scheduleIntervalMs(schedule: string): number {
  const fields = schedule.trim().split(/\s+/);
  if (fields.length !== 6) return HOURLY_MS;
  const minutes = expandField(fields[1]!, 0, 59);
  const hours = expandField(fields[2]!, 0, 23);
  if (!minutes || !hours || minutes.length === 0 || hours.length === 0) return HOURLY_MS;
  const times = hours.flatMap((h) => minutes.map((m) => h * 60 + m)).sort((a, b) => a - b);
  let longest = times[0]! + DAY_MINUTES - times[times.length - 1]!;
  for (let i = 1; i < times.length; i++) longest = Math.max(longest, times[i]! - times[i - 1]!);
  return longest * 60_000;
}

/** The values of one cron field (`*`, `*\/n`, `a`, `a-b`, `a-b/n`, `a/n`, lists); undefined when unreadable. */
function expandField(field: string, min: number, max: number): number[] | undefined {
  const values = new Set<number>();
  for (const part of field.split(",")) {
    const match = /^(\*|(\d+)(?:-(\d+))?)(?:\/(\d+))?$/.exec(part);
    if (!match) return undefined;
    const step = match[4] === undefined ? 1 : Number(match[4]);
    const from = match[1] === "*" ? min : Number(match[2]);
    const to = match[1] === "*" || (match[3] === undefined && match[4] !== undefined) ? max : match[3] === undefined ? from : Number(match[3]);
    if (step < 1 || from < min || to > max || from > to) return undefined;
    for (let v = from; v <= to; v += step) values.add(v);
  }
  return [...values];
}

export function formatAge(ms: number): string {
  if (ms < 60_000) return `${Math.max(0, Math.round(ms / 1000))} s`;
  const minutes = Math.round(ms / 60_000);
  if (minutes < 120) return `${minutes} min`;
  const hours = ms / HOURLY_MS;
  if (hours < 48) return `${Math.round(hours * 10) / 10} h`;
  return `${Math.round((hours / 24) * 10) / 10} days`;
}

// ---------------------------------------------------------------------------------------------
// helpers

/** Skipped because `dependency` did not pass; a dependency that was itself skipped passes its reason on (the root cause). */
function skippedAfter(name: CheckName, dependency: CheckResult): CheckResult {
  if (dependency.detail.startsWith("skipped:")) return { ...dependency, name };
  return skipped(name, dependency.name, dependency.status === "FAIL" ? "FAIL" : "WARN");
}

function skipped(name: CheckName, dependency: CheckName, status: "WARN" | "FAIL", settings?: string): CheckResult {
  const because =
    dependency === "configuration"
      ? `configuration failed${settings ? ` (${settings})` : ""}`
      : `${dependency} ${status === "FAIL" ? "failed" : "did not pass"}`;
  return {
    name,
    status,
    detail: `skipped: ${because}.`,
    remediation:
      status === "FAIL"
        ? `Fix ${dependency} first (see its remediation), then run the check again.`
        : `Once ${dependency} passes (see its remediation), run the check again.`,
  };
}

type Outcome<T> = { kind: "done"; value: T } | { kind: "failed"; error: unknown } | { kind: "timeout" };

/**
 * Runs work with a deadline. On timeout the work is left to finish on its own (its late
 * result handed to `onLate`, e.g. to close a connection) and never throws unhandled.
 */
async function timed<T>(work: () => Promise<T>, ms: number, onLate?: (value: T) => void): Promise<Outcome<T>> {
  let timer: NodeJS.Timeout | undefined;
  let timedOut = false;
  const running = Promise.resolve().then(work);
  const deadline = new Promise<Outcome<T>>((resolve) => {
    timer = setTimeout(
      () => {
        timedOut = true;
        resolve({ kind: "timeout" });
      },
      Math.max(0, ms),
    );
  });
  running.then(
    (value) => {
      if (timedOut) onLate?.(value);
    },
    () => undefined,
  );
  try {
    return await Promise.race([
      running.then(
        (value): Outcome<T> => ({ kind: "done", value }),
        (error: unknown): Outcome<T> => ({ kind: "failed", error }),
      ),
      deadline,
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** The run's time budget, on the process's monotonic clock. */
class Budget {
  private readonly started = performance.now();
  /** Kept back at the end for closing connections and answering. */
  private readonly reserveMs: number;

  constructor(private readonly totalMs: number) {
    this.reserveMs = Math.min(2_000, totalMs / 10);
  }

  elapsed(): number {
    return performance.now() - this.started;
  }

  leftMs(): number {
    return this.totalMs - this.elapsed();
  }

  /** Time for one step: its own cap, or what is left of the budget, whichever is less. */
  stepMs(capMs: number): number {
    return Math.max(0, Math.floor(Math.min(capMs, this.totalMs - this.reserveMs - this.elapsed())));
  }
}

function seconds(ms: number): string {
  return `${Math.round(ms / 100) / 10} s`;
}

/**
 * Masks what redactSecrets recognises by shape, plus the exact secret values this run knows
 * (the access token, the connection string and its key, the identity header, tokens obtained).
 */
function secretScrubber(settings: Settings, env: Settings): ((text: string) => string) & { add(secret: string): void } {
  const secrets = new Set<string>();
  const add = (value: string | undefined): void => {
    const text = value?.trim();
    if (text && text.length >= 8) secrets.add(text);
  };
  for (const source of [settings, env]) {
    add(source.DATABRICKS_ACCESS_TOKEN);
    add(source.IDENTITY_HEADER);
    add(source.MSI_SECRET);
    add(source.AZURE_CLIENT_SECRET);
    const connection = source.EXPORT_STORAGE_CONNECTION_STRING;
    add(connection);
    for (const match of connection?.matchAll(/(?:AccountKey|SharedAccessSignature)=([^;]+)/gi) ?? []) add(match[1]);
  }
  const scrub = (text: string): string => {
    let out = text;
    for (const secret of [...secrets].sort((a, b) => b.length - a.length)) out = out.split(secret).join("***");
    return redactSecrets(out);
  };
  return Object.assign(scrub, { add });
}
