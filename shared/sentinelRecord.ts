import type { AuditEvent } from "./auditEvent";
import { capDynamic, capText, jsonBytes, stringJsonBytes } from "./fieldCaps";

/**
 * One row of the Sentinel solution's DatabricksAudit_CL table (Azure-Sentinel Solutions/Databricks),
 * in the solution's column types so both can share one table, plus EventId and IdentityMetadata.
 * The solution's ShardName, S3Bucket and S3Key are never sent: system.access.audit has no such
 * fields (the table declares them only so a workspace with the solution installed keeps one schema).
 */
export interface SentinelAuditRecord {
  TimeGenerated: string;
  EventTime: string;
  SchemaVersion: string | null;
  AuditLevel: string | null;
  AccountId: string | null;
  /** The solution's name for the workspace ID (its connector fills it from the log's orgId): workspace_id again. */
  OrgId: string | null;
  WorkspaceId: string | null;
  ServiceName: string | null;
  ActionName: string | null;
  RequestId: string | null;
  SessionId: string | null;
  SourceIPAddress: string | null;
  UserAgent: string | null;
  UserEmail: string | null;
  UserSubjectName: string | null;
  /** user_identity whole, fields Databricks adds included (capped: see fieldCaps.capDynamic). */
  UserIdentity: Record<string, unknown> | null;
  RequestParams: Record<string, string | null> | null;
  ResponseStatusCode: number | null;
  ResponseErrorMessage: string | null;
  /** response.result: the object its JSON text holds, else the text itself (see responseResultValue). */
  ResponseResult: ResponseResultValue;
  EventId: string;
  IdentityMetadata: Record<string, unknown> | null;
}

/**
 * Log Analytics truncates any field over 64 KB (a truncated dynamic column is no longer JSON)
 * and rejects a record over 1 MB outright. Every string and dynamic value is capped below that
 * for this sink only (fieldCaps: JSON bytes, escapes included); the blob archive keeps them
 * whole. With 18 such columns at 32 KB a record stays under 600 KB, so MAX_RECORD_BYTES holds
 * by construction; it is still checked for any record that was capped, and capped harder if
 * it were over.
 */
export const MAX_FIELD_BYTES = 32 * 1024;
/**
 * Columns of DatabricksAudit_CL that only the Sentinel solution's connector fills: the table
 * declares them so it can be the solution's, and no record of ours carries them.
 */
export const SOLUTION_ONLY_COLUMNS: readonly string[] = Object.freeze(["ShardName", "S3Bucket", "S3Key"]);
/** Under the service's 1 MB per record, with room for the call around it. */
export const MAX_RECORD_BYTES = 900_000;
export { OMITTED_KEYS_PARAM, OMITTED_KEY_COUNT_PARAM, TRUNCATED_KEYS_PARAM, TRUNCATION_MARKER } from "./fieldCaps";

export function toSentinelRecord(event: AuditEvent): SentinelAuditRecord {
  let limit = MAX_FIELD_BYTES;
  // Parsed once: capping a value returns it unchanged, which is how isCapped tells.
  const result = responseResultValue(event.response?.result ?? null);
  let record = recordOf(event, result, limit);
  // Never over with 32 KB fields (see above); a guard that costs nothing for uncapped records.
  const capped = isCapped(record, event, result);
  while (capped && limit > MIN_FIELD_LIMIT && jsonBytes(record) > MAX_RECORD_BYTES) {
    limit = Math.floor(limit / 2);
    record = recordOf(event, result, limit);
  }
  return record;
}

const MIN_FIELD_LIMIT = 1024;

function recordOf(event: AuditEvent, result: ResponseResultValue, limit: number): SentinelAuditRecord {
  const identity = event.user_identity;
  const response = event.response;
  return {
    // Log Analytics replaces a TimeGenerated older than 2 days with the receive time; EventTime keeps the truth.
    TimeGenerated: event.event_time,
    EventTime: event.event_time,
    SchemaVersion: capText(event.version, limit),
    AuditLevel: capText(event.audit_level, limit),
    AccountId: capText(event.account_id, limit),
    OrgId: capText(event.workspace_id, limit),
    WorkspaceId: capText(event.workspace_id, limit),
    ServiceName: capText(event.service_name, limit),
    ActionName: capText(event.action_name, limit),
    RequestId: capText(event.request_id, limit),
    SessionId: capText(event.session_id, limit),
    SourceIPAddress: capText(event.source_ip_address, limit),
    UserAgent: capText(event.user_agent, limit),
    UserEmail: capText(identity?.email ?? null, limit),
    UserSubjectName: capText(identity?.subject_name ?? null, limit),
    UserIdentity: capDynamic(identity, limit),
    // A map of strings stays one: capping adds only strings.
    RequestParams: capDynamic(event.request_params, limit) as Record<string, string | null> | null,
    ResponseStatusCode: response?.status_code ?? null,
    ResponseErrorMessage: capText(response?.error_message ?? null, limit),
    ResponseResult: capResponseResult(result, limit),
    EventId: capText(event.event_id, limit),
    IdentityMetadata: capDynamic(event.identity_metadata, limit),
  };
}

