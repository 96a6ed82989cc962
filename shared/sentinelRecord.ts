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

/**
 * The record of an event from its archive line (prepareEvents' JSON of the redacted event):
 * the same record toSentinelRecord makes of the event, since the line holds every column and
 * no undefined value.
 */
export function sentinelRecordFromLine(line: Uint8Array): SentinelAuditRecord {
  return toSentinelRecord(JSON.parse(lineText(line)) as AuditEvent);
}

/** An archive line's text (its newline included). */
export function lineText(line: Uint8Array): string {
  return Buffer.from(line.buffer, line.byteOffset, line.byteLength).toString("utf8");
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
 * The UTF-8 size of JSON.stringify(record), from the size of the event's own JSON (the archive
 * line, serialized anyway) instead of serializing the record once more. The record holds the
 * event's values under other keys; it adds a second copy of event_time, UserEmail and
 * UserSubjectName, flattens `response` and drops event_date, so the two sizes differ by the
 * keys and those few short values. For events as eventFromRow builds them (every column
 * present, none undefined); when a value was capped for this sink (over 32 KB, rare) it
 * serializes the record instead. The record is built only when the event's JSON is larger than
 * a field may be: otherwise no value of it can be over the cap.
 */
export function sentinelRecordBytes(event: AuditEvent, eventJsonBytes: number): number {
  const response = event.response;
  if (eventJsonBytes > MAX_FIELD_BYTES) {
    const record = toSentinelRecord(event);
    if (
      record.UserAgent !== event.user_agent ||
      record.RequestParams !== event.request_params ||
      record.ResponseErrorMessage !== (response?.error_message ?? null) ||
      record.ResponseResult !== (response?.result ?? null)
    )
      return jsonBytes(record);
  }
  return (
    eventJsonBytes +
    SIZE_TEMPLATE.difference -
    (stringJsonBytes(event.event_date) - SIZE_TEMPLATE.dateBytes) +
    (stringJsonBytes(event.event_time) - SIZE_TEMPLATE.timeBytes) +
    (stringJsonBytes(event.user_identity?.email ?? null) - NULL_BYTES) +
    (stringJsonBytes(event.user_identity?.subject_name ?? null) - NULL_BYTES) +
    (response === null ? SIZE_TEMPLATE.responseBytes - NULL_BYTES : 0)
  );
}

const NULL_BYTES = 4;
/** Characters JSON.stringify writes as they are, one byte each in UTF-8. */
const PLAIN_ASCII = /^[\x20\x21\x23-\x5b\x5d-\x7e]*$/;

function stringJsonBytes(value: string | null): number {
  if (value === null) return NULL_BYTES;
  return PLAIN_ASCII.test(value) ? value.length + 2 : jsonBytes(value);
}

/**
 * The sizes of one reference event, measured once: what the keys cost in the record against
 * the event (`difference`), with an event_date, an event_time, a user_identity whose email
 * and subject_name are null and a response of nulls; sentinelRecordBytes corrects for each
 * way an event differs from it.
 */
const SIZE_TEMPLATE = ((): { difference: number; dateBytes: number; timeBytes: number; responseBytes: number } => {
  const template: AuditEvent = {
    account_id: null,
    workspace_id: null,
    version: null,
    event_time: "2024-01-01T00:00:00.000000Z",
    event_date: "2024-01-01",
    source_ip_address: null,
    user_agent: null,
    session_id: null,
    user_identity: { email: null, subject_name: null },
    service_name: null,
    action_name: null,
    request_id: null,
    request_params: null,
    response: { status_code: null, error_message: null, result: null },
    audit_level: null,
    event_id: "",
    identity_metadata: null,
  };
  return {
    difference: jsonBytes(toSentinelRecord(template)) - jsonBytes(template),
    dateBytes: jsonBytes(template.event_date),
    timeBytes: jsonBytes(template.event_time),
    responseBytes: jsonBytes(template.response),
  };
})();

/**
 * The Logs Ingestion client cuts uploads into calls whose records' JSON sizes sum below
 * 1,000,000 bytes. Cutting the same way here means one upload() of a chunk is exactly one
 * HTTP call, so a confirmed chunk is a confirmed call: the unit the export records.
 */
export const MAX_CALL_BYTES = 1_000_000;
