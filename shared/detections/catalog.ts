import type { Detection } from "./types";

/**
 * The built-in catalog: every alerting entry of the seed's detection catalog (30) and the
 * Sentinel Databricks solution's 4 rules, none of which an entry covers exactly. Filters,
 * groupings, thresholds and operators are the catalog's facts; "last 24 h" entries become
 * hourly windows (each event alerts once, in its hour) and the entries grouped by event_date
 * a per-day aggregate that alerts once when it crosses. Entries that fire on any matching
 * event and name no grouping alert per window and principal.
 *
 * Filters keep to SQL that both Databricks SQL and the local stand-in run; `request_params`
 * is a map<string,string>, so `request_params['key']` is NULL when the key is absent.
 */

const HOUR = 60;
const DAY = 1440;

/** Quoted, comma-separated SQL string literals (catalog constants only, never user input). */
function list(...values: string[]): string {
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
const TOKEN_LIFETIME_MS = "(try_cast(request_params['tokenExpirationTime'] AS BIGINT) - unix_millis(event_time))";

/** The location a temporary credential is for, and whether it reads or writes (entry 31). */
const UC_LOCATION =
  "coalesce(request_params['table_full_name'], request_params['volume_full_name'], request_params['url'], request_params['table_url'], request_params['table_id'], request_params['volume_id'])";
const IS_WRITE = "(upper(request_params['operation']) LIKE '%WRITE%' OR upper(request_params['operation']) LIKE '%CREATE%')";
const IS_READ = `(upper(request_params['operation']) LIKE '%READ%' AND NOT ${IS_WRITE})`;

const CAPSULE8 = "service_name = 'capsule8-alerts-dataplane'";
const CLAMAV = "service_name = 'clamAVScanService-dataplane'";

type Entry = Omit<Detection, "enabled" | "origin" | "groupBy" | "windowMinutes"> &
  Partial<Pick<Detection, "groupBy" | "windowMinutes">> & { origin?: Detection["origin"] };

const ENTRIES: Entry[] = [
  {
    seedEntry: 1,
    name: "repeated_failed_login_attempts",
    description: "More than one failed login (401/403) by the same user in an hour: someone may be guessing or spraying passwords.",
    severity: "Medium",
    tactic: "CredentialAccess",
    technique: "T1110",
    filter: FAILED_LOGIN_FILTER,
    principal: FAILED_LOGIN_PRINCIPAL,
    operator: ">",
    threshold: 1,
  },
  {
    seedEntry: 3,
    name: "changes_to_admin_users",
    description: "Account or workspace admin rights granted or removed, the account owner changed, or a principal added to or removed from the admins group.",
    severity: "High",
    tactic: "PrivilegeEscalation",
    technique: "T1098",
    filter:
      `(action_name IN (${list("setAccountAdmin", "changeAccountOwner", "setAdmin", "removeAdmin")})` +
      ` OR (action_name IN (${list("addPrincipalToGroup", "removePrincipalFromGroup")}) AND request_params['targetGroupName'] = 'admins'))`,
    operator: ">",
    threshold: 0,
  },
  {
    seedEntry: 4,
    name: "changes_to_workspace_configuration",
    description: "A workspace configuration setting was changed (workspaceConfEdit); many of them enforce security.",
    severity: "Medium",
    tactic: "DefenseEvasion",
    technique: "T1562",
    filter: "action_name = 'workspaceConfEdit'",
    operator: ">",
    threshold: 0,
  },
  {
    seedEntry: 5,
    name: "data_downloads_from_control_plane",
    description:
      "More than 20 downloads in an hour by one user: notebook, SQL or MLflow results, files, or notebooks exported in a format that can hold results.",
    severity: "Medium",
    tactic: "Exfiltration",
    technique: "T1567",
    filter: DOWNLOAD_FILTER,
    operator: ">",
    threshold: 20,
  },
  {
    seedEntry: 7,
    name: "ip_access_list_failures",
    description: "Access refused by an IP access list (IpAccessDenied, accountIpAclsValidationFailed): an attempt from an untrusted network.",
    severity: "Medium",
    tactic: "InitialAccess",
    technique: "T1078",
    filter: IP_ACCESS_FAILURE_FILTER,
    groupBy: ["workspace_id", "email", "source_ip"],
    operator: ">",
    threshold: 0,
  },
  {
    seedEntry: 9,
    name: "ip_access_list_changes",
    description: "An IP access list was created, updated or deleted.",
    severity: "Medium",
    tactic: "DefenseEvasion",
    technique: "T1562.007",
    filter: `action_name IN (${list("createIpAccessList", "deleteIpAccessList", "updateIpAccessList")})`,
    operator: ">",
    threshold: 0,
  },
  {
    seedEntry: 10,
    name: "databricks_access_to_customer_workspaces",
    description: "Databricks staff logged in to a workspace through the support process (databricksAccess).",
    severity: "Low",
    tactic: "InitialAccess",
    technique: "T1199",
    filter: "action_name = 'databricksAccess'",
    operator: ">",
    threshold: 0,
  },
  {
    seedEntry: 12,
    name: "terms_of_service_changes",
    description: "Terms of Service changes were sent or accepted (acceptTos, sendTos).",
    severity: "Informational",
    tactic: "DefenseEvasion",
    technique: "T1562",
    filter: `action_name IN (${list("acceptTos", "sendTos")})`,
    operator: ">",
    threshold: 0,
  },
  {
    seedEntry: 13,
    name: "account_settings_changes",
    description: "An account-level setting was changed (accounts setSetting at ACCOUNT_LEVEL).",
    severity: "Medium",
    tactic: "DefenseEvasion",
    technique: "T1562",
    filter: "audit_level = 'ACCOUNT_LEVEL' AND service_name = 'accounts' AND action_name = 'setSetting'",
    operator: ">",
    threshold: 0,
  },
  {
    seedEntry: 14,
    name: "global_init_script_changes",
    description: "A global init script (code run on every cluster) was created, updated or deleted.",
    severity: "High",
    tactic: "Persistence",
    technique: "T1037",
    filter: "service_name = 'globalInitScripts'",
    operator: ">",
    threshold: 0,
  },
  {
    seedEntry: 15,
    name: "install_library_on_all_clusters",
    description: "A library was installed on all clusters (an anti-pattern: code on every cluster).",
    severity: "Medium",
    tactic: "Execution",
    technique: "T1072",
    filter: "service_name = 'clusterLibraries' AND action_name = 'installLibraryOnAllClusters'",
    operator: ">",
    threshold: 0,
  },
  {
    seedEntry: 16,
    name: "mount_point_creation",
    description: "A DBFS mount point was created (mounts bypass Unity Catalog's governance).",
    severity: "Low",
    tactic: "Collection",
    technique: "T1530",
    filter: "action_name = 'mount'",
    operator: ">",
    threshold: 0,
  },
  {
    seedEntry: 17,
    name: "long_lifetime_token_generation",
    description: "A personal access token was generated with a lifetime over 72 hours.",
    severity: "Medium",
    tactic: "Persistence",
    technique: "T1098.001",
    filter: `action_name = 'generateDbToken' AND ${TOKEN_LIFETIME_MS} > 259200000`,
    operator: ">",
    threshold: 0,
  },
  {
    seedEntry: 18,
    name: "destructive_activities",
    description: "At least 50 destructive actions (delete*, trash) by one user in a UTC day, System-User excluded: possible sabotage.",
    severity: "High",
    tactic: "Impact",
    technique: "T1485",
    filter: DESTRUCTIVE_FILTER,
    windowMinutes: DAY,
    operator: ">=",
    threshold: 50,
  },
  {
    seedEntry: 20,
    name: "potential_privilege_escalation",
    description: "At least 25 permission, ownership, group or token changes by one user in an hour, System-User excluded.",
    severity: "High",
    tactic: "PrivilegeEscalation",
    technique: "T1098",
    filter: `action_name IN (${list(...PRIVILEGE_CHANGE_ACTIONS)}) AND ${NOT_SYSTEM_USER}`,
    operator: ">=",
    threshold: 25,
  },
  {
    seedEntry: 22,
    name: "repeated_access_to_secrets",
    description: "One user read at least 10 different secrets (scope/key) in an hour, System-User excluded: possible credential theft.",
    severity: "High",
    tactic: "CredentialAccess",
    technique: "T1555.006",
    filter: SECRETS_FILTER,
    measure: "count(DISTINCT concat_ws('/', request_params['scope'], request_params['key']))",
    operator: ">=",
    threshold: 10,
  },
  {
    seedEntry: 24,
    name: "access_to_multiple_workspaces",
    description: "One user active in at least 5 workspaces in a UTC day (System-User and unknown excluded): possible lateral movement.",
    severity: "Medium",
    tactic: "LateralMovement",
    technique: "T1021",
    filter: "user_identity.email NOT IN ('System-User', 'unknown')",
    measure: "count(DISTINCT workspace_id)",
    windowMinutes: DAY,
    operator: ">=",
    threshold: 5,
  },
  {
    seedEntry: 25,
    name: "use_of_print_statements",
    description: "A notebook command used print() (verbose audit logs only): a coding-standards check.",
    severity: "Informational",
    tactic: "Collection",
    technique: "T1005",
    filter: String.raw`action_name = 'runCommand' AND request_params['commandText'] RLIKE '\\bprint\\s*\\('`,
    operator: ">",
    threshold: 0,
  },
  {
    seedEntry: 28,
    name: "repeated_unauthorized_uc_requests",
    description: "More than 25 Unity Catalog requests refused (401/403) for one user and metastore in an hour: probing for access.",
    severity: "Medium",
    tactic: "Discovery",
    technique: "T1580",
    filter: "service_name = 'unityCatalog' AND response.status_code IN (401, 403)",
    groupBy: ["email", "metastore_id"],
    operator: ">",
    threshold: 25,
  },
  {
    seedEntry: 29,
    name: "repeated_unauthorized_uc_data_requests",
    description: "More than 15 refused (401/403) Unity Catalog data-access requests for one user and metastore in an hour.",
    severity: "Medium",
    tactic: "Collection",
    technique: "T1530",
    filter: UC_DATA_DENIED_FILTER,
    groupBy: ["email", "metastore_id"],
    operator: ">",
    threshold: 15,
  },
  {
    seedEntry: 31,
    name: "high_number_of_read_writes",
    description:
      "One user with more than 20 reads and more than 20 writes through temporary credentials in an hour, writing to locations they did not read: possible copying out.",
    severity: "Medium",
    tactic: "Exfiltration",
    technique: "T1537",
    filter: `action_name IN (${list("generateTemporaryTableCredential", "generateTemporaryPathCredential", "generateTemporaryVolumeCredential")})`,
    measure:
      `CASE WHEN count(CASE WHEN ${IS_READ} THEN 1 END) > 20 AND count(CASE WHEN ${IS_WRITE} THEN 1 END) > 20` +
      ` THEN array_size(array_except(collect_set(CASE WHEN ${IS_WRITE} THEN ${UC_LOCATION} END), collect_set(CASE WHEN ${IS_READ} THEN ${UC_LOCATION} END)))` +
      ` ELSE 0 END`,
    groupBy: ["email", "metastore_id"],
    operator: ">",
    threshold: 0,
  },
  {
    seedEntry: 33,
    name: "delta_sharing_recipients_without_ip_acls",
    description: "A Delta Sharing recipient was created without an IP access list.",
    severity: "Medium",
    tactic: "Exfiltration",
    technique: "T1537",
    filter: "action_name = 'createRecipient' AND request_params['ip_access_list'] IS NULL",
    operator: ">",
    threshold: 0,
  },
  {
    seedEntry: 34,
    name: "delta_sharing_ip_access_list_failures",
    description: "A Delta Sharing query was refused by the recipient's IP access list.",
    severity: "Medium",
    tactic: "InitialAccess",
    technique: "T1078",
    filter: `service_name = 'unityCatalog' AND action_name IN (${list("deltaSharingQueryTable", "deltaSharingQueryTableChanges")}) AND request_params['is_ip_access_denied'] = 'true'`,
    groupBy: ["source_ip", "metastore_id"],
    operator: ">",
    threshold: 0,
  },
  {
    seedEntry: 35,
    name: "delta_sharing_recipient_token_lifetime_change",
    description: "The metastore's Delta Sharing recipient token lifetime was changed.",
    severity: "Medium",
    tactic: "Persistence",
    technique: "T1098.001",
    filter: "action_name = 'updateMetastore' AND request_params['delta_sharing_recipient_token_lifetime_in_seconds'] IS NOT NULL",
    operator: ">",
    threshold: 0,
  },
  {
    seedEntry: 40,
    name: "clam_av_infected_files_detected",
    description: "The antivirus scan of a data plane host (compliance security profile) reported infected files.",
    severity: "High",
    tactic: "Execution",
    technique: "T1204",
    filter: String.raw`${CLAMAV} AND response.result LIKE 'Infected files:%' AND try_cast(regexp_extract(response.result, 'Infected files:\\s*([0-9]+)', 1) AS INT) > 0`,
    operator: ">",
    threshold: 0,
  },
  {
    seedEntry: 41,
    name: "clam_av_infected_files_found",
    description: "The antivirus scan of a data plane host found a known signature (FOUND) in a file.",
    severity: "High",
    tactic: "Execution",
    technique: "T1204",
    filter: `${CLAMAV} AND response.result LIKE '%FOUND%'`,
    operator: ">",
    threshold: 0,
  },
  {
    seedEntry: 42,
    name: "capsule8_container_breakout_events",
    description: "Capsule8 reported a container escape or a privileged container on a data plane host.",
    severity: "High",
    tactic: "PrivilegeEscalation",
    technique: "T1611",
    filter: `${CAPSULE8} AND action_name IN (${list("Container Escape via Kernel Exploitation", "Userland Container Escape", "New File Executed in Container", "Privileged Container Launched")})`,
    operator: ">",
    threshold: 0,
  },
  {
    seedEntry: 43,
    name: "capsule8_changes_to_host_security_settings",
    description: "Capsule8 reported changes to a data plane host's security settings (AppArmor, boot files, root certificates, CPU protections).",
    severity: "High",
    tactic: "DefenseEvasion",
    technique: "T1562.001",
    filter: `${CAPSULE8} AND action_name IN (${list("Processor-Level Protections Disabled", "AppArmor Disabled In Kernel", "AppArmor Profile Modified", "Boot Files Modified", "Root Certificate Store Modified")})`,
    operator: ">",
    threshold: 0,
  },
  {
    seedEntry: 44,
    name: "capsule8_kernel_related_events",
    description: "Capsule8 reported kernel activity on a data plane host (BPF program, kernel module, kernel exploit).",
    severity: "High",
    tactic: "Persistence",
    technique: "T1547.006",
    filter: `${CAPSULE8} AND action_name IN (${list("BPF Program Executed", "Kernel Module Loaded", "Kernel Exploit")})`,
    operator: ">",
    threshold: 0,
  },
  {
    seedEntry: 45,
    name: "capsule8_suspicious_host_activity",
    description: "Capsule8 reported suspicious activity on a data plane host (new executables, interactive shells, logging evasion, privileged containers).",
    severity: "Medium",
    tactic: "Execution",
    technique: "T1059",
    filter: `${CAPSULE8} AND action_name IN (${list("New File Executed in Container", "Suspicious Interactive Shell", "User Command Logging Evasion", "Privileged Container Launched")})`,
    operator: ">",
    threshold: 0,
  },
  // The Sentinel Databricks solution's rules, where no entry above covers one exactly.
  {
    origin: "sentinel",
    name: "sentinel_account_admin_privilege_granted",
    description: "Account admin rights were granted (setAccountAdmin); the Sentinel solution's rule.",
    severity: "High",
    tactic: "PrivilegeEscalation",
    technique: "T1098.003",
    filter: "action_name = 'setAccountAdmin'",
    operator: ">",
    threshold: 0,
  },
  {
    origin: "sentinel",
    name: "sentinel_ip_access_list_changed",
    description: "Any change to a workspace or account IP access list (create, update, replace, delete); the Sentinel solution's rule.",
    severity: "Medium",
    tactic: "DefenseEvasion",
    technique: "T1562.007",
    filter: "lower(action_name) LIKE '%ipaccesslist%' AND NOT (lower(action_name) LIKE 'get%' OR lower(action_name) LIKE 'list%')",
    operator: ">",
    threshold: 0,
  },
  {
    origin: "sentinel",
    name: "sentinel_failed_logins_from_ip",
    description: "At least 10 failed logins (status 400 or above) from one source IP in an hour; the Sentinel solution's rule.",
    severity: "Medium",
    tactic: "CredentialAccess",
    technique: "T1110",
    filter: "service_name = 'accounts' AND lower(action_name) LIKE '%login%' AND response.status_code >= 400",
    principal: FAILED_LOGIN_PRINCIPAL,
    groupBy: ["source_ip"],
    operator: ">=",
    threshold: 10,
  },
  {
    origin: "sentinel",
    name: "sentinel_long_lived_tokens",
    description: "A personal access token was generated with a lifetime over 90 days or with none; the Sentinel solution's rule.",
    severity: "Medium",
    tactic: "Persistence",
    technique: "T1098.001",
    filter: `action_name = 'generateDbToken' AND (${TOKEN_LIFETIME_MS} IS NULL OR ${TOKEN_LIFETIME_MS} > 7776000000 OR try_cast(request_params['tokenExpirationTime'] AS BIGINT) <= 0)`,
    operator: ">",
    threshold: 0,
  },
];

export const BUILT_IN_DETECTIONS: readonly Detection[] = Object.freeze(
  ENTRIES.map((entry): Detection => ({
    ...entry,
    groupBy: entry.groupBy ?? ["email"],
    windowMinutes: entry.windowMinutes ?? HOUR,
    enabled: true,
    origin: entry.origin ?? "seed",
  })),
);

export function builtInDetection(name: string): Detection | undefined {
  return BUILT_IN_DETECTIONS.find((d) => d.name === name);
}
