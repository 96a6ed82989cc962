/**
 * The catalog's facts as SQL pieces (action lists and filters), shared by the detections
 * (catalog.ts) and the reports (reports.ts). Catalog constants only, never user input.
 */

/** `request_params['key']` (a map lookup: NULL when the key is absent); catalog keys only. */
export function rp(key: string): string {
  return `request_params['${key.replace(/'/g, "''")}']`;
}

/** Quoted, comma-separated SQL string literals (catalog constants only, never user input). */
export function list(...values: string[]): string {
  return values.map((v) => `'${v.replace(/'/g, "''")}'`).join(", ");
}

/** Login actions (L in the catalog facts). */
export const LOGIN_ACTIONS = ["aadBrowserLogin", "aadTokenLogin", "certLogin", "jwtLogin", "login", "oidcBrowserLogin", "samlLogin", "tokenLogin"];

/** Unity Catalog data-access actions (U in the catalog facts). */
export const UC_DATA_ACTIONS = [
  "generateTemporaryTableCredential",
  "generateTemporaryPathCredential",
  "generateTemporaryVolumeCredential",
  "deltaSharingQueryTable",
  "deltaSharingQueryTableChanges",
];

export const PRIVILEGE_CHANGE_ACTIONS = [
  "addPrincipalToGroup",
  "changeDatabricksSqlAcl",
  "changeDatabricksWorkspaceAcl",
  "changeDbTokenAcl",
  "changePasswordAcl",
  "changeServicePrincipalAcls",
  "generateDbToken",
  "setAdmin",
  "changeClusterAcl",
  "changeClusterPolicyAcl",
  "changeWarehouseAcls",
  "changePermissions",
  "transferObjectOwnership",
  "changePipelineAcls",
  "changeFeatureTableAcl",
  "changeIamRoleAcl",
  "changeInstancePoolAcl",
  "changeJobAcl",
  "resetJobAcl",
  "changeRegisteredModelAcl",
  "changeInferenceEndpointAcl",
  "putAcl",
  "changeSecurableOwner",
  "grantPermission",
  "changeWorkspaceAcl",
  "updateRoleAssignment",
  "setAccountAdmin",
  "changeAccountOwner",
  "updatePermissions",
  "updateSharePermissions",
];

export const DOWNLOAD_FILTER =
  `(action_name IN (${list("downloadPreviewResults", "downloadLargeResults", "filesGet", "getModelVersionDownloadUri", "getModelVersionSignedDownloadUri")})` +
  ` OR (action_name = 'workspaceExport' AND request_params['workspaceExportFormat'] <> 'SOURCE')` +
  ` OR (action_name = 'downloadQueryResult' AND request_params['fileType'] <> 'arrows'))`;

export const FAILED_LOGIN_FILTER = `action_name IN (${list(...LOGIN_ACTIONS)}) AND response.status_code IN (401, 403)`;
export const FAILED_LOGIN_PRINCIPAL = "coalesce(user_identity.email, request_params['user'])";
export const NOT_SYSTEM_USER = "user_identity.email NOT IN ('System-User')";
export const DESTRUCTIVE_FILTER = `(action_name LIKE 'delete%' OR lower(action_name) LIKE '%delete%' OR lower(action_name) LIKE '%trash%') AND ${NOT_SYSTEM_USER}`;
export const UC_DATA_DENIED_FILTER = `action_name IN (${list(...UC_DATA_ACTIONS)}) AND response.status_code IN (401, 403)`;
export const IP_ACCESS_FAILURE_FILTER = `action_name IN (${list("IpAccessDenied", "accountIpAclsValidationFailed")})`;
export const SECRETS_FILTER = `action_name = 'getSecret' AND ${NOT_SYSTEM_USER}`;
/** tokenExpirationTime, epoch milliseconds; NULL when absent or not a number (KQL's tolong gives null too). */
export const TOKEN_EXPIRY_MS = "try_cast(request_params['tokenExpirationTime'] AS BIGINT)";
/** When the token expires. */
export const TOKEN_EXPIRY = `timestamp_millis(${TOKEN_EXPIRY_MS})`;
/**
 * KQL's datetime_diff("day", Expires, EventTime) counts calendar days (UTC dates), not whole 24 h
 * periods: UTC day numbers from the epoch, so the session's time zone cannot move a boundary.
 */
