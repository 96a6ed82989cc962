import { STATE_BLOB, type BlobExportStore } from "../blobStore";
import type { AppConfig } from "../config";
import { describeError, redactSecrets } from "../errors";
import type { ExportState } from "../export/state";
import { assessLogAnalyticsLag } from "./logAnalyticsLag";
import type { CheckResult, CheckStatus } from "./result";
import { formatAge, scheduleIntervalMs } from "./schedule";
import { BLOB_STEP_TIMEOUT_MS } from "./storage";
import { seconds, timed, type Budget } from "./timing";

/** Freshness: PASS up to this many schedule intervals since the last success, WARN up to the next, FAIL beyond. */
export const FRESH_INTERVALS = 2;
export const STALE_INTERVALS = 6;

/** export_freshness (undefined when the schedule setting is broken) and log_analytics_lag, from one read of the state. */
export async function exportStateChecks(
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
