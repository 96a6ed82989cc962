/**
 * Databricks omits the `request_params` keys that hold SQL definitions (a notebook's or a SQL
 * warehouse's command text) from `system.access.audit` unless the reader is an account admin or
 * a member of the `databricks_pii_access` group. The stand-in shows the same table two ways: as
 * loaded, to a reader with that access (the default), and, to one without it (the `noPiiAccess`
 * fault), through a view in a catalog of its own whose `request_params` lack those keys, so a
 * statement reads exactly what such a reader would, whatever SQL it runs.
 */

/** The `request_params` keys that carry SQL text in the events the stand-in generates (commandSubmit, runCommand). */
export const SQL_DEFINITION_KEYS: readonly string[] = ["commandText"];

/** The DuckDB catalog a reader without PII access sees as `system`. */
export const CATALOG_WITHOUT_SQL_TEXT = "dbx_system_no_pii";

/**
 * The statements that create that reader's `access.audit` over `auditTable` (qualified). A
 * DuckDB view binds `*` when queried, so it keeps the columns the table gains later.
 */
export function auditWithoutSqlTextSetup(auditTable: string): string[] {
  const keys = SQL_DEFINITION_KEYS.map((key) => `'${key.replace(/'/g, "''")}'`).join(", ");
  return [
    `ATTACH ':memory:' AS ${CATALOG_WITHOUT_SQL_TEXT}`,
    `CREATE SCHEMA ${CATALOG_WITHOUT_SQL_TEXT}.access`,
    `CREATE VIEW ${CATALOG_WITHOUT_SQL_TEXT}.access.audit AS SELECT * REPLACE (` +
      `map_from_entries(list_filter(map_entries(request_params), lambda entry: entry.key NOT IN (${keys}))) AS request_params) FROM ${auditTable}`,
  ];
}
