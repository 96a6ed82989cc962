import {
  FAILED_LOGIN_PRINCIPAL,
  SENTINEL_ADMIN_ACTIONS,
  SENTINEL_ADMIN_SERVICES,
  TOKEN_EXPIRY,
  TOKEN_EXPIRY_MS,
  TOKEN_LIFETIME_CALENDAR_DAYS,
  kqlHas,
  list,
  rp,
} from "./facts";
import type { CatalogEntry } from "./types";

/**
 * The Microsoft Sentinel Databricks solution's 4 rules (Azure-Sentinel, Solutions/Databricks/Analytic
 * Rules), none of which a seed entry covers exactly, as their KQL says.
 */
export const SENTINEL_ENTRIES: CatalogEntry[] = [
  // The Sentinel Databricks solution's rules, as their KQL says (sentinel/analytic-rules keeps the
  // same conditions; test/detections/sentinelAgreement.test.ts holds both to the same rows). KQL's
  // `<` on a missing status is false, as SQL's is: an event without a status never counts.
  {
    origin: "sentinel",
    name: "sentinel_account_admin_privilege_granted",
    description:
      "A principal was made an account or workspace admin (setAdmin, setAccountAdmin, updateRuleSet) or added to the admins group, and the request succeeded; the Sentinel solution's rule.",
    severity: "High",
    tactic: "PrivilegeEscalation",
    technique: "T1098.003",
    filter:
      `service_name IN (${list(...SENTINEL_ADMIN_SERVICES)}) AND (action_name IN (${list(...SENTINEL_ADMIN_ACTIONS)})` +
      // `=~` is KQL's case-insensitive equality.
      ` OR (action_name = 'addPrincipalToGroup' AND lower(request_params['targetGroupName']) = 'admins')) AND response.status_code < 400`,
    context: { target_user: `coalesce(${rp("targetUserName")}, ${rp("user")}, ${rp("targetUserId")})`, target_group: rp("targetGroupName") },
    operator: ">",
    threshold: 0,
  },
  {
    origin: "sentinel",
    name: "sentinel_ip_access_list_changed",
    description:
      "An IP access list was created, updated, replaced or deleted, the workspace setting that enables IP access lists was edited, or an account IP access list check failed, and the request succeeded; the Sentinel solution's rule.",
    severity: "Medium",
    tactic: "DefenseEvasion",
    technique: "T1562.007",
    filter:
      `((service_name = 'ipAccessList' AND action_name IN (${list("create", "update", "delete", "replace")}))` +
      ` OR (service_name = 'workspace' AND action_name = 'workspaceConfEdit' AND ${kqlHas("request_params['workspaceConfKeys']", "enableIpAccessLists")})` +
      ` OR (service_name = 'accounts' AND action_name = 'accountIpAclsValidationFailed')) AND response.status_code < 400`,
    context: { ip_access_list_id: rp("ipAccessListId"), workspace_conf_keys: rp("workspaceConfKeys"), workspace_conf_values: rp("workspaceConfValues") },
    operator: ">",
    threshold: 0,
  },
  {
    origin: "sentinel",
    name: "sentinel_failed_logins_from_ip",
    description:
      "At least 10 failed logins (status 400 or above; an accounts action whose name has login as a whole word, so login but not aadBrowserLogin or tokenLogin) from one source IP in an hour; the Sentinel solution's rule.",
    severity: "Medium",
    tactic: "CredentialAccess",
    technique: "T1110",
    filter: `service_name = 'accounts' AND ${kqlHas("action_name", "login")} AND response.status_code >= 400`,
    principal: FAILED_LOGIN_PRINCIPAL,
    groupBy: ["source_ip"],
    measureName: "FailedLogins",
    context: { error_messages: "response.error_message" },
    operator: ">=",
    threshold: 10,
  },
  {
    origin: "sentinel",
    name: "sentinel_long_lived_tokens",
    description:
      "A token was generated (generateDbToken, tokenCreated) with no expiry or one more than 90 calendar days after its creation, and the request succeeded; the Sentinel solution's rule.",
    severity: "Medium",
    tactic: "Persistence",
    technique: "T1098.001",
    filter:
      `service_name IN (${list("accounts", "tokens")}) AND action_name IN (${list("generateDbToken", "tokenCreated")}) AND response.status_code < 400` +
      ` AND (${TOKEN_EXPIRY_MS} IS NULL OR ${TOKEN_EXPIRY_MS} <= 0 OR ${TOKEN_LIFETIME_CALENDAR_DAYS} < 0 OR ${TOKEN_LIFETIME_CALENDAR_DAYS} > 90)`,
    context: { lifetime_days: TOKEN_LIFETIME_CALENDAR_DAYS, token_expiration: TOKEN_EXPIRY, comment: rp("comment") },
    operator: ">",
    threshold: 0,
  },
];
