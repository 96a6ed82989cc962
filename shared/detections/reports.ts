import { AUDIT_TABLE, type BoundQuery } from "../auditQueries";
import { utcDateOf } from "../timestamps";
import {
  DESTRUCTIVE_FILTER,
  DOWNLOAD_FILTER,
  FAILED_LOGIN_FILTER,
  FAILED_LOGIN_PRINCIPAL,
  IP_ACCESS_FAILURE_FILTER,
  PRIVILEGE_CHANGE_ACTIONS,
  SECRETS_FILTER,
  UC_DATA_ACTIONS,
  UC_DATA_DENIED_FILTER,
  UC_LOCATION,
  UC_OPERATION_CLASS,
  UC_SECURABLE,
  WORKSPACE_FALLBACK,
} from "./facts";
import { SOURCE_IP_SQL, METASTORE_SQL } from "./sql";
import type { Report } from "./types";

/**
 * The seed's 15 query-only entries, as reports over the last N days (`dbx-audit report NAME`).
 * Each reads [:from_us, :to_us) with event_date bounds for partition pruning.
 */

const RANGE =
  "event_date >= CAST(:from_date AS DATE) AND event_date <= CAST(:to_date AS DATE) AND event_time >= timestamp_micros(CAST(:from_us AS BIGINT)) AND event_time < timestamp_micros(CAST(:to_us AS BIGINT))";
const UC_ACTIONS = `action_name IN (${UC_DATA_ACTIONS.map((a) => `'${a}'`).join(", ")})`;
const TEMP_CREDENTIAL_ACTIONS = "action_name IN ('generateTemporaryTableCredential', 'generateTemporaryPathCredential', 'generateTemporaryVolumeCredential')";
const PUBLIC_IP = `${SOURCE_IP_SQL} NOT IN ('', '0.0.0.0', '127.0.0.1')`;
/**
 * An IPv4 address's /24; an IPv6 address stays whole (upstream's substring_index on '.' would put
 * every IPv6 address in one "range" named '.0/24').
 */
const SOURCE_RANGE = `CASE WHEN ${SOURCE_IP_SQL} RLIKE '^[0-9]+[.][0-9]+[.][0-9]+[.][0-9]+$' THEN concat(regexp_extract(${SOURCE_IP_SQL}, '^([0-9]+[.][0-9]+[.][0-9]+)[.]', 1), '.0/24') ELSE ${SOURCE_IP_SQL} END`;
const SECURABLE = UC_SECURABLE;
/** What kind of securable UC_SECURABLE names, in the same order (upstream's securable_type). */
const SECURABLE_TYPE =
  "CASE WHEN request_params['table_full_name'] IS NOT NULL THEN 'TABLE' WHEN request_params['volume_full_name'] IS NOT NULL THEN 'VOLUME'" +
  " WHEN request_params['name'] IS NOT NULL THEN 'DELTA_SHARE' WHEN request_params['url'] IS NOT NULL THEN 'EXTERNAL_LOCATION'" +
  " WHEN request_params['table_url'] IS NOT NULL THEN 'TABLE' WHEN request_params['table_id'] IS NOT NULL THEN 'TABLE'" +
  " WHEN request_params['volume_id'] IS NOT NULL THEN 'VOLUME' END";
/** Unity Catalog's privilege tables and the securable type each grants on. */
const PRIVILEGE_TABLES: [table: string, securableType: string][] = [
  ["catalog_privileges", "CATALOG"],
  ["external_location_privileges", "EXTERNAL_LOCATION"],
  ["metastore_privileges", "METASTORE"],
  ["routine_privileges", "FUNCTION"],
  ["schema_privileges", "SCHEMA"],
  ["storage_credential_privileges", "STORAGE_CREDENTIAL"],
  ["table_privileges", "TABLE"],
  ["volume_privileges", "VOLUME"],
];
const ACCESS_KIND =
  "CASE WHEN audit_level = 'ACCOUNT_LEVEL' AND service_name = 'unityCatalog' THEN 'unity_catalog' WHEN audit_level = 'ACCOUNT_LEVEL' THEN 'account' ELSE 'workspace' END";

