import { namesSources } from "./sources";

/** The shape every prerequisite check answers in, and the rules for a check that could not run. */

export type CheckStatus = "PASS" | "WARN" | "FAIL";

export const CHECK_NAMES = [
  "configuration",
  "azure_authentication",
  "warehouse_connectivity",
  "system_table_access",
  "workspace_filter",
  "audit_table_columns",
  "sql_text_visibility",
  "blob_container",
  "logs_ingestion",
  "export_freshness",
  "log_analytics_lag",
  "log_analytics_reconciliation",
  "detections_state",
  "backfill",
] as const;

export type CheckName = (typeof CHECK_NAMES)[number];

/** The checks that run once per source (SQL warehouse): each result names its source. */
export const PER_SOURCE_CHECKS: ReadonlySet<CheckName> = new Set<CheckName>([
  "warehouse_connectivity",
  "system_table_access",
  "workspace_filter",
  "audit_table_columns",
  "sql_text_visibility",
  "export_freshness",
  "log_analytics_lag",
]);

export interface CheckResult {
  name: CheckName;
  status: CheckStatus;
  detail: string;
  /** What to do about a WARN or FAIL; empty on PASS. */
  remediation: string;
  /** The source (SQL warehouse, one per region) a per-source check is about; absent on the checks of the whole deployment. */
  source?: string;
}

/**
 * `full`: every check, the warehouse's included (a session can start a stopped warehouse, which
 * costs DBUs). `quick`: only the checks that read Blob (QUICK_CHECKS in run.ts), no warehouse session.
 */
export type CheckMode = "full" | "quick";

/** Where a full check's report came from: the shared cache (checks/cache.ts) or a run just now. */
export interface ReportCache {
  fromCache: boolean;
  /** When the checks ran (the report's checkedAt). */
  computedAt: string;
  /** Until when the report is served from the cache; a call with refresh runs the checks again at once. */
  expiresAt: string;
}

export interface CheckReport {
  /** The worst status of all checks. */
  status: CheckStatus;
  mode: CheckMode;
  /** When the checks ran. */
  checkedAt: string;
  durationMs: number;
  /** Every check in CHECK_NAMES order; a per-source check once per source, in the configured order. */
  checks: CheckResult[];
  /** Each source's worst status over its own checks, in the configured order. */
  sources: SourceStatus[];
  /** On the HTTP function's full check only: whether this report came from the cache. */
  cache?: ReportCache;
}

export interface SourceStatus {
  name: string;
  status: CheckStatus;
}

/** A check's name for a one-line summary: with the source when the report has several (or a named one). */
export function checkTitle(check: CheckResult, report: Pick<CheckReport, "sources">): string {
  return check.source !== undefined && namesSources(report.sources.map((s) => s.name)) ? `${check.name}[${check.source}]` : check.name;
}

export function worstStatus(statuses: readonly CheckStatus[]): CheckStatus {
  if (statuses.includes("FAIL")) return "FAIL";
  if (statuses.includes("WARN")) return "WARN";
  return "PASS";
}

/** Skipped because `dependency` did not pass; a dependency that was itself skipped passes its reason on (the root cause). */
export function skippedAfter(name: CheckName, dependency: CheckResult): CheckResult {
  if (dependency.detail.startsWith("skipped:")) return { ...dependency, name };
  return skipped(name, dependency.name, dependency.status === "FAIL" ? "FAIL" : "WARN");
}

export function skipped(name: CheckName, dependency: CheckName, status: "WARN" | "FAIL", settings?: string): CheckResult {
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
