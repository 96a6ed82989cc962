/**
 * Databricks hides SQL from `system.access.audit` readers that are neither account admins nor
 * members of the account-level `databricks_pii_access` group: the `request_params` keys holding
 * SQL definitions (a view's, a function's) are left out, and the statement text of a SQL
 * warehouse's or a notebook's command reads `<REDACTED>`. The stand-in shows the table both
 * ways: as loaded, to a reader with that access (the default), and, to one without it (the
 * `noPiiAccess` fault), through a view in a catalog of its own that hides them as Databricks
 * does, so a statement reads what such a reader would, whatever SQL it runs.
 */

/** Keys left out for such a reader. */
export const SQL_DEFINITION_KEYS: readonly string[] = ["view_definition", "function_info", "definition_json", "managed_definition"];
/** Keys whose statement text such a reader sees as REDACTED_TEXT. */
export const STATEMENT_TEXT_KEYS: readonly string[] = ["commandText"];
export const REDACTED_TEXT = "<REDACTED>";

/** The DuckDB catalog a reader without PII access sees as `system`. */
export const CATALOG_WITHOUT_SQL_TEXT = "dbx_system_no_pii";

const listOf = (values: readonly string[]): string => values.map((value) => `'${value.replace(/'/g, "''")}'`).join(", ");

/**
 * The statements that create that reader's `access.audit` over `auditTable` (qualified). A
 * DuckDB view binds `*` when queried, so it keeps the columns the table gains later.
 */
export function auditWithoutSqlTextSetup(auditTable: string): string[] {
  const kept = `list_filter(map_entries(request_params), lambda entry: entry.key NOT IN (${listOf(SQL_DEFINITION_KEYS)}))`;
  const masked =
    `list_transform(${kept}, lambda entry: {'key': entry.key, 'value': CASE WHEN entry.key IN (${listOf(STATEMENT_TEXT_KEYS)}) ` +
    `AND entry.value IS NOT NULL THEN '${REDACTED_TEXT}' ELSE entry.value END})`;
  return [
    `ATTACH ':memory:' AS ${CATALOG_WITHOUT_SQL_TEXT}`,
    `CREATE SCHEMA ${CATALOG_WITHOUT_SQL_TEXT}.access`,
    `CREATE VIEW ${CATALOG_WITHOUT_SQL_TEXT}.access.audit AS SELECT * REPLACE (map_from_entries(${masked}) AS request_params) FROM ${auditTable}`,
  ];
}