function daily(columns: string, filter: string, groups: number): string {
  const groupBy = Array.from({ length: groups }, (_, i) => String(i + 1)).join(", ");
  return `SELECT ${columns}, count(*) AS total FROM ${AUDIT_TABLE} WHERE ${RANGE} AND (${filter}) GROUP BY ${groupBy} ORDER BY 1 DESC, total DESC`;
}

export const REPORTS: readonly Report[] = [
  {
    seedEntry: 2,
    name: "failed_login_attempts_last_90_days",
    description: "Failed logins (401/403) per day, user, workspace and login action.",
    sql: daily(`event_date, ${FAILED_LOGIN_PRINCIPAL} AS email, workspace_id, action_name`, FAILED_LOGIN_FILTER, 4),
  },
  {
    seedEntry: 6,
    name: "data_downloads_from_control_plane_last_90_days",
    description: "Downloads of results, files and exported notebooks per day, user, workspace and action.",
    sql: daily("event_date, user_identity.email AS email, workspace_id, action_name", DOWNLOAD_FILTER, 4),
  },
  {
    seedEntry: 8,
    name: "ip_access_list_failures_last_90_days",
    description: "Access refused by IP access lists per day, workspace and source IP.",
    sql: daily(`event_date, workspace_id, ${SOURCE_IP_SQL} AS source_ip`, IP_ACCESS_FAILURE_FILTER, 3),
  },
  {
    seedEntry: 11,
    name: "databricks_access_to_customer_workspaces_last_90_days",
    description: "Databricks support access to workspaces: who, approved by whom, for how long and why.",
    sql:
      `SELECT event_time, workspace_id, user_identity.email AS email, request_params['user'] AS support_user, request_params['approver'] AS approver, ` +
      `request_params['duration'] AS duration, request_params['reason'] AS reason FROM ${AUDIT_TABLE} WHERE ${RANGE} AND action_name = 'databricksAccess' ORDER BY event_time DESC`,
  },
  {
    seedEntry: 19,
    name: "destructive_activities_last_90_days",
    description: "Destructive actions (delete*, trash) per day, user, workspace, service and action, System-User excluded.",
    sql: daily(`event_date, user_identity.email AS email, ${WORKSPACE_FALLBACK} AS workspace_id, service_name, action_name`, DESTRUCTIVE_FILTER, 5),
  },
  {
    seedEntry: 21,
    name: "potential_privilege_escalation_last_90_days",
    description: "Permission, ownership, group and token changes per day, user, workspace and action.",
    sql: daily(
      `event_date, user_identity.email AS email, ${WORKSPACE_FALLBACK} AS workspace_id, action_name`,
      `action_name IN (${PRIVILEGE_CHANGE_ACTIONS.map((a) => `'${a}'`).join(", ")}) AND user_identity.email NOT IN ('System-User')`,
      4,
    ),
  },
  {
    seedEntry: 23,
    name: "access_to_secrets_last_90_days",
    description: "Secrets read per day, user, workspace, scope and key, System-User excluded.",
    sql: daily(
      "event_date, user_identity.email AS email, workspace_id, request_params['scope'] AS scope, request_params['key'] AS secret_key",
      SECRETS_FILTER,
      5,
    ),
  },
  {
    seedEntry: 26,
    name: "ip_addresses_used_to_access_databricks",
    description: "Every source IP (port stripped) with its kind of access (workspace, account, unity_catalog), events, first and last seen.",
    sql:
      `SELECT ${SOURCE_IP_SQL} AS source_ip, ${ACCESS_KIND} AS access_kind, count(*) AS total, min(event_time) AS first_seen, max(event_time) AS last_seen ` +
      `FROM ${AUDIT_TABLE} WHERE ${RANGE} AND ${PUBLIC_IP} GROUP BY 1, 2 ORDER BY total DESC`,
  },
  {
    seedEntry: 27,
    name: "ip_address_ranges_used_to_access_databricks",
    description: "Source IPv4 /24 ranges (an IPv6 address on its own) with their kind of access and events.",
    sql: `SELECT ${SOURCE_RANGE} AS source_range, ${ACCESS_KIND} AS access_kind, count(*) AS total FROM ${AUDIT_TABLE} WHERE ${RANGE} AND ${PUBLIC_IP} GROUP BY 1, 2 ORDER BY total DESC`,
  },
  {
    seedEntry: 30,
    name: "unauthorized_uc_data_requests_last_90_days",
    description: "Refused (401/403) Unity Catalog data-access requests per day, user, metastore, workspace, action and securable.",
    sql: daily(
      `event_date, user_identity.email AS email, ${METASTORE_SQL} AS metastore_id, ${WORKSPACE_FALLBACK} AS workspace_id, action_name, ${SECURABLE} AS securable`,
      UC_DATA_DENIED_FILTER,
      6,
    ),
  },
  {
    seedEntry: 32,
    name: "read_writes_last_90_days",
    description: "Temporary credentials per day, user, metastore, workspace, READ/WRITE class, full operation and securable.",
    sql: daily(
      `event_date, user_identity.email AS email, ${METASTORE_SQL} AS metastore_id, ${WORKSPACE_FALLBACK} AS workspace_id, ${UC_OPERATION_CLASS} AS operation, ` +
        `request_params['operation'] AS full_operation, ${UC_LOCATION} AS securable`,
      TEMP_CREDENTIAL_ACTIONS,
      7,
    ),
  },
  {
    seedEntry: 36,
    name: "most_popular_data_products_last_90_days",
    description: "The 500 securables read most (successful Unity Catalog data access) with their type, internal ones excluded.",
    sql:
      `SELECT ${SECURABLE} AS securable, ${SECURABLE_TYPE} AS securable_type, count(*) AS total, count(DISTINCT user_identity.email) AS users FROM ${AUDIT_TABLE} ` +
      `WHERE ${RANGE} AND ${UC_ACTIONS} AND response.status_code = 200 AND ${SECURABLE} IS NOT NULL AND left(${SECURABLE}, 22) <> '__databricks_internal.' ` +
      `GROUP BY 1, 2 ORDER BY total DESC LIMIT 500`,
  },
  {
    seedEntry: 37,
    name: "most_privileged_users",
    description:
      "Grants per grantee and securable type across Unity Catalog's information_schema privilege tables, with the grantee's total (not the audit log; Databricks only, the time range does not apply).",
    sql:
      "SELECT grantee, securable_type, count(*) AS grants, sum(count(*)) OVER (PARTITION BY grantee) AS grantee_total FROM (" +
      PRIVILEGE_TABLES.map(([table, type]) => `SELECT grantee, '${type}' AS securable_type FROM system.information_schema.${table}`).join(" UNION ALL ") +
      ") AS privileges GROUP BY grantee, securable_type ORDER BY grantee_total DESC, grantee, grants DESC",
  },
  {
    seedEntry: 38,
    name: "ip_addresses_used_to_access_uc_data",
    description: "Source IPs of Unity Catalog data access per securable type, with events, users, first and last seen.",
    sql:
      `SELECT ${SOURCE_IP_SQL} AS source_ip, ${SECURABLE_TYPE} AS securable_type, count(*) AS total, count(DISTINCT user_identity.email) AS users, ` +
      `min(event_time) AS first_seen, max(event_time) AS last_seen FROM ${AUDIT_TABLE} WHERE ${RANGE} AND ${UC_ACTIONS} AND ${PUBLIC_IP} GROUP BY 1, 2 ORDER BY total DESC`,
  },
  {
    seedEntry: 39,
    name: "ip_address_ranges_used_to_access_uc_data",
    description: "Source IPv4 /24 ranges (an IPv6 address on its own) of Unity Catalog data access per securable type.",
    sql:
      `SELECT ${SOURCE_RANGE} AS source_range, ${SECURABLE_TYPE} AS securable_type, count(*) AS total, count(DISTINCT user_identity.email) AS users ` +
      `FROM ${AUDIT_TABLE} WHERE ${RANGE} AND ${UC_ACTIONS} AND ${PUBLIC_IP} GROUP BY 1, 2 ORDER BY total DESC`,
  },
];

export function reportQuery(report: Report, nowMs: number, days: number): BoundQuery {
  const toUs = nowMs * 1000;
  const fromUs = toUs - days * 86_400_000_000;
  const params = { from_us: String(fromUs), to_us: String(toUs), from_date: utcDateOf(fromUs), to_date: utcDateOf(toUs - 1) };
  // Only the parameters the text uses: a warehouse refuses none, but the stand-in binds what it sees.
  return { sql: report.sql, params: report.sql.includes(":from_us") ? params : {} };
}
