import { STATE_BLOB, type BlobExportStore } from "../blobStore";
import type { AppConfig } from "../config";
import { describeError, redactSecrets } from "../errors";
import type { ExportState } from "../export/state";
import { microsToIso } from "../timestamps";
import { assessLogAnalyticsLag, assessSourceLogAnalyticsLag } from "./logAnalyticsLag";
import { worstStatus, type CheckResult, type CheckStatus } from "./result";
import { namesSources } from "./sources";
import { formatAge, scheduleIntervalMs } from "./schedule";
import { BLOB_STEP_TIMEOUT_MS } from "./storage";
import { seconds, timed, type Budget } from "./timing";

/** Freshness: PASS up to this many schedule intervals since the last success, WARN up to the next, FAIL beyond. */
export const FRESH_INTERVALS = 2;
export const STALE_INTERVALS = 6;

type Assessment = Omit<CheckResult, "name" | "source">;

/**
 * export_freshness (left out when the schedule setting is broken) and log_analytics_lag of each
 * source, from one read of the state. With the one source of the single-source settings, they
 * read as they always did; with several, each answers from its own progress.
 */
export async function exportStateChecks(
  store: BlobExportStore,
  config: AppConfig,
  sources: readonly string[],
  scheduleBroken: boolean,
  nowMs: number,
  budget: Budget,
): Promise<CheckResult[]> {
  const each = (assess: (source: string) => { freshness: Assessment; lag: Assessment }): CheckResult[] =>
    sources.flatMap((source) => {
      const { freshness, lag } = assess(source);
      return [...(scheduleBroken ? [] : [{ name: "export_freshness" as const, source, ...freshness }]), { name: "log_analytics_lag" as const, source, ...lag }];
    });
  const ms = budget.stepMs(BLOB_STEP_TIMEOUT_MS);
  const read = await timed(() => store.readState(), ms);
  if (read.kind !== "done") {
    const unread: Assessment =
      read.kind === "timeout"
        ? { status: "WARN", detail: `Reading ${STATE_BLOB} took longer than ${seconds(ms)}.`, remediation: "Retry in a few minutes." }
        : {
            status: "FAIL",
            detail: `Could not read the export state ${STATE_BLOB}: ${describeError(read.error)}`,
            remediation: "Restore the state blob from a blob version or snapshot, or delete it to restart from EXPORT_START (see TROUBLESHOOTING.md).",
          };
    return each(() => ({ freshness: unread, lag: unread }));
  }
  const state = read.value?.state ?? null;
  const listed = await timed(() => store.listDeadLetters(), budget.stepMs(BLOB_STEP_TIMEOUT_MS));
  const deadLetters = listed.kind === "done" ? listed.value : [];
  const logAnalyticsOn = config.logsIngestion !== undefined;
  if (!namesSources(sources)) {
    return each(() => ({ freshness: assessFreshness(state, config.schedule, nowMs), lag: assessLogAnalyticsLag(state, logAnalyticsOn, deadLetters) }));
  }
  return each((source) => ({
    freshness: assessSourceFreshness(source, state, config.schedule, config.settleDelayMs, nowMs),
    lag: assessSourceLogAnalyticsLag(source, state?.sources[source], logAnalyticsOn, deadLetters),
  }));
}

/**
 * export_freshness of one of several sources: the runs' freshness (assessFreshness) and how far
 * this source's archive is behind. Its cursor stays within the settle delay plus FRESH_INTERVALS
 * schedule intervals of now while the runs move it; a warehouse that is down or refuses holds
 * its source back while the others advance (WARN up to STALE_INTERVALS, FAIL beyond).
 */
export function assessSourceFreshness(name: string, state: ExportState | null, schedule: string, settleDelayMs: number, nowMs: number): Assessment {
  const runs = assessFreshness(state, schedule, nowMs);
  if (!state) return runs;
  const source = state.sources[name];
  const intervalMs = scheduleIntervalMs(schedule);
  let archive: Assessment;
  if (!source) {
    archive = {
      status: "WARN",
      detail: "Nothing archived from this source yet (the export state has no progress for it).",
      remediation: `A source added to DATABRICKS_SOURCES starts at EXPORT_START on the next exportAuditLogs run; if runs have happened since, look at their errors for source '${name}' and at its warehouse checks.`,
    };
  } else {
    const behindMs = Math.max(0, nowMs - Math.floor(source.cursor.timeUs / 1000));
    const status: CheckStatus =
      behindMs <= settleDelayMs + FRESH_INTERVALS * intervalMs ? "PASS" : behindMs <= settleDelayMs + STALE_INTERVALS * intervalMs ? "WARN" : "FAIL";
    const lastFailure = source.lastError
      ? ` This source's last run failed${source.lastFailureAt ? ` at ${source.lastFailureAt}` : ""}: ${redactSecrets(source.lastError)}`
      : "";
    archive = {
      status,
      detail: `The archive is complete up to ${microsToIso(source.cursor.timeUs)} (${formatAge(behindMs)} behind now; runs read up to ${formatAge(settleDelayMs)} before now).${lastFailure}`,
      remediation:
        status === "PASS"
          ? ""
          : `The runs are not moving this source forward: look at the exportAuditLogs invocations' errors for source '${name}' and at its warehouse checks (warehouse_connectivity, system_table_access). A source that is new or was down catches up run by run ('dbx-audit run --until-caught-up' does it at once).`,
    };
  }
  return {
    status: worstStatus([archive.status, runs.status]),
    detail: `${archive.detail} ${runs.detail}`,
    remediation: [...new Set([archive.remediation, runs.remediation].filter(Boolean))].join(" "),
  };
}

/**
 * How fresh the export is, against its schedule: PASS when the last success is within
 * FRESH_INTERVALS schedule intervals, WARN up to STALE_INTERVALS (or when nothing ran yet),
 * FAIL beyond. Mentions a held or abandoned lock and the last error.
 */
export function assessFreshness(state: ExportState | null, schedule: string, nowMs: number): Assessment {
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
