import { loadConfig, type AppConfig, type ConfigNeeds, type Settings } from "../config";
import { ConfigError } from "../errors";
import type { CheckResult } from "./result";

// The configuration check: every setting problem at once, and which checks they stop.

/** Groups of settings; a check is skipped when a setting it relies on is invalid. */
export type Section = "databricks" | "identity" | "workspaces" | "lookback" | "storage" | "logsIngestion" | "schedule";

export const SECTION_SETTINGS: Record<Section, readonly string[]> = {
  databricks: ["DATABRICKS_SERVER_HOSTNAME", "DATABRICKS_HTTP_PATH", "DATABRICKS_SCOPE", "DATABRICKS_ACCESS_TOKEN"],
  identity: ["AZURE_CLIENT_ID"],
  workspaces: ["DATABRICKS_WORKSPACE_IDS"],
  lookback: ["CHECK_WORKSPACE_LOOKBACK_HOURS"],
  storage: ["EXPORT_STORAGE_ACCOUNT_URL", "EXPORT_STORAGE_CONNECTION_STRING", "EXPORT_CONTAINER"],
  logsIngestion: ["LOGS_INGESTION_ENDPOINT", "LOGS_INGESTION_RULE_ID", "LOGS_INGESTION_STREAM"],
  schedule: ["EXPORT_SCHEDULE"],
};

export interface LoadedConfig {
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
export function loadForChecks(settings: Settings, needs: ConfigNeeds): LoadedConfig {
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

export function configurationCheck(loaded: LoadedConfig): CheckResult {
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
