import type { Command } from "commander";
import { BlobExportStore } from "../shared/blobStore";
import { BackfillStore } from "../shared/backfill/store";
import { createAzureCredential, createContainerClients } from "../shared/composition";
import { loadConfig, type AppConfig } from "../shared/config";
import { ConfigError } from "../shared/errors";
import { LogAnalyticsQuery } from "../shared/logAnalyticsQuery";
import type { ReconciliationReport } from "../shared/reconcile/compare";
import { HOUR_MS } from "../shared/reconcile/compare";
import { RESEND_QUIET_MS, resendMissing } from "../shared/reconcile/resend";
import { LogsIngestionSink } from "../shared/logsIngestion";
import { DEFAULT_RECONCILE_WINDOW_MS, INGESTION_LATENCY_MS, reconcile } from "../shared/reconcile/run";
import { parseTimestampMicros } from "../shared/timestamps";
import { EXIT, fail } from "./exit";

interface ReconcileFlags {
  since?: string;
  until?: string;
  json?: boolean;
  resend?: boolean;
}

/**
 * `dbx-audit reconcile`: per hour, the events in the Blob archive against the rows Log
 * Analytics holds (by EventId). Exit 0 when they agree, 4 when a difference was found.
 */
export function registerReconcileCommand(program: Command): void {
  program
    .command("reconcile")
    .description(
      "Compare, per hour, the events in the Blob archive with the rows Log Analytics holds (by EventId): missing rows with their likely cause, duplicates, rows the archive does not know. Exit 0 when they agree, 4 when they differ.",
    )
    .option("--since <timestamp>", "window start, included (ISO-8601, e.g. 2026-01-01T00:00:00Z); default 24 hours before --until")
    .option("--until <timestamp>", `window end, excluded (ISO-8601); default ${INGESTION_LATENCY_MS / 60_000} minutes ago (rows still being ingested)`)
    .option("--resend", "send the events Log Analytics lost after accepting them (dcr_transform, wrong_stream_or_table) again from the archive, once")
    .option("--json", "print the report as JSON")
    .action(async (flags: ReconcileFlags) => {
      try {
        const nowMs = Date.now();
        const { config, fromMs, toMs } = readReconcileArguments(flags, nowMs);
        const credential = createAzureCredential(config, process.env);
        const containers = createContainerClients(config.storage!, credential);
        const store = new BlobExportStore(containers.archive, containers.state);
        const backfillDays = await new BackfillStore(containers.archive, containers.state).daysOf(fromMs, toMs);
        const report = await reconcile(store, new LogAnalyticsQuery(config.logAnalyticsQuery!, credential), { fromMs, toMs, nowMs, backfillDays });
        const resent = flags.resend ? await resendMissing(store, new LogsIngestionSink(config.logsIngestion!, credential), report, nowMs) : undefined;
        process.stdout.write(flags.json ? `${JSON.stringify(resent ? { ...report, resent } : report, null, 2)}\n` : formatReconciliation(report));
        if (resent && !flags.json) {
          process.stdout.write(
            `Re-sent from the archive: ${resent.accepted} accepted, ${resent.stillRefused} refused again${resent.remaining.length ? ` (left in ${resent.remaining.join(", ")} for 'dbx-audit redrive')` : ""}, ${resent.recentlyResent} left alone (re-sent less than ${RESEND_QUIET_MS / HOUR_MS} hours ago). Run reconcile again in a few minutes to see them arrive.\n`,
          );
        }
        process.exitCode = report.status === "clean" ? 0 : EXIT.differences;
      } catch (error) {
        fail(error);
      }
    });
}

/** Every problem with the flags and settings at once, before anything is read or queried. */
function readReconcileArguments(flags: ReconcileFlags, nowMs: number): { config: AppConfig; fromMs: number; toMs: number } {
  const problems: string[] = [];
  let config: AppConfig | undefined;
  try {
    config = loadConfig(process.env);
    if (!config.logAnalyticsQuery)
      problems.push("LOG_ANALYTICS_WORKSPACE_ID is required to reconcile: the Log Analytics workspace ID (a GUID) that holds DatabricksAudit_CL.");
    if (flags.resend && !config.logsIngestion)
      problems.push("--resend needs LOGS_INGESTION_ENDPOINT, LOGS_INGESTION_RULE_ID and LOGS_INGESTION_STREAM: it sends through the Logs Ingestion API.");
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    problems.push(...error.problems);
  }
  const untilUs = flags.until === undefined ? (nowMs - INGESTION_LATENCY_MS) * 1000 : parseTimestampMicros(flags.until);
  if (untilUs === undefined) problems.push(`--until must be an ISO-8601 timestamp such as 2026-01-02T00:00:00Z; got '${flags.until}'.`);
  const sinceUs = flags.since === undefined ? (untilUs ?? 0) - DEFAULT_RECONCILE_WINDOW_MS * 1000 : parseTimestampMicros(flags.since);
  if (sinceUs === undefined) problems.push(`--since must be an ISO-8601 timestamp such as 2026-01-01T00:00:00Z; got '${flags.since}'.`);
  if (sinceUs !== undefined && untilUs !== undefined && untilUs <= sinceUs)
    problems.push(`--until (${flags.until ?? "default"}) must be after --since (${flags.since ?? "default"}): the window is [since, until).`);
  if (problems.length > 0 || !config) throw new ConfigError(problems);
  return { config, fromMs: Math.floor(sinceUs! / 1000), toMs: Math.floor(untilUs! / 1000) };
}

/** One line per hour with a difference, the totals, then what each kind of difference means. */
export function formatReconciliation(report: ReconciliationReport): string {
  const { totals } = report;
  const lines = [`Reconciled ${report.from} .. ${report.to}: ${totals.archived} archived event(s) over ${totals.hours} hour(s).`];
  for (const hour of report.hours) {
    const parts = [
      ...hour.missing.map((group) => `${group.count} missing (${group.cause}): ${group.eventIds.slice(0, 5).join(", ")}${group.count > 5 ? ", ..." : ""}`),
      ...(hour.duplicateRows > 0
        ? [
            `${hour.duplicateRows} duplicate row(s) of ${hour.duplicates.length} EventId(s): ${hour.duplicates
              .slice(0, 5)
              .map((d) => `${d.eventId} x${d.rows}`)
              .join(", ")}`,
          ]
        : []),
      ...(hour.unexpected.count > 0 ? [`${hour.unexpected.count} not in the archive: ${hour.unexpected.eventIds.slice(0, 5).join(", ")}`] : []),
    ];
    lines.push(`  ${hour.hour}  archived ${hour.archived}, in Log Analytics ${hour.inLogAnalytics}; ${parts.join("; ")}`);
  }
  if (report.status === "clean") lines.push("CLEAN: every archived event is in Log Analytics exactly once.");
  else {
    lines.push(`DIFFERENCES: ${totals.missing} missing, ${totals.duplicateRows} duplicate row(s), ${totals.unexpected} not in the archive.`);
    for (const explanation of report.explanations) lines.push(`  -> ${explanation}`);
  }
  return `${lines.join("\n")}\n`;
}
