import { randomUUID } from "node:crypto";

/** A row of system.access.audit in the table's column names (what POST /admin/events takes). */
export type AuditRow = Record<string, unknown>;

let serial = 0;

/** A plausible audit row at the given time; fields can be overridden. */
export function auditRow(eventTime: string, overrides: AuditRow = {}): AuditRow {
  serial += 1;
  return {
    account_id: "acc-0000-1111",
    workspace_id: "1234567890123456",
    version: "2.0",
    event_time: eventTime,
    event_date: eventTime.slice(0, 10),
    source_ip_address: "10.1.2.3",
    user_agent: "test-agent/1.0",
    session_id: `session-${serial}`,
    user_identity: { email: "alice@example.com", subject_name: null },
    service_name: "clusters",
    action_name: "create",
    request_id: `req-${serial}`,
    request_params: { cluster_name: `c-${serial}` },
    response: { status_code: 200, error_message: null, result: null },
    audit_level: "WORKSPACE_LEVEL",
    event_id: randomUUID(),
    identity_metadata: null,
    ...overrides,
  };
}

/** n rows spread over [startMs, startMs + spanMs), microsecond times, some sharing one instant. */
export function rowsBetween(startMs: number, spanMs: number, n: number, overrides: AuditRow = {}): AuditRow[] {
  const rows: AuditRow[] = [];
  for (let i = 0; i < n; i++) {
    const offsetUs = Math.floor((i * spanMs * 1000) / n);
    const tied = i % 7 === 0 && i > 0 ? Math.floor(((i - 1) * spanMs * 1000) / n) : offsetUs;
    rows.push(auditRow(isoMicros(startMs * 1000 + tied), overrides));
  }
  return rows;
}

export function isoMicros(us: number): string {
  const ms = Math.floor(us / 1000);
  return `${new Date(ms).toISOString().slice(0, 23)}${String(us - ms * 1000).padStart(3, "0")}Z`;
}
