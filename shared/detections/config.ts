import { ConfigError } from "../errors";
import { isNcrontab, loadConfig, readWorkspaceIds, STREAM, type AppConfig, type ConfigNeeds, type LogsIngestionSettings, type Settings } from "../config";

// The detections' settings (the runDetections timer and `dbx-audit detect`): their own on top of the app's.

export const DETECTIONS_DEFAULTS = {
  /** Hourly, ten minutes after the export's default. */
  schedule: "0 15 * * * *",
} as const;

export interface DetectionsConfig {
  app: AppConfig;
  schedule: string;
  /** DETECTIONS_WORKSPACE_IDS; empty: every workspace (DATABRICKS_WORKSPACE_IDS and AUDIT_SERVICES do not apply). */
  workspaceIds: readonly string[];
  /** DETECTIONS_CONFIG: the overrides file's blob name in the export container (a path for the CLI). */
  overrides?: string;
  /** Where alerts go in Log Analytics: the audit stream's endpoint and rule, LOGS_INGESTION_ALERTS_STREAM's stream. */
  alertsIngestion?: LogsIngestionSettings;
}

/**
 * The app settings plus the detections' own, validated together: one ConfigError lists every
 * problem of both. Pure, like loadConfig.
 */
export function loadDetectionsConfig(settings: Settings, needs: ConfigNeeds = { storage: true }): DetectionsConfig {
  const problems: string[] = [];
  let app: AppConfig | undefined;
  try {
    app = loadConfig(settings, needs);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    problems.push(...error.problems);
  }
  const read = (name: string): string | undefined => settings[name]?.trim() || undefined;
  const schedule = read("DETECTIONS_SCHEDULE") ?? DETECTIONS_DEFAULTS.schedule;
  if (!isNcrontab(schedule)) {
    problems.push(
      `DETECTIONS_SCHEDULE must be an NCRONTAB expression with six fields (second minute hour day month weekday), e.g. '${DETECTIONS_DEFAULTS.schedule}'; got '${schedule}'.`,
    );
  }
  const workspaceIds = readWorkspaceIds(read("DETECTIONS_WORKSPACE_IDS"), "DETECTIONS_WORKSPACE_IDS", problems);
  const overrides = read("DETECTIONS_CONFIG");
  if (overrides !== undefined && (overrides.length > 1024 || [...overrides].some((c) => c < " "))) {
    problems.push("DETECTIONS_CONFIG must be the overrides file's blob name in the export container (e.g. 'config/detections.yaml'), at most 1024 characters.");
  }
  const alertsStream = read("LOGS_INGESTION_ALERTS_STREAM");
  let alertsIngestion: LogsIngestionSettings | undefined;
  if (alertsStream !== undefined) {
    if (!STREAM.test(alertsStream)) {
      problems.push(`LOGS_INGESTION_ALERTS_STREAM must be a stream declared in the DCR, e.g. 'Custom-DatabricksAuditAlerts'; got '${alertsStream}'.`);
    } else if (!read("LOGS_INGESTION_ENDPOINT") || !read("LOGS_INGESTION_RULE_ID")) {
      problems.push(
        "LOGS_INGESTION_ALERTS_STREAM needs LOGS_INGESTION_ENDPOINT and LOGS_INGESTION_RULE_ID (the alerts go through the same endpoint and rule as the audit rows).",
      );
    } else if (app?.logsIngestion) {
      alertsIngestion = { endpoint: app.logsIngestion.endpoint, ruleId: app.logsIngestion.ruleId, streamName: alertsStream };
    }
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return {
    app: app!,
    schedule,
    workspaceIds,
    ...(overrides !== undefined ? { overrides } : {}),
    ...(alertsIngestion ? { alertsIngestion } : {}),
  };
}
