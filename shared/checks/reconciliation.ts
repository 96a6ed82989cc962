import type { TokenCredential } from "@azure/identity";
import type { BlobExportStore } from "../blobStore";
import type { BackfillStore } from "../backfill/store";
import type { AppConfig } from "../config";
import { describeError } from "../errors";
import { LogAnalyticsQuery, LogAnalyticsQueryError, type LogAnalyticsRows } from "../logAnalyticsQuery";
import type { MissingCause, ReconciliationReport } from "../reconcile/compare";
import { DEFAULT_RECONCILE_WINDOW_MS, INGESTION_LATENCY_MS, readLastReconciliation, reconcile } from "../reconcile/run";
import type { CheckResult } from "./result";
import { seconds, timed, type Budget } from "./timing";

/** A day of hours is about 24 queries: this much time at most, within the check's budget. */
const RECONCILE_TIMEOUT_MS = 40_000;

/** Causes the export cannot explain by its own records: rows the service accepted and does not hold. */
const UNEXPLAINED: ReadonlySet<MissingCause> = new Set<MissingCause>(["dcr_transform", "wrong_stream_or_table"]);

/**
 * The archive against Log Analytics over the last day (ending INGESTION_LATENCY_MS ago, so rows
 * still being ingested are not counted missing), as `dbx-audit reconcile` does; the result is
 * kept in _state/reconciliation.json for the quick health check.
 */
export async function reconciliationCheck(
  config: AppConfig,
  store: BlobExportStore,
  credential: TokenCredential,
  nowMs: number,
  budget: Budget,
  logAnalytics: LogAnalyticsRows | undefined = config.logAnalyticsQuery && new LogAnalyticsQuery(config.logAnalyticsQuery, credential, { maxRetries: 0 }),
  /** The backfill's slices: days it covers explain their missing rows (archive only, not finished). */
  backfill?: Pick<BackfillStore, "daysOf">,
): Promise<CheckResult> {
  const name = "log_analytics_reconciliation";
  if (!config.logsIngestion) {
    return { name, status: "PASS", detail: "Log Analytics forwarding is off: there is nothing to reconcile.", remediation: "" };
  }
  if (!logAnalytics) {
    return {
      name,
      status: "WARN",
      detail: "LOG_ANALYTICS_WORKSPACE_ID is not set: nothing checks that the rows Log Analytics accepted are there, once each.",
      remediation:
        "Set LOG_ANALYTICS_WORKSPACE_ID to the workspace ID (customer ID GUID) of the workspace that holds DatabricksAudit_CL, and give the app's identity the Log Analytics Reader role on it (the templates do both).",
    };
  }
  const toMs = nowMs - INGESTION_LATENCY_MS;
  const window = { fromMs: toMs - DEFAULT_RECONCILE_WINDOW_MS, toMs, nowMs };
  const ms = budget.stepMs(RECONCILE_TIMEOUT_MS);
  const outcome = await timed(
    async () => reconcile(store, logAnalytics, { ...window, ...(backfill ? { backfillDays: await backfill.daysOf(window.fromMs, window.toMs) } : {}) }),
    ms,
  );
  if (outcome.kind === "timeout") {
    return {
      name,
      status: "WARN",
      detail: `The reconciliation of the last day did not finish within ${seconds(ms)}.`,
      remediation: "Run 'dbx-audit reconcile' for the full report (it has no time budget).",
    };
  }
  if (outcome.kind === "failed") {
    const error = outcome.error;
    return {
      name,
      status: "FAIL",
      detail: `Could not reconcile: ${describeError(error)}`,
      remediation: error instanceof LogAnalyticsQueryError ? error.remediation : "Run 'dbx-audit reconcile' to see the error in full.",
    };
  }
  return assessReconciliation(outcome.value);
}

/** What assessReconciliation reads: a full report, or the summary of one kept in Blob. */
type AssessedReconciliation = Pick<ReconciliationReport, "status" | "totals" | "from" | "to" | "explanations"> & { hours: readonly { hour: string }[] };

/** A stored result older than this no longer says much about today's rows: the quick check WARNs. */
export const RECONCILIATION_STALE_MS = 2 * 24 * 3_600_000;

/**
 * The quick check's view: the last reconciliation's summary as the full check or `dbx-audit
 * reconcile` left it in Blob, with its age; no query to Log Analytics.
 */
export async function lastReconciliationCheck(config: AppConfig, store: BlobExportStore, nowMs: number): Promise<CheckResult> {
  const name = "log_analytics_reconciliation";
  if (!config.logsIngestion) {
    return { name, status: "PASS", detail: "Log Analytics forwarding is off: there is nothing to reconcile.", remediation: "" };
  }
  let summary;
  try {
    summary = await readLastReconciliation(store);
  } catch (error) {
    return {
      name,
      status: "WARN",
      detail: `Could not read the last reconciliation: ${describeError(error)}`,
      remediation: "Run a full check or 'dbx-audit reconcile' to write it again.",
    };
  }
  if (!summary) {
    return {
      name,
      status: "WARN",
      detail: "No reconciliation has run yet: nothing shows that the rows Log Analytics accepted are there, once each.",
      remediation: "Run a full check (checkPrerequisites without ?quick=1) or 'dbx-audit reconcile'; each keeps its result for the quick check.",
    };
  }
  const ageMs = nowMs - Date.parse(summary.checkedAt);
  const assessed = assessReconciliation(summary);
  const asOf = ` (as of ${summary.checkedAt}, ${Math.max(0, Math.round(ageMs / 60_000))} min ago)`;
  if (ageMs > RECONCILIATION_STALE_MS && assessed.status === "PASS") {
    return {
      ...assessed,
      status: "WARN",
      detail: `${assessed.detail}${asOf}: older than ${RECONCILIATION_STALE_MS / 3_600_000} hours.`,
      remediation: "Run a full check or 'dbx-audit reconcile' for a current result.",
    };
  }
  return { ...assessed, detail: `${assessed.detail}${asOf}` };
}

export function assessReconciliation(report: AssessedReconciliation): CheckResult {
  const name = "log_analytics_reconciliation";
  const { totals } = report;
  if (report.status === "clean") {
    return {
      name,
      status: "PASS",
      detail: `${totals.archived} archived event(s) from ${report.from} to ${report.to} are in Log Analytics, once each.`,
      remediation: "",
    };
  }
  const causes = Object.entries(totals.missingByCause).map(([cause, count]) => `${count} ${cause}`);
  const hours = report.hours.map((hour) => hour.hour).slice(0, 3);
  const detail =
    `From ${report.from} to ${report.to}: ${totals.missing} archived event(s) missing from Log Analytics${causes.length ? ` (${causes.join(", ")})` : ""}, ` +
    `${totals.duplicateRows} duplicate row(s), ${totals.unexpected} row(s) the archive does not know; first hours: ${hours.join(", ")}${report.hours.length > 3 ? ", ..." : ""}.`;
  const unexplained = (Object.keys(totals.missingByCause) as MissingCause[]).some((cause) => UNEXPLAINED.has(cause));
  return {
    name,
    status: unexplained ? "FAIL" : "WARN",
    detail,
    remediation: `${report.explanations.join(" ")} 'dbx-audit reconcile --since ${report.from} --until ${report.to}' lists the EventIds.`,
  };
}
