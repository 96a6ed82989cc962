import { BUILT_IN_DETECTIONS } from "../../shared/detections/catalog";
import { auditRow, isoMicros, type AuditRow } from "../support/auditRows";
import { SENTINEL_CASES } from "./sentinelCases";

/**
 * Per detection: rows that must raise exactly one alert (at the threshold's boundary: T+1
 * events for `> T`, T for `>= T`) and near misses that must raise none (one below, the wrong
 * action or service, the excluded System-User). Every variant gets its own principal, source
 * IP, workspace and metastore, so all of them can be evaluated together.
 */

export interface VariantKey {
  email: string;
  ip: string;
  workspace: string;
  metastore: string;
}

export interface Variant {
  why: string;
  /** How many events. */
  n: number;
  /** The i-th event's fields (merged over a plausible row); `timeMs` is its event time. */
  row: (k: VariantKey, i: number, timeMs: number) => AuditRow;
}

export interface DetectionCase {
  detection: string;
  fires: Variant[];
  misses: Variant[];
}

const ACCOUNTS_LOGIN = { service_name: "accounts", action_name: "login" };
const status = (code: number) => ({ response: { status_code: code, error_message: null, result: null } });
const result = (text: string) => ({ response: { status_code: 200, error_message: null, result: text } });
const params = (k: VariantKey, extra: Record<string, string> = {}) => ({ request_params: { metastore_id: k.metastore, ...extra } });
const action =
  (name: string, service = "workspace") =>
  (k: VariantKey) => ({ service_name: service, action_name: name, ...params(k) });
const systemUser = { user_identity: { email: "System-User", subject_name: null } };
const HOUR_MS = 3_600_000;

