/**
 * The one KQL shape reconciliation sends to the Logs Query API: the rows per EventId of a time
 * window of the audit table. Nothing untrusted reaches the text: the table name is a constant
 * (test/reconcile/kql.test.ts holds it to infra/tables.json, which the deployed package does not
 * carry) checked as an identifier, and the bounds are datetime literals printed from validated Date
 * values. The Logs Ingestion stand-in parses exactly this shape.
 */

const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]{0,254}$/;

/** The audit table, as infra/tables.json declares it for the audit stream (Custom-DatabricksAudit). */
export const AUDIT_TABLE = "DatabricksAudit_CL";

/** `datetime(2026-01-02T03:00:00.000Z)` for a valid instant; anything else is refused. */
export function kqlDatetime(ms: number): string {
  if (!Number.isFinite(ms)) throw new RangeError(`Not a valid instant: ${ms}`);
  return `datetime(${new Date(ms).toISOString()})`;
}

/** Rows per EventId whose EventTime is in [fromMs, toMs): EventTime keeps the event's time (TimeGenerated may be the receive time). */
export function eventIdRowsQuery(fromMs: number, toMs: number, table: string = AUDIT_TABLE): string {
  if (!IDENTIFIER.test(table)) throw new RangeError(`Not a valid table name: '${table}'`);
  if (!(toMs > fromMs)) throw new RangeError("The window's end must come after its start.");
  return `${table}\n| where EventTime >= ${kqlDatetime(fromMs)} and EventTime < ${kqlDatetime(toMs)}\n| summarize Rows = count() by EventId`;
}