/** Whether any value of the record is not the event's own (capping returns a value unchanged as the same value). */
function isCapped(record: SentinelAuditRecord, event: AuditEvent, result: ResponseResultValue): boolean {
  const response = event.response;
  return (
    record.SchemaVersion !== event.version ||
    record.AuditLevel !== event.audit_level ||
    record.AccountId !== event.account_id ||
    record.OrgId !== event.workspace_id ||
    record.WorkspaceId !== event.workspace_id ||
    record.ServiceName !== event.service_name ||
    record.ActionName !== event.action_name ||
    record.RequestId !== event.request_id ||
    record.SessionId !== event.session_id ||
    record.SourceIPAddress !== event.source_ip_address ||
    record.UserAgent !== event.user_agent ||
    record.UserEmail !== (event.user_identity?.email ?? null) ||
    record.UserSubjectName !== (event.user_identity?.subject_name ?? null) ||
    record.UserIdentity !== event.user_identity ||
    record.RequestParams !== event.request_params ||
    record.ResponseErrorMessage !== (response?.error_message ?? null) ||
    record.ResponseResult !== result ||
    record.EventId !== event.event_id ||
    record.IdentityMetadata !== event.identity_metadata
  );
}

/**
 * The value of the dynamic ResponseResult column for response.result, which the warehouse returns
 * as text, usually a JSON object's (`{"cluster_id":"..."}`). The object it holds, so queries written
 * for the solution read `ResponseResult.cluster_id` as they do on its connector's rows; any other text
 * (plain words, a JSON array or scalar, broken JSON) stays the string it is, a valid dynamic value.
 * Text with a run of 16 or more digits stays text too: JSON.parse would round an integer beyond 2^53
 * (job and run IDs can be that long) and the row would carry an ID that is not the event's.
 */
export function responseResultValue(result: string | null): ResponseResultValue {
  if (result === null || result.charCodeAt(0) !== OPEN_BRACE || LONG_DIGIT_RUN.test(result)) return result;
  try {
    const parsed = JSON.parse(result) as unknown;
    return parsed !== null && typeof parsed === "object" && !Array.isArray(parsed) ? (parsed as Record<string, unknown>) : result;
  } catch {
    return result;
  }
}

export type ResponseResultValue = Record<string, unknown> | string | null;

const OPEN_BRACE = 0x7b;
const LONG_DIGIT_RUN = /\d{16}/;

function capResponseResult(value: ResponseResultValue, limit: number): ResponseResultValue {
  return typeof value === "string" ? capText(value, limit) : capDynamic(value, limit);
}

/**
 * The record of an event from its archive line (prepareEvents' JSON of the redacted event):
 * the same record toSentinelRecord makes of the event, since the line holds every column and
 * no undefined value. Columns the table does not declare (ones Databricks added after this
 * code) stay in the archive only; fields added inside user_identity and identity_metadata
 * travel in their dynamic columns.
 */
export function sentinelRecordFromLine(line: Uint8Array): SentinelAuditRecord {
  return toSentinelRecord(JSON.parse(lineText(line)) as AuditEvent);
}

/** An archive line's text (its newline included). */
export function lineText(line: Uint8Array): string {
  return Buffer.from(line.buffer, line.byteOffset, line.byteLength).toString("utf8");
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
 * event's values under other keys; it adds a second copy of event_time, workspace_id (OrgId),
 * UserEmail and UserSubjectName, flattens `response`, holds the object of a response.result
 * that is JSON text instead of the text (measured apart: escapes gone, numbers respelt) and drops
 * event_date, so the two sizes differ by the keys and those values. Exact for events as eventFromRow builds them (every column
 * present, none undefined); an over-estimate for an event with columns the table does not
 * declare or fields added inside `response`, which are in the line but not in the record
 * (fields added inside user_identity and identity_metadata are in both). When the event's JSON
 * is larger than a field may be, the record is built and measured instead: exact, capped
 * values included, and so it is when the object of a response.result is (numbers respelt can
 * make it larger than its text). Otherwise no value of it can be over the cap.
 */
export function sentinelRecordBytes(event: AuditEvent, eventJsonBytes: number): number {
  if (eventJsonBytes > MAX_FIELD_BYTES) return jsonBytes(toSentinelRecord(event));
  const response = event.response;
  const text = response?.result ?? null;
  const result = responseResultValue(text);
  let resultBytes = 0;
  if (typeof result === "object" && result !== null) {
    resultBytes = jsonBytes(result);
    if (resultBytes > MAX_FIELD_BYTES) return jsonBytes(toSentinelRecord(event));
    resultBytes -= stringJsonBytes(text!);
  }
  return (
    resultBytes +
    eventJsonBytes +
    SIZE_TEMPLATE.difference -
    (nullableJsonBytes(event.event_date) - SIZE_TEMPLATE.dateBytes) +
    (nullableJsonBytes(event.event_time) - SIZE_TEMPLATE.timeBytes) +
    (nullableJsonBytes(event.workspace_id) - NULL_BYTES) +
    (nullableJsonBytes(event.user_identity?.email ?? null) - NULL_BYTES) +
    (nullableJsonBytes(event.user_identity?.subject_name ?? null) - NULL_BYTES) +
    (response === null ? SIZE_TEMPLATE.responseBytes - NULL_BYTES : 0)
  );
}

const NULL_BYTES = 4;

function nullableJsonBytes(value: string | null): number {
  return value === null ? NULL_BYTES : stringJsonBytes(value);
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