export const CASES: DetectionCase[] = [
  {
    detection: "repeated_failed_login_attempts",
    fires: [
      { why: "2 failed logins (> 1)", n: 2, row: (k) => ({ ...ACCOUNTS_LOGIN, ...status(401), ...params(k) }) },
      {
        why: "2 failed logins with the email in request_params.user",
        n: 2,
        row: (k) => ({
          ...ACCOUNTS_LOGIN,
          action_name: "samlLogin",
          ...status(403),
          user_identity: { email: null, subject_name: null },
          ...params(k, { user: k.email }),
        }),
      },
    ],
    misses: [
      { why: "1 failed login (not > 1)", n: 1, row: (k) => ({ ...ACCOUNTS_LOGIN, ...status(401), ...params(k) }) },
      { why: "2 successful logins", n: 2, row: (k) => ({ ...ACCOUNTS_LOGIN, ...status(200), ...params(k) }) },
    ],
  },
  {
    detection: "changes_to_admin_users",
    fires: [
      { why: "setAdmin", n: 1, row: action("setAdmin", "accounts") },
      {
        why: "added to admins",
        n: 1,
        row: (k) => ({ action_name: "addPrincipalToGroup", ...params(k, { targetGroupName: "admins", targetUserName: `new-admin.${k.email}` }) }),
      },
    ],
    misses: [{ why: "added to another group", n: 1, row: (k) => ({ action_name: "addPrincipalToGroup", ...params(k, { targetGroupName: "users" }) }) }],
  },
  {
    detection: "changes_to_workspace_configuration",
    fires: [
      {
        why: "workspaceConfEdit",
        n: 1,
        row: (k) => ({ ...action("workspaceConfEdit")(k), ...params(k, { workspaceConfKeys: "enableExportNotebook", workspaceConfValues: "true" }) }),
      },
    ],
    misses: [{ why: "workspaceConfGet", n: 1, row: action("workspaceConfGet") }],
  },
  {
    detection: "data_downloads_from_control_plane",
    fires: [
      { why: "21 result downloads (> 20)", n: 21, row: action("downloadPreviewResults", "notebook") },
      { why: "21 HTML exports", n: 21, row: (k) => ({ action_name: "workspaceExport", ...params(k, { workspaceExportFormat: "HTML" }) }) },
    ],
    misses: [
      { why: "20 downloads (not > 20)", n: 20, row: action("downloadPreviewResults", "notebook") },
      { why: "21 SOURCE exports", n: 21, row: (k) => ({ action_name: "workspaceExport", ...params(k, { workspaceExportFormat: "SOURCE" }) }) },
      { why: "21 arrows query results", n: 21, row: (k) => ({ action_name: "downloadQueryResult", ...params(k, { fileType: "arrows" }) }) },
    ],
  },
  {
    detection: "ip_access_list_failures",
    fires: [
      { why: "IpAccessDenied", n: 1, row: action("IpAccessDenied", "accounts") },
      {
        why: "a refusal with the principal in request_params.user only",
        n: 1,
        row: (k) => ({
          ...action("accountIpAclsValidationFailed", "accounts")(k),
          user_identity: { email: null, subject_name: null },
          ...params(k, { user: k.email }),
        }),
      },
    ],
    misses: [{ why: "a login", n: 1, row: action("login", "accounts") }],
  },
  {
    detection: "ip_access_list_changes",
    fires: [{ why: "createIpAccessList", n: 1, row: action("createIpAccessList", "accounts") }],
    misses: [{ why: "getIpAccessList", n: 1, row: action("getIpAccessList", "accounts") }],
  },
  {
    detection: "databricks_access_to_customer_workspaces",
    fires: [
      {
        why: "databricksAccess",
        n: 1,
        row: (k) => ({ ...action("databricksAccess", "genie")(k), ...params(k, { user: "support@databricks.com", approver: k.email, reason: "ES-1234" }) }),
      },
    ],
    misses: [{ why: "another genie action", n: 1, row: action("databricksAccessList", "genie") }],
  },
  {
    detection: "terms_of_service_changes",
    fires: [
      { why: "acceptTos", n: 1, row: action("acceptTos", "accounts") },
      {
        why: "acceptTos at account level naming its workspace",
        n: 1,
        row: (k) => ({ ...action("acceptTos", "accounts")(k), workspace_id: "0", ...params(k, { workspace_id: k.workspace }) }),
      },
    ],
    misses: [{ why: "getTos", n: 1, row: action("getTos", "accounts") }],
  },
  {
    detection: "account_settings_changes",
    fires: [
      {
        why: "account setSetting",
        n: 1,
        row: (k) => ({
          ...action("setSetting", "accounts")(k),
          ...params(k, { settingTypeName: "EnableResultsDownloading", settingValueForAudit: '{"enabled":true}' }),
          audit_level: "ACCOUNT_LEVEL",
          workspace_id: "0",
        }),
      },
    ],
    misses: [
      { why: "workspace-level setSetting", n: 1, row: (k) => ({ ...action("setSetting", "accounts")(k), audit_level: "WORKSPACE_LEVEL" }) },
      { why: "another service", n: 1, row: (k) => ({ ...action("setSetting", "settings")(k), audit_level: "ACCOUNT_LEVEL", workspace_id: "0" }) },
    ],
  },
  {
    detection: "global_init_script_changes",
    fires: [{ why: "a global init script created", n: 1, row: action("create", "globalInitScripts") }],
    misses: [{ why: "a cluster created", n: 1, row: action("create", "clusters") }],
  },
  {
    detection: "install_library_on_all_clusters",
    fires: [{ why: "installLibraryOnAllClusters", n: 1, row: action("installLibraryOnAllClusters", "clusterLibraries") }],
    misses: [
      { why: "installLibraries", n: 1, row: action("installLibraries", "clusterLibraries") },
      { why: "the action under another service", n: 1, row: action("installLibraryOnAllClusters", "clusters") },
    ],
  },
  {
    detection: "mount_point_creation",
    fires: [{ why: "mount", n: 1, row: (k) => ({ ...action("mount", "dbfs")(k), ...params(k, { mountPoint: "/mnt/x" }) }) }],
    misses: [{ why: "unmount", n: 1, row: action("unmount", "dbfs") }],
  },
  {
    detection: "long_lifetime_token_generation",
    fires: [
      { why: "a 73 h token", n: 1, row: (k, _i, t) => ({ action_name: "generateDbToken", ...params(k, { tokenExpirationTime: String(t + 73 * HOUR_MS) }) }) },
    ],
    misses: [
      {
        why: "a 72 h token (not over 72 h)",
        n: 1,
        row: (k, _i, t) => ({ action_name: "generateDbToken", ...params(k, { tokenExpirationTime: String(t + 72 * HOUR_MS) }) }),
      },
      {
        why: "a 72 h 30 min token (72 whole hours; over 72 h in milliseconds)",
        n: 1,
        row: (k, _i, t) => ({ action_name: "generateDbToken", ...params(k, { tokenExpirationTime: String(t + 72.5 * HOUR_MS) }) }),
      },
      { why: "another action", n: 1, row: (k, _i, t) => ({ action_name: "listTokens", ...params(k, { tokenExpirationTime: String(t + 100 * HOUR_MS) }) }) },
    ],
  },
  {
    detection: "destructive_activities",
    fires: [{ why: "51 deletes in a day (> 50)", n: 51, row: action("deleteCluster", "clusters") }],
    misses: [
      { why: "50 deletes (the alert's >= 50, not the query's > 50)", n: 50, row: action("moveToTrash", "workspace") },
      { why: "50 deletes by System-User", n: 50, row: (k) => ({ ...action("deleteJob", "jobs")(k), ...systemUser }) },
    ],
  },
  {
    detection: "potential_privilege_escalation",
    fires: [{ why: "26 permission changes (> 25)", n: 26, row: action("changeClusterAcl", "clusters") }],
    misses: [
      { why: "25 permission changes (the alert's >= 25, not the query's > 25)", n: 25, row: action("changeClusterAcl", "clusters") },
      { why: "25 by System-User", n: 25, row: (k) => ({ ...action("changeJobAcl", "jobs")(k), ...systemUser }) },
    ],
  },
  {
    detection: "repeated_access_to_secrets",
    fires: [
      {
        why: "10 different secrets (>= 10)",
        n: 10,
        row: (k, i) => ({ service_name: "secrets", action_name: "getSecret", ...params(k, { scope: "s", key: `k${i}` }) }),
      },
    ],
    misses: [
      {
        why: "20 reads of 9 secrets",
        n: 20,
        row: (k, i) => ({ service_name: "secrets", action_name: "getSecret", ...params(k, { scope: "s", key: `k${i % 9}` }) }),
      },
      {
        why: "10 scope/key pairs with 5 key names",
        n: 10,
        row: (k, i) => ({ service_name: "secrets", action_name: "getSecret", ...params(k, { scope: `s${i}`, key: `k${i % 5}` }) }),
      },
      {
        why: "9 key names and a read without a key",
        n: 10,
        row: (k, i) => ({ service_name: "secrets", action_name: "getSecret", ...params(k, i < 9 ? { scope: "s", key: `k${i}` } : { scope: "s" }) }),
      },
      {
        why: "10 secrets by System-User",
        n: 10,
        row: (k, i) => ({ service_name: "secrets", action_name: "getSecret", ...params(k, { scope: "s", key: `k${i}` }), ...systemUser }),
      },
    ],
  },
  {
    detection: "access_to_multiple_workspaces",
    fires: [{ why: "5 workspaces in a day (>= 5)", n: 5, row: (k, i) => ({ workspace_id: `${k.workspace.slice(0, -1)}${i}` }) }],
    misses: [
      { why: "4 workspaces, 12 events", n: 12, row: (k, i) => ({ workspace_id: `${k.workspace.slice(0, -1)}${i % 4}` }) },
      {
        why: "5 workspaces as 'unknown'",
        n: 5,
        row: (k, i) => ({ workspace_id: `${k.workspace.slice(0, -1)}${i}`, user_identity: { email: "unknown", subject_name: null } }),
      },
    ],
  },
  {
    detection: "use_of_print_statements",
    fires: [
      { why: "print (", n: 1, row: (k) => ({ ...action("runCommand", "notebook")(k), ...params(k, { commandText: "x = 1\nprint (x)" }) }) },
      {
        why: "print( in a long command",
        n: 1,
        row: (k) => ({ ...action("runCommand", "notebook")(k), ...params(k, { commandText: `print(1)\n${"x = 1\n".repeat(400)}` }) }),
      },
    ],
    misses: [{ why: "reprint(", n: 1, row: (k) => ({ ...action("runCommand", "notebook")(k), ...params(k, { commandText: "reprint(x)" }) }) }],
  },
  {
    detection: "repeated_unauthorized_uc_requests",
    fires: [{ why: "26 refused UC requests (> 25)", n: 26, row: (k) => ({ ...action("getTable", "unityCatalog")(k), ...status(403) }) }],
    misses: [
      { why: "25 refused", n: 25, row: (k) => ({ ...action("getTable", "unityCatalog")(k), ...status(403) }) },
      { why: "26 allowed", n: 26, row: (k) => ({ ...action("getTable", "unityCatalog")(k), ...status(200) }) },
    ],
  },
  {
    detection: "repeated_unauthorized_uc_data_requests",
    fires: [
      { why: "16 refused data requests (> 15)", n: 16, row: (k) => ({ ...action("generateTemporaryTableCredential", "unityCatalog")(k), ...status(401) }) },
    ],
    misses: [
      { why: "15 refused", n: 15, row: (k) => ({ ...action("generateTemporaryTableCredential", "unityCatalog")(k), ...status(401) }) },
      { why: "16 refused getTable", n: 16, row: (k) => ({ ...action("getTable", "unityCatalog")(k), ...status(401) }) },
    ],
  },
  {
    detection: "high_number_of_read_writes",
    fires: [{ why: "21 reads, 21 writes elsewhere", n: 42, row: (k, i) => readWrite(k, i, (j) => `cat.sch.w${j}`) }],
    misses: [
      { why: "21 reads, 21 writes to what was read", n: 42, row: (k, i) => readWrite(k, i, (j) => `cat.sch.r${j}`) },
      { why: "20 reads, 22 writes elsewhere", n: 42, row: (k, i) => readWrite(k, i + 1, (j) => `cat.sch.w${j}`) },
      {
        why: "21 reads of 3 securables, 21 writes elsewhere (events, not securables)",
        n: 42,
        row: (k, i) => {
          const row = readWrite(k, i, (j) => `cat.sch.w${j}`);
          return i < 21 ? { ...row, ...params(k, { operation: "READ", table_full_name: `cat.sch.r${i % 3}` }) } : row;
        },
      },
      {
        why: "21 reads, 21 writes to one securable",
        n: 42,
        row: (k, i) => readWrite(k, i, () => "cat.sch.w0"),
      },
    ],
  },
  {
    detection: "delta_sharing_recipients_without_ip_acls",
    fires: [{ why: "a recipient without IP ACL", n: 1, row: action("createRecipient", "unityCatalog") }],
    misses: [
      {
        why: "a recipient with an IP ACL",
        n: 1,
        row: (k) => ({ ...action("createRecipient", "unityCatalog")(k), ...params(k, { ip_access_list: "10.0.0.0/8" }) }),
      },
    ],
  },
  {
    detection: "delta_sharing_ip_access_list_failures",
    fires: [
      {
        why: "a refused share query",
        n: 1,
        row: (k) => ({ ...action("deltaSharingQueryTable", "unityCatalog")(k), ...params(k, { is_ip_access_denied: "true" }) }),
      },
    ],
    misses: [
      {
        why: "an allowed share query",
        n: 1,
        row: (k) => ({ ...action("deltaSharingQueryTable", "unityCatalog")(k), ...params(k, { is_ip_access_denied: "false" }) }),
      },
    ],
  },
  {
    detection: "delta_sharing_recipient_token_lifetime_change",
    fires: [
      {
        why: "token lifetime set",
        n: 1,
        row: (k) => ({ ...action("updateMetastore", "unityCatalog")(k), ...params(k, { delta_sharing_recipient_token_lifetime_in_seconds: "86400" }) }),
      },
    ],
    misses: [{ why: "another metastore change", n: 1, row: (k) => ({ ...action("updateMetastore", "unityCatalog")(k), ...params(k, { owner: "x" }) }) }],
  },
  {
    detection: "clam_av_infected_files_detected",
    fires: [
      {
        why: "2 infected files",
        n: 1,
        row: (k) => ({
          ...action("clamAVScanAction", "clamAVScanService-dataplane")(k),
          ...params(k, { instanceId: `i-${k.metastore}` }),
          ...result("Infected files: 2"),
        }),
      },
    ],
    misses: [
      { why: "0 infected files", n: 1, row: (k) => ({ ...action("clamAVScanAction", "clamAVScanService-dataplane")(k), ...result("Infected files: 0") }) },
      { why: "the diagnostic category's name", n: 1, row: (k) => ({ ...action("clamAVScanAction", "clamAVScan")(k), ...result("Infected files: 2") }) },
    ],
  },
  {
    detection: "clam_av_infected_files_found",
    fires: [
      {
        why: "a FOUND line",
        n: 1,
        row: (k) => ({ ...action("clamAVScanAction", "clamAVScanService-dataplane")(k), ...result("/tmp/x: Eicar-Signature FOUND") }),
      },
    ],
    misses: [{ why: "a clean scan", n: 1, row: (k) => ({ ...action("clamAVScanAction", "clamAVScanService-dataplane")(k), ...result("OK") }) }],
  },
  {
    detection: "capsule8_container_breakout_events",
    fires: [{ why: "Userland Container Escape", n: 1, row: action("Userland Container Escape", "capsule8-alerts-dataplane") }],
    misses: [{ why: "a kernel event", n: 1, row: action("Kernel Module Loaded", "capsule8-alerts-dataplane") }],
  },
  {
    detection: "capsule8_changes_to_host_security_settings",
    fires: [{ why: "AppArmor Profile Modified", n: 1, row: action("AppArmor Profile Modified", "capsule8-alerts-dataplane") }],
    misses: [{ why: "a breakout event", n: 1, row: action("Userland Container Escape", "capsule8-alerts-dataplane") }],
  },
  {
    detection: "capsule8_kernel_related_events",
    fires: [{ why: "Kernel Module Loaded", n: 1, row: action("Kernel Module Loaded", "capsule8-alerts-dataplane") }],
    misses: [{ why: "a host settings event", n: 1, row: action("AppArmor Profile Modified", "capsule8-alerts-dataplane") }],
  },
  {
    detection: "capsule8_suspicious_host_activity",
    fires: [{ why: "Suspicious Interactive Shell", n: 1, row: action("Suspicious Interactive Shell", "capsule8-alerts-dataplane") }],
    misses: [{ why: "the action under another service", n: 1, row: action("Suspicious Interactive Shell", "clusters") }],
  },
  // The Sentinel solution's rules: their branches and status filters (sentinelRows.ts holds the
  // rows both the SQL entries and the KQL rules are evaluated on).
  ...SENTINEL_CASES,
];

