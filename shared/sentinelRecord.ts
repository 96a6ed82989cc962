import type { AuditEvent } from "./auditEvent";

/**
 * One row of the Sentinel solution's DatabricksAudit_CL table (Azure-Sentinel Solutions/Databricks),
 * so its analytic rules run unchanged, plus EventId and IdentityMetadata.
 */
export interface SentinelAuditRecord {
  TimeGenerated: string;
  EventTime: string;
  SchemaVersion: string | null;
  AuditLevel: string | null;
  AccountId: string | null;
  WorkspaceId: string | null;
  ServiceName: string | null;
  ActionName: string | null;
  RequestId: string | null;
  SessionId: string | null;
  SourceIPAddress: string | null;
  UserAgent: string | null;
  UserEmail: string | null;
  UserSubjectName: string | null;
  UserIdentity: AuditEvent["user_identity"];
  RequestParams: Record<string, string | null> | null;
  ResponseStatusCode: number | null;
  ResponseErrorMessage: string | null;
  ResponseResult: string | null;
  EventId: string;
  IdentityMetadata: AuditEvent["identity_metadata"];
}

/**
 * Log Analytics truncates any field over 64 KB (a truncated dynamic column is no longer JSON)
 * and rejects a record over 1 MB outright. Values are capped below that for this sink only;
 * the blob archive keeps them whole. The marker says so, and where the full value is.
 */
export const MAX_FIELD_BYTES = 32 * 1024;
export const TRUNCATION_MARKER = "…[truncated by dbx-audit; the full value is in the blob archive]";
/** Added to RequestParams when any of its values was capped. */
export const TRUNCATED_KEYS_PARAM = "dbxAuditTruncatedKeys";

export function toSentinelRecord(event: AuditEvent): SentinelAuditRecord {
  return {
    // Log Analytics replaces a TimeGenerated older than 2 days with the receive time; EventTime keeps the truth.
    TimeGenerated: event.event_time,
    EventTime: event.event_time,
    SchemaVersion: event.version,
    AuditLevel: event.audit_level,
    AccountId: event.account_id,
    WorkspaceId: event.workspace_id,
    ServiceName: event.service_name,
    ActionName: event.action_name,
    RequestId: event.request_id,
    SessionId: event.session_id,
    SourceIPAddress: event.source_ip_address,
    UserAgent: capText(event.user_agent),
    UserEmail: event.user_identity?.email ?? null,
    UserSubjectName: event.user_identity?.subject_name ?? null,
    UserIdentity: event.user_identity,
    RequestParams: capParams(event.request_params),
    ResponseStatusCode: event.response?.status_code ?? null,
    ResponseErrorMessage: capText(event.response?.error_message ?? null),
    ResponseResult: capText(event.response?.result ?? null),
    EventId: event.event_id,
    IdentityMetadata: event.identity_metadata,
  };
}

function capText(value: string | null): string | null {
  if (value === null || Buffer.byteLength(value, "utf8") <= MAX_FIELD_BYTES) return value;
  return truncateUtf8(value, MAX_FIELD_BYTES - Buffer.byteLength(TRUNCATION_MARKER, "utf8")) + TRUNCATION_MARKER;
}

/** Keeps the serialized map under MAX_FIELD_BYTES by shortening the longest values, and names them. */
function capParams(params: Record<string, string | null> | null): Record<string, string | null> | null {
  if (!params || maxJsonBytes(params) <= MAX_FIELD_BYTES || jsonBytes(params) <= MAX_FIELD_BYTES) return params;
  const capped: Record<string, string | null> = { ...params, [TRUNCATED_KEYS_PARAM]: "" };
  const truncatedKeys = new Set<string>();
  const markerBytes = Buffer.byteLength(TRUNCATION_MARKER, "utf8");
  for (let size = jsonBytes(capped); size > MAX_FIELD_BYTES; size = jsonBytes(capped)) {
    const longest = Object.keys(capped)
      .filter((k) => k !== TRUNCATED_KEYS_PARAM)
      .reduce((a, b) => ((capped[b]?.length ?? 0) > (capped[a]?.length ?? 0) ? b : a));
    const value = params[longest] ?? "";
    const current = Buffer.byteLength(capped[longest] ?? "", "utf8");
    // JSON escaping can make a value longer than its bytes: shrink by the excess, at least by half.
    const target = Math.min(Math.floor(current / 2), current - (size - MAX_FIELD_BYTES) - markerBytes);
    const shortened = truncateUtf8(value, target) + TRUNCATION_MARKER;
    if (shortened === capped[longest]) break; // only keys left: nothing more to shorten
    capped[longest] = shortened;
    truncatedKeys.add(longest);
    capped[TRUNCATED_KEYS_PARAM] = [...truncatedKeys].join(",");
  }
  return capped;
}

/** An upper bound of the map's JSON size without serializing it (a character escapes to at most 6 bytes). */
function maxJsonBytes(params: Record<string, string | null>): number {
  let chars = 2;
  for (const key in params) chars += key.length + (params[key]?.length ?? 4) + 6;
  return chars * 6;
}

function jsonBytes(value: unknown): number {
  return Buffer.byteLength(JSON.stringify(value), "utf8");
}

/** Cuts to at most maxBytes of UTF-8 without splitting a character. */
export function truncateUtf8(value: string, maxBytes: number): string {
  if (maxBytes <= 0) return "";
  const buffer = Buffer.from(value, "utf8");
  if (buffer.length <= maxBytes) return value;
  let end = maxBytes;
  while (end > 0 && (buffer[end]! & 0xc0) === 0x80) end--;
  return buffer.subarray(0, end).toString("utf8");
}

/**
 * The Logs Ingestion client cuts uploads into calls whose records' JSON sizes sum below
 * 1,000,000 bytes. Cutting the same way here means one upload() of a chunk is exactly one
 * HTTP call, so a confirmed chunk is a confirmed call: the unit the export records.
 */
export const MAX_CALL_BYTES = 1_000_000;
