import { AUDIT_TABLE, REDACTED_SQL_TEXT, SQL_TEXT_EVENTS, SQL_TEXT_KEY, sqlTextVisibilityQuery } from "../auditQueries";
import type { Warehouse } from "../databricks";
import { describeError } from "../errors";
import { slowQuery } from "./auditTable";
import type { CheckResult } from "./result";
import type { Budget } from "./timing";
import { timed } from "./timing";

const EVENTS = SQL_TEXT_EVENTS.map(({ service, action }) => `${service}.${action}`).join(", ");

/**
 * sql_text_visibility: whether this identity reads the SQL text of audit rows. Databricks masks
 * it (`<REDACTED>`), and leaves SQL definitions out, for a reader that is neither an account
 * admin nor in `databricks_pii_access`; nothing fails, the archive and Log Analytics just lack
 * what ran. Told from recent rows: events that always carry the text (SQL_TEXT_EVENTS) none of
 * which shows any. With no such events in the window there is nothing to tell from.
 */
export async function sqlTextVisibilityCheck(
  warehouse: Warehouse,
  lookbackHours: number,
  nowMs: number,
  budget: Budget,
  principal?: string,
): Promise<CheckResult> {
  const ms = budget.stepMs(Infinity);
  const counted = await timed(() => warehouse.all(sqlTextVisibilityQuery((nowMs - lookbackHours * 3_600_000) * 1000, nowMs * 1000)), ms);
  if (counted.kind === "timeout") return slowQuery("sql_text_visibility", ms);
  if (counted.kind === "failed") {
    return {
      name: "sql_text_visibility",
      status: "FAIL",
      detail: `Counting recent events that carry SQL text failed (${describeError(counted.error)}).`,
      remediation: "Run the check again; if it persists, look at the warehouse's query history for the failed query.",
    };
  }
  const row = counted.value[0] ?? {};
  const events = Number(row.sql_events ?? 0);
  const withText = Number(row.with_sql_text ?? 0);
  const window = `in the last ${lookbackHours} h`;
  if (events === 0) {
    return {
      name: "sql_text_visibility",
      status: "PASS",
      detail: `No ${EVENTS} events ${window}, so whether this identity sees SQL text cannot be told yet.`,
      remediation: "",
    };
  }
  if (withText > 0) {
    return {
      name: "sql_text_visibility",
      status: "PASS",
      detail: `${withText} of ${events} ${EVENTS} events ${window} carry their SQL text (request_params.${SQL_TEXT_KEY}): this identity sees SQL text.`,
      remediation: "",
    };
  }
  const identity = principal ? `the app's identity (${principal})` : "the identity the export reads with";
  return {
    name: "sql_text_visibility",
    status: "WARN",
    detail:
      `None of the ${events} ${EVENTS} events ${window} shows its SQL text in request_params.${SQL_TEXT_KEY} (absent, empty or ${REDACTED_SQL_TEXT}): ` +
      `Databricks masks SQL in ${AUDIT_TABLE} for a reader that is neither an account admin nor in the databricks_pii_access group, so the archive and Log Analytics do not show what ran.`,
    remediation:
      `Add ${identity} to the account-level group databricks_pii_access (account console > User management > Groups; an account admin creates it if it does not exist, the name is case-sensitive). ` +
      "Databricks applies this when the rows are read: runs from then on archive the SQL text; rows archived before stay without it (re-export their window with 'dbx-audit export' if you need it).",
  };
}