/** Event i of 42: the first 21 read `cat.sch.r<i>`, the rest write to `writeTo(i)`. A shifted start (i + 1) gives 20 reads and 22 writes. */
function readWrite(k: VariantKey, i: number, writeTo: (j: number) => string): AuditRow {
  const reading = i < 21;
  const j = reading ? i : i - 21;
  return {
    service_name: "unityCatalog",
    action_name: "generateTemporaryTableCredential",
    ...params(k, { operation: reading ? "READ" : "READ_WRITE", table_full_name: reading ? `cat.sch.r${j}` : writeTo(j) }),
  };
}

export interface CaseRows {
  testCase: DetectionCase;
  variant: Variant;
  fires: boolean;
  rows: AuditRow[];
  eventIds: Set<string>;
}

/**
 * Every variant's rows on one UTC day, each variant with its own principal, source IP,
 * workspace and metastore: hourly detections' rows in 10:00-10:59, day detections' spread over
 * the day (every 25 minutes).
 */
export function buildCaseRows(dayMs: number): CaseRows[] {
  const out: CaseRows[] = [];
  let serial = 0;
  for (const testCase of CASES) {
    const daily = BUILT_IN_DETECTIONS.find((d) => d.name === testCase.detection)?.windowMinutes === 1440;
    for (const [fires, variants] of [
      [true, testCase.fires],
      [false, testCase.misses],
    ] as const) {
      for (const variant of variants) {
        serial += 1;
        const n = String(serial).padStart(4, "0");
        const key: VariantKey = {
          email: `case${n}@example.com`,
          ip: `10.${Math.floor(serial / 250)}.${serial % 250}.7`,
          workspace: `7${n.padStart(15, "0")}`,
          metastore: `metastore-${n}`,
        };
        const rows = Array.from({ length: variant.n }, (_, i) => {
          const timeMs = daily ? dayMs + i * 25 * 60_000 + serial : dayMs + 10 * 3_600_000 + i * 60_000 + serial;
          const base = auditRow(isoMicros(timeMs * 1000), {
            workspace_id: key.workspace,
            source_ip_address: `${key.ip}:${40000 + i}`,
            user_identity: { email: key.email, subject_name: null },
          });
          return { ...base, ...variant.row(key, i, timeMs) };
        });
        out.push({ testCase, variant, fires, rows, eventIds: new Set(rows.map((r) => r.event_id as string)) });
      }
    }
  }
  return out;
}

/** The alerts that belong to a variant: those sampling its events. */
export function alertsOfVariant<T extends { detection: string; sample_event_ids: string[] }>(alerts: readonly T[], rows: CaseRows): T[] {
  return alerts.filter((a) => a.detection === rows.testCase.detection && a.sample_event_ids.some((id) => rows.eventIds.has(id)));
}
