/**
 * The catalog's facts as SQL pieces (action lists and filters), shared by the detections
 * (catalog.ts) and the reports (reports.ts). Catalog constants only, never user input.
 */

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
/** Token lifetime in milliseconds: tokenExpirationTime is epoch milliseconds; NULL when absent or not a number. */
export const TOKEN_LIFETIME_MS = "(try_cast(request_params['tokenExpirationTime'] AS BIGINT) - unix_millis(event_time))";

/** The location a temporary credential is for, and whether it reads or writes (entry 31). */
export const UC_LOCATION =
  "coalesce(request_params['table_full_name'], request_params['volume_full_name'], request_params['url'], request_params['table_url'], request_params['table_id'], request_params['volume_id'])";
export const IS_WRITE = "(upper(request_params['operation']) LIKE '%WRITE%' OR upper(request_params['operation']) LIKE '%CREATE%')";
export const IS_READ = `(upper(request_params['operation']) LIKE '%READ%' AND NOT ${IS_WRITE})`;

export const CAPSULE8 = "service_name = 'capsule8-alerts-dataplane'";
export const CLAMAV = "service_name = 'clamAVScanService-dataplane'";
