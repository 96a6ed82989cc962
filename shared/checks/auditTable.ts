import { AUDIT_COLUMNS } from "../auditEvent";
import { AUDIT_TABLE, workspaceActivityQuery } from "../auditQueries";
import type { Warehouse } from "../databricks";
import { describeError } from "../errors";
import type { CheckName, CheckResult } from "./result";
import type { SourceFields } from "./sources";
import { seconds, timed, type Budget } from "./timing";

// audit_table_columns and workspace_filter: what the warehouse's audit table holds.

export function slowQuery(name: CheckName, ms: number): CheckResult {
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

export async function workspaceFilterCheck(
  warehouse: Warehouse,
  workspaceIds: readonly string[],
  fields: SourceFields,
  lookbackHours: number,
  nowMs: number,
  budget: Budget,
): Promise<CheckResult> {
  if (workspaceIds.length === 0) {
    return {
      name: "workspace_filter",
      status: "PASS",
      detail: `No workspace filter (${fields.workspaceIdsSetting} is empty): every workspace this warehouse sees is exported.`,
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
      `Check each ID in ${fields.workspaceIds} (the number after 'adb-' or '?o=' in the workspace URL). ` +
      "Workspace events are regional: a warehouse sees only the workspaces of its own region, so use a warehouse in the same region. " +
      "If the workspace is just quiet, widen the window with CHECK_WORKSPACE_LOOKBACK_HOURS / --workspace-check-lookback-hours.",
  };
}