export const TOKEN_LIFETIME_CALENDAR_DAYS = `(CAST(floor(${TOKEN_EXPIRY_MS} / 86400000) AS BIGINT) - CAST(floor(unix_millis(event_time) / 86400000) AS BIGINT))`;
/** Whole hours from the event to the token's expiry, truncated as upstream's `timestampdiff(HOUR, ...)` (72 h 59 min is 72). */
export const TOKEN_LIFETIME_HOURS = `timestampdiff(HOUR, event_time, ${TOKEN_EXPIRY})`;

/** The workspace an event concerns where upstream prefers request_params.workspace_id (account-level events name it there). */
export const WORKSPACE_FALLBACK = "coalesce(request_params['workspace_id'], workspace_id)";
/** account or workspace, as upstream shows audit_level. */
export const ACCOUNT_OR_WORKSPACE = "lower(replace(audit_level, '_LEVEL', ''))";

/** The location a temporary credential is for, and whether it reads or writes (entry 31). */
export const UC_LOCATION =
  "coalesce(request_params['table_full_name'], request_params['volume_full_name'], request_params['url'], request_params['table_url'], request_params['table_id'], request_params['volume_id'])";
/** Upstream's classes, case as it writes them (`contains` is case-sensitive): CREATE or WRITE in the operation is a write, else READ a read. */
export const IS_WRITE = "(request_params['operation'] LIKE '%CREATE%' OR request_params['operation'] LIKE '%WRITE%')";
export const IS_READ = `(request_params['operation'] LIKE '%READ%' AND NOT ${IS_WRITE})`;

/** READ or WRITE, as upstream classes an operation (entry 31's `operation` column). */
export const UC_OPERATION_CLASS = `CASE WHEN ${IS_WRITE} THEN 'WRITE' WHEN ${IS_READ} THEN 'READ' END`;
/** The securable a Unity Catalog data request is for, in upstream's order (entries 29, 30, 36): `name` (a share) included. */
export const UC_SECURABLE =
  "coalesce(request_params['table_full_name'], request_params['volume_full_name'], request_params['name'], request_params['url'], request_params['table_url'], request_params['table_id'], request_params['volume_id'])";

export const CAPSULE8 = "service_name = 'capsule8-alerts-dataplane'";
export const CLAMAV = "service_name = 'clamAVScanService-dataplane'";

/** The Sentinel solution's account admin rule: its services and its admin-granting actions. */
export const SENTINEL_ADMIN_SERVICES = ["accounts", "accountsAccessControl", "accountsManager"];
export const SENTINEL_ADMIN_ACTIONS = ["setAdmin", "updateRuleSet", "setAccountAdmin"];

/**
 * KQL's `column has "term"`: the term is a whole run of ASCII letters and digits in the value,
 * case-insensitive, so `has "login"` matches `login` and `token-login` but not `aadBrowserLogin`.
 * The term is a catalog constant of letters and digits, never user input.
 */
export function kqlHas(column: string, term: string): string {
  if (!/^[A-Za-z0-9]+$/.test(term)) throw new Error(`kqlHas: the term must be letters and digits, got ${JSON.stringify(term)}`);
  return `lower(${column}) RLIKE '(^|[^a-z0-9])${term.toLowerCase()}([^a-z0-9]|$)'`;
}

/**
 * ClamAV's result text: "Infected files: N" for a scan, "<path>: <signature> FOUND" for a file.
 * Backslashes are doubled because Databricks unescapes string literals: the regex sees \s.
 */
export const INFECTED_FILES = String.raw`try_cast(regexp_extract(response.result, 'Infected files:\\s*([0-9]+)', 1) AS INT)`;
export const CLAMAV_SIGNATURE = String.raw`regexp_extract(response.result, ':\\s*(\\S+)\\s+FOUND', 1)`;
export const CLAMAV_FILE_PATH = String.raw`regexp_extract(response.result, '^(.+?):\\s', 1)`;
