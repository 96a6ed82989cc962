import { randomBytes, randomUUID } from "node:crypto";
import type { AuditRowInput } from "../sandbox/sqlWarehouse/auditTable";
import { DEFAULT_SYNTHETIC_ACCOUNT, DEFAULT_SYNTHETIC_WORKSPACES, SYNTHETIC_SECRET_KEYS } from "../sandbox/sqlWarehouse/synthetic";
import { microsToIso } from "../shared/timestamps";

/**
 * A handful of attacks for the demo, as rows of the same shape as the synthetic generator's
 * (same account, workspaces, services, actions and request_params keys), so the detections
 * raise alerts over ordinary-looking activity. Each attack has its own principal and IP, which
 * lets the demo tell its alerts from those the random activity happens to raise.
 */

const HOUR_MS = 3_600_000;
const MINUTE_MS = 60_000;
const DAY_MS = 24 * HOUR_MS;

export interface DemoAttack {
  detection: string;
  /** Who the alert names (the principal the detection groups by). */
  principal: string;
  story: string;
}

export const DEMO_ATTACKS: readonly DemoAttack[] = [
  { detection: "repeated_failed_login_attempts", principal: "finance.admin@contoso.com", story: "6 failed password logins from one outside IP" },
  { detection: "repeated_access_to_secrets", principal: "eve.intern@contoso.com", story: "12 different secrets read in 3 minutes" },
  { detection: "changes_to_admin_users", principal: "eve.intern@contoso.com", story: "an account admin granted to a new user" },
  { detection: "long_lifetime_token_generation", principal: "eve.intern@contoso.com", story: "a personal access token valid 90 days" },
];

const ATTACKER_IP = "198.51.100.66";
const INSIDER_IP = "203.0.113.45";
const INSIDER_AGENT = "databricks-sdk-py/0.28.0 python/3.11.9 os/linux auth/pat";

/**
 * The attack rows, all inside the last complete hour before `nowMs` (its minutes 5 to 20), so
 * an hourly detection over that hour sees them, and the export (which stops at now minus its
 * settle delay, at least 40 minutes later) archives them.
 */
export function demoAttackRows(nowMs: number): { rows: AuditRowInput[]; hourStartMs: number } {
  const hourStartMs = Math.floor(nowMs / HOUR_MS) * HOUR_MS - HOUR_MS;
  const workspaceId = DEFAULT_SYNTHETIC_WORKSPACES[0]!;
  const rows: AuditRowInput[] = [];
  const session = randomBytes(16).toString("hex");
  const row = (atMs: number, fields: Partial<AuditRowInput> & Pick<AuditRowInput, "service_name" | "action_name" | "request_params">): AuditRowInput => ({
    account_id: DEFAULT_SYNTHETIC_ACCOUNT,
    workspace_id: workspaceId,
    version: "2.0",
    event_time: microsToIso(atMs * 1000),
    source_ip_address: INSIDER_IP,
    user_agent: INSIDER_AGENT,
    session_id: session,
    user_identity: { email: "eve.intern@contoso.com", subject_name: null },
    request_id: randomUUID(),
    response: { status_code: 200, error_message: null, result: null },
    audit_level: "WORKSPACE_LEVEL",
    event_id: randomUUID(),
    identity_metadata: null,
    ...fields,
  });

  const loginsAt = hourStartMs + 5 * MINUTE_MS;
  for (let i = 0; i < 6; i++) {
    rows.push(
      row(loginsAt + i * 7_000, {
        source_ip_address: `${ATTACKER_IP}:${51000 + i}`,
        user_agent: "python-requests/2.31.0",
        session_id: null,
        user_identity: { email: "finance.admin@contoso.com", subject_name: null },
        service_name: "accounts",
        action_name: "login",
        request_params: { user: "finance.admin@contoso.com", authenticationMethod: "password" },
        response: { status_code: 401, error_message: "Invalid credentials", result: null },
      }),
    );
  }
  const secretsAt = hourStartMs + 10 * MINUTE_MS;
  for (const [i, key] of SYNTHETIC_SECRET_KEYS.entries()) {
    rows.push(
      row(secretsAt + i * 15_000, { service_name: "secrets", action_name: "getSecret", request_params: { scope: i < 6 ? "prod-kv" : "api-keys", key } }),
    );
  }
  rows.push(
    row(hourStartMs + 15 * MINUTE_MS, {
      workspace_id: "0",
      audit_level: "ACCOUNT_LEVEL",
      service_name: "accounts",
      action_name: "setAccountAdmin",
      request_params: { targetUserName: "mallory.ext@contoso.com" },
    }),
  );
  const tokenAtMs = hourStartMs + 20 * MINUTE_MS;
  rows.push(
    row(tokenAtMs, {
      service_name: "accounts",
      action_name: "generateDbToken",
      request_params: { tokenExpirationTime: String(tokenAtMs + 90 * DAY_MS), comment: null },
    }),
  );
  return { rows, hourStartMs };
}
