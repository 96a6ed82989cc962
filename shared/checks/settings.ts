import { loadConfig, type AppConfig, type ConfigNeeds, type Settings, type SourceConfig } from "../config";
import { ConfigError } from "../errors";
import type { CheckResult } from "./result";
import { namesSources } from "./sources";

// The configuration check: every setting problem at once, and which checks they stop.

/** Groups of settings; a check is skipped when a setting it relies on is invalid. */
export type Section = "databricks" | "identity" | "workspaces" | "lookback" | "storage" | "logsIngestion" | "logAnalyticsQuery" | "schedule";

export const SECTION_SETTINGS: Record<Section, readonly string[]> = {
  databricks: ["DATABRICKS_SERVER_HOSTNAME", "DATABRICKS_HTTP_PATH", "DATABRICKS_SCOPE", "DATABRICKS_ACCESS_TOKEN", "DATABRICKS_SOURCES"],
  identity: ["AZURE_CLIENT_ID"],
  workspaces: ["DATABRICKS_WORKSPACE_IDS"],
  lookback: ["CHECK_WORKSPACE_LOOKBACK_HOURS"],
  storage: ["EXPORT_STORAGE_ACCOUNT_URL", "EXPORT_STORAGE_CONNECTION_STRING", "EXPORT_CONTAINER"],
  logsIngestion: ["LOGS_INGESTION_ENDPOINT", "LOGS_INGESTION_RULE_ID", "LOGS_INGESTION_STREAM"],
  logAnalyticsQuery: ["LOG_ANALYTICS_WORKSPACE_ID", "LOG_ANALYTICS_QUERY_ENDPOINT"],
  schedule: ["EXPORT_SCHEDULE"],
};

export interface LoadedConfig {
  config?: AppConfig;
  problems: readonly string[];
  /** Setting names the problems mention. */
  badSettings: string[];
  broken: Set<Section>;
}

/** A problem of one DATABRICKS_SOURCES entry (loadConfig names the source and the field). */
const SOURCE_PROBLEM = /^DATABRICKS_SOURCES source '([^']+)': /;

const settingNames = (problems: readonly string[]): Set<string> => new Set(problems.flatMap((p) => p.match(/\b[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+\b/g) ?? []));

/**
 * loadConfig reports every problem at once but returns nothing when any is found. So that the
 * other checks still run where they can, load again without the settings the problems name
 * (optional ones fall back to their defaults; a missing warehouse gets a placeholder and its
 * checks are skipped). A problem of one DATABRICKS_SOURCES entry takes out that entry only:
 * the other sources are still checked.
 */
export function loadForChecks(settings: Settings, needs: ConfigNeeds): LoadedConfig {
  let problems: readonly string[];
  try {
    return { config: loadConfig(settings, needs), problems: [], badSettings: [], broken: new Set() };
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    problems = error.problems;
  }
  const { retry, lasting } = withoutBrokenSources(settings, needs, problems);
  const mentioned = settingNames(lasting);
  const badSettings = [...settingNames(problems)].filter((name) => Object.values(SECTION_SETTINGS).some((names) => names.includes(name)) || name in settings);
  const broken = new Set((Object.keys(SECTION_SETTINGS) as Section[]).filter((s) => SECTION_SETTINGS[s].some((n) => mentioned.has(n))));
  // A whole group goes: one of the three Logs Ingestion settings alone would be a new problem.
  for (const name of [...mentioned, ...[...broken].flatMap((s) => SECTION_SETTINGS[s])]) delete retry[name];
  if (!retry.DATABRICKS_SOURCES && (!retry.DATABRICKS_SERVER_HOSTNAME?.trim() || !retry.DATABRICKS_HTTP_PATH?.trim())) {
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
  return { ...(config ? { config } : {}), problems, badSettings, broken };
}

/**
 * The settings without the DATABRICKS_SOURCES entries that have problems of their own (as long
 * as one is left), and the problems that remain: those of the other settings. An entry that
 * fails validation makes loadConfig drop the whole list, so the rest is loaded again to see
 * what else is wrong.
 */
function withoutBrokenSources(
  settings: Settings,
  needs: ConfigNeeds,
  problems: readonly string[],
): { retry: Record<string, string | undefined>; lasting: readonly string[] } {
  const retry: Record<string, string | undefined> = { ...settings };
  const bad = new Set<string>();
  let lasting = problems;
  for (;;) {
    const named = lasting.flatMap((p) => SOURCE_PROBLEM.exec(p)?.[1] ?? []).filter((name) => !bad.has(name));
    if (named.length === 0) return { retry, lasting };
    for (const name of named) bad.add(name);
    const remaining = withoutSources(settings.DATABRICKS_SOURCES, bad);
    if (remaining === undefined) return { retry, lasting };
    retry.DATABRICKS_SOURCES = remaining;
    // The first source may be gone: the single-source settings would no longer agree with it.
    delete retry.DATABRICKS_SERVER_HOSTNAME;
    delete retry.DATABRICKS_HTTP_PATH;
    try {
      loadConfig(retry, needs);
      lasting = [];
    } catch (error) {
      if (!(error instanceof ConfigError)) throw error;
      lasting = error.problems;
    }
  }
}

/** DATABRICKS_SOURCES without the named entries; undefined when nothing would be left (or it cannot be read). */
function withoutSources(value: string | undefined, names: ReadonlySet<string>): string | undefined {
  try {
    const entries = JSON.parse(value ?? "") as unknown;
    if (!Array.isArray(entries)) return undefined;
    const kept = entries.filter((entry) => !names.has(String((entry as { name?: unknown } | null)?.name)));
    return kept.length > 0 ? JSON.stringify(kept) : undefined;
  } catch {
    return undefined;
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
  const identity = `Entra ID token (${config.azureClientId ? `user-assigned identity ${config.azureClientId}` : "default identity"})`;
  const warehouse = ({ databricks }: SourceConfig): string => `${databricks.serverHostname}${databricks.httpPath}`;
  const auth = ({ databricks }: SourceConfig): string => (databricks.accessToken ? "personal access token" : identity);
  const workspaces = ({ filter }: SourceConfig): string =>
    filter.workspaceIds.length > 0 ? `workspaces ${filter.workspaceIds.join(", ")}` : "all workspaces the warehouse sees";
  const only = config.sources[0]!;
  const parts = [
    ...(namesSources(config.sources.map((s) => s.name))
      ? [
          `${config.sources.length} source${config.sources.length === 1 ? "" : "s"}: ${config.sources.map((s) => `'${s.name}' (warehouse ${warehouse(s)}, ${auth(s)}, ${workspaces(s)})`).join(", ")}`,
        ]
      : [`warehouse ${warehouse(only)}`, `auth: ${auth(only)}`, workspaces(only)]),
    config.storage
      ? `storage ${config.storage.kind === "accountUrl" ? config.storage.accountUrl : "(connection string)"}, container ${config.storage.container}${
          config.storage.stateContainer === config.storage.container ? "" : ` (state in ${config.storage.stateContainer})`
        }`
      : "no storage",
    config.logsIngestion ? `Log Analytics stream ${config.logsIngestion.streamName}` : "Log Analytics off",
    `schedule '${config.schedule}'`,
  ];
  return { name: "configuration", status: "PASS", detail: `Settings valid: ${parts.join("; ")}.`, remediation: "" };
}
