import type { DetectionCase, VariantKey } from "./cases";

/**
 * The Sentinel Databricks solution's four rules: each branch of a rule's filter fires, and its
 * status filter, its services and its near misses (the conditions our earlier rules used) do
 * not. The same rows are evaluated by the catalog's SQL entry on the warehouse stand-in
 * (catalog.test.ts) and by the rule's KQL in sentinel/analytic-rules (sentinelAgreement.test.ts).
 */

const HOUR_MS = 3_600_000;
const DAY_MS = 24 * HOUR_MS;

const params = (k: VariantKey, extra: Record<string, string> = {}) => ({ request_params: { metastore_id: k.metastore, ...extra } });
const status = (code: number | null) => ({ response: { status_code: code, error_message: null, result: null } });
const event =
  (service: string, actionName: string, code: number | null = 200, extra: Record<string, string> = {}) =>
  (k: VariantKey) => ({ service_name: service, action_name: actionName, ...params(k, extra), ...status(code) });
/** A token event whose tokenExpirationTime is `lifetimeMs` after the event (or the given text). */
const token =
  (actionName: string, expiry: (timeMs: number) => string | undefined, service = "accounts", code = 200) =>
  (k: VariantKey, _i: number, timeMs: number) => {
    const value = expiry(timeMs);
    return event(service, actionName, code, value === undefined ? {} : { tokenExpirationTime: value })(k);
  };
const after = (lifetimeMs: number) => (timeMs: number) => String(timeMs + lifetimeMs);

export const SENTINEL_CASES: DetectionCase[] = [
  {
    detection: "sentinel_account_admin_privilege_granted",
    fires: [
      { why: "setAdmin (accounts)", n: 1, row: event("accounts", "setAdmin") },
      { why: "updateRuleSet (accountsAccessControl)", n: 1, row: event("accountsAccessControl", "updateRuleSet") },
      { why: "setAccountAdmin (accountsManager)", n: 1, row: event("accountsManager", "setAccountAdmin", 204) },
      { why: "added to the group Admins (=~ ignores case)", n: 1, row: event("accounts", "addPrincipalToGroup", 200, { targetGroupName: "Admins" }) },
    ],
    misses: [
      { why: "setAdmin refused (403)", n: 1, row: event("accounts", "setAdmin", 403) },
      { why: "setAdmin without a status", n: 1, row: event("accounts", "setAdmin", null) },
      { why: "setAdmin by another service", n: 1, row: event("workspace", "setAdmin") },
      { why: "added to another group", n: 1, row: event("accounts", "addPrincipalToGroup", 200, { targetGroupName: "users" }) },
      { why: "changeAccountOwner (not in the rule)", n: 1, row: event("accounts", "changeAccountOwner") },
    ],
  },
  {
    detection: "sentinel_ip_access_list_changed",
    fires: [
      { why: "ipAccessList create", n: 1, row: event("ipAccessList", "create") },
      { why: "ipAccessList replace", n: 1, row: event("ipAccessList", "replace") },
      {
        why: "workspaceConfEdit of enableIpAccessLists",
        n: 1,
        row: event("workspace", "workspaceConfEdit", 200, { workspaceConfKeys: "enableIpAccessLists", workspaceConfValues: "false" }),
      },
      { why: "accounts accountIpAclsValidationFailed", n: 1, row: event("accounts", "accountIpAclsValidationFailed") },
    ],
    misses: [
      { why: "ipAccessList delete refused (403)", n: 1, row: event("ipAccessList", "delete", 403) },
      { why: "ipAccessList update without a status", n: 1, row: event("ipAccessList", "update", null) },
      { why: "ipAccessList list", n: 1, row: event("ipAccessList", "list") },
      { why: "createIpAccessList under accounts (not in the rule)", n: 1, row: event("accounts", "createIpAccessList") },
      { why: "workspaceConfEdit of another key", n: 1, row: event("workspace", "workspaceConfEdit", 200, { workspaceConfKeys: "enableTokensConfig" }) },
      {
        why: "workspaceConfEdit of a key that only starts with the term",
        n: 1,
        row: event("workspace", "workspaceConfEdit", 200, { workspaceConfKeys: "enableIpAccessListsForAll" }),
      },
      { why: "accountIpAclsValidationFailed by another service", n: 1, row: event("workspace", "accountIpAclsValidationFailed") },
    ],
  },
  {
    detection: "sentinel_failed_logins_from_ip",
    fires: [
      {
        why: "10 failed logins from one IP, other ports and users (>= 10)",
        n: 10,
        row: (k, i) => ({ ...event("accounts", "login", 401)(k), user_identity: { email: `u${i}.${k.email}`, subject_name: null } }),
      },
      { why: "10 Login failures with status 500 (has ignores case)", n: 10, row: event("accounts", "Login", 500) },
    ],
    misses: [
      { why: "9 failed logins", n: 9, row: event("accounts", "login", 401) },
      { why: "10 failed aadBrowserLogin (not the whole term)", n: 10, row: event("accounts", "aadBrowserLogin", 401) },
      { why: "10 failures of another service", n: 10, row: event("clusters", "login", 401) },
      { why: "10 logins with status 399", n: 10, row: event("accounts", "login", 399) },
    ],
  },
  {
    detection: "sentinel_long_lived_tokens",
    fires: [
      { why: "a token without expiry", n: 1, row: token("generateDbToken", () => undefined) },
      { why: "a tokenCreated (tokens) with expiry 0", n: 1, row: token("tokenCreated", () => "0", "tokens") },
      { why: "a token whose expiry is not a number", n: 1, row: token("generateDbToken", () => "never") },
      { why: "90 days 20 h: 91 calendar days", n: 1, row: token("generateDbToken", after(90 * DAY_MS + 20 * HOUR_MS)) },
      { why: "an expiry before the event", n: 1, row: token("generateDbToken", after(-2 * DAY_MS)) },
    ],
    misses: [
      { why: "a 30-day token", n: 1, row: token("generateDbToken", after(30 * DAY_MS)) },
      { why: "90 days 13 h: 90 calendar days", n: 1, row: token("generateDbToken", after(90 * DAY_MS + 13 * HOUR_MS)) },
      { why: "a token without expiry, refused (403)", n: 1, row: token("generateDbToken", () => undefined, "accounts", 403) },
      { why: "a token without expiry by another service", n: 1, row: token("generateDbToken", () => undefined, "workspace") },
      { why: "another token action", n: 1, row: token("listTokens", () => undefined) },
    ],
  },
];
