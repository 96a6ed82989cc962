/**
 * The prerequisite checks behind the `checkPrerequisites` HTTP function and `dbx-audit check`:
 * the entry points they and the tests use. The checks themselves live in `checks/`, one module
 * per concern (settings, identity, the warehouse, storage, Logs Ingestion, the export's state),
 * run together by `checks/run.ts`.
 */
export { runChecks, DEFAULT_CHECK_BUDGET_MS, QUICK_CHECKS, type CheckOptions } from "./checks/run";
export { runHealthCheck, FULL_CHECK_CACHE_TTL_MS } from "./checks/cache";
export {
  CHECK_NAMES,
  PER_SOURCE_CHECKS,
  checkTitle,
  worstStatus,
  type CheckMode,
  type CheckName,
  type CheckReport,
  type CheckResult,
  type CheckStatus,
  type SourceStatus,
} from "./checks/result";
export { assessFreshness, assessSourceFreshness, FRESH_INTERVALS, STALE_INTERVALS } from "./checks/exportState";
export { auditColumnsCheck } from "./checks/auditTable";
export { formatAge, scheduleIntervalMs } from "./checks/schedule";
