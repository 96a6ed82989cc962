import { microsToIso, utcDateOf } from "./timestamps";
import type { RedactionRule } from "./config";

/** The columns of system.access.audit, in the table's order: the archive's JSON keys. */
export const AUDIT_COLUMNS = [
  "account_id",
  "workspace_id",
  "version",
  "event_time",
  "event_date",
  "source_ip_address",
  "user_agent",
  "session_id",
  "user_identity",
  "service_name",
  "action_name",
  "request_id",
  "request_params",
  "response",
  "audit_level",
  "event_id",
  "identity_metadata",
] as const;

export type AuditColumn = (typeof AUDIT_COLUMNS)[number];

/**
 * An archived event: the known columns, in the table's order and formats. An event read from a
 * table that has more (columns or struct fields Databricks added after this code shipped)
 * carries those too, after the known ones (eventFromRow, RowShape): the type names only what
 * this code reads.
 */
export interface AuditEvent {
  account_id: string | null;
  workspace_id: string | null;
  version: string | null;
  /** ISO-8601 UTC with microseconds. */
  event_time: string;
  event_date: string | null;
  source_ip_address: string | null;
  user_agent: string | null;
  session_id: string | null;
  user_identity: { email: string | null; subject_name: string | null } | null;
  service_name: string | null;
  action_name: string | null;
  request_id: string | null;
  request_params: Record<string, string | null> | null;
  response: { status_code: number | null; error_message: string | null; result: string | null } | null;
  audit_level: string | null;
  event_id: string;
  identity_metadata: { run_by: string | null; run_as: string | null } | null;
}

/** An event with its position in the export order (event_time, event_id). */
export interface KeyedEvent {
  timeUs: number;
  eventId: string;
  event: AuditEvent;
}

/** The export query's helper column: event_time in exact microseconds. Never archived. */
export const EVENT_TIME_US = "event_time_us";

const USER_IDENTITY_FIELDS = ["email", "subject_name"] as const;
const RESPONSE_FIELDS = ["status_code", "error_message", "result"] as const;
const IDENTITY_METADATA_FIELDS = ["run_by", "run_as"] as const;
const KNOWN_COLUMNS: ReadonlySet<string> = new Set<string>([...AUDIT_COLUMNS, EVENT_TIME_US]);

/**
 * What the rows of one result carry beyond the columns and struct fields this code knows:
 * columns and fields Databricks added after it shipped. The archive keeps them (full
 * fidelity): unknown columns after the known ones, in the result's order; unknown struct
 * fields after the known ones, in the struct's order. Found once per result (its rows share
 * one schema), so the common case, nothing added, costs no per-row reflection.
 */
export interface RowShape {
  extraColumns: readonly string[];
  userIdentityExtras: readonly string[];
  responseExtras: readonly string[];
  identityMetadataExtras: readonly string[];
}

const NOTHING_ADDED: readonly string[] = [];

/** The shape of rows that share one schema (a driver's result): their first row's columns, and each struct's fields from its first non-null value. */
export function shapeOf(rows: readonly Record<string, unknown>[]): RowShape {
  const first = rows[0];
  if (!first) return { extraColumns: NOTHING_ADDED, userIdentityExtras: NOTHING_ADDED, responseExtras: NOTHING_ADDED, identityMetadataExtras: NOTHING_ADDED };
  const extraColumns = Object.keys(first).filter((column) => !KNOWN_COLUMNS.has(column));
  return {
    extraColumns: extraColumns.length > 0 ? extraColumns : NOTHING_ADDED,
    userIdentityExtras: extraFields(rows, "user_identity", USER_IDENTITY_FIELDS),
    responseExtras: extraFields(rows, "response", RESPONSE_FIELDS),
    identityMetadataExtras: extraFields(rows, "identity_metadata", IDENTITY_METADATA_FIELDS),
  };
}

function extraFields(rows: readonly Record<string, unknown>[], column: string, known: readonly string[]): readonly string[] {
  for (const row of rows) {
    const value = row[column];
    if (value === null || value === undefined) continue;
    const parsed = parseIfJson(value);
    if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) return NOTHING_ADDED;
    const extras = Object.keys(parsed).filter((field) => !known.includes(field));
    return extras.length > 0 ? extras : NOTHING_ADDED;
  }
  return NOTHING_ADDED;
}

/**
 * Turns a row as the SQL driver returns it (the export query adds `event_time_us`) into an
 * AuditEvent: the known columns as ever, then whatever the row's shape adds (see RowShape).
 * Without a shape, the row's own.
 */
export function eventFromRow(row: Record<string, unknown>, shape: RowShape = shapeOf([row])): KeyedEvent {
  const timeUs = toNumber(row.event_time_us);
  const eventId = row.event_id;
  if (timeUs === null || typeof eventId !== "string" || eventId.length === 0) {
    throw new Error("A row of system.access.audit has no event_time or event_id; the query must select event_time_us and event_id.");
  }
  const event: AuditEvent = {
    account_id: toText(row.account_id),
    workspace_id: toText(row.workspace_id),
    version: toText(row.version),
    event_time: microsToIso(timeUs),
    event_date: toDateText(row.event_date) ?? utcDateOf(timeUs),
    source_ip_address: toText(row.source_ip_address),
    user_agent: toText(row.user_agent),
    session_id: toText(row.session_id),
    user_identity: toStruct(row.user_identity, USER_IDENTITY_FIELDS, shape.userIdentityExtras),
    service_name: toText(row.service_name),
    action_name: toText(row.action_name),
    request_id: toText(row.request_id),
    request_params: toStringMap(row.request_params),
    response: toResponse(row.response, shape.responseExtras),
    audit_level: toText(row.audit_level),
    event_id: eventId,
    identity_metadata: toStruct(row.identity_metadata, IDENTITY_METADATA_FIELDS, shape.identityMetadataExtras),
  };
  if (shape.extraColumns.length > 0) {
    const open = event as unknown as Record<string, unknown>;
    for (const column of shape.extraColumns) open[column] = toJsonValue(row[column]);
  }
  return { timeUs, eventId, event };
}

export function applyRedaction(event: AuditEvent, rules: readonly RedactionRule[]): AuditEvent {
  if (rules.length === 0 || !event.request_params) return event;
  let params: Record<string, string | null> | undefined;
  for (const rule of rules) {
    if (!(rule.key in event.request_params)) continue;
    params ??= { ...event.request_params };
    if (rule.action === "drop") delete params[rule.key];
    else params[rule.key] = REDACTED;
  }
  return params ? { ...event, request_params: params } : event;
}

export const REDACTED = "[REDACTED]";

function toText(value: unknown): string | null {
  if (value === null || value === undefined) return null;
  if (typeof value === "string") return value;
  if (value instanceof Date) return value.toISOString();
  if (typeof value === "number" || typeof value === "boolean" || typeof value === "bigint") return String(value);
  return JSON.stringify(value) ?? null;
}

function toNumber(value: unknown): number | null {
  if (typeof value === "number") return value;
  if (typeof value === "bigint") return Number(value);
  if (typeof value === "string" && value.trim() !== "" && !Number.isNaN(Number(value))) return Number(value);
  return null;
}

function toDateText(value: unknown): string | null {
  if (value instanceof Date) return utcDateOf(value.getTime() * 1000);
  if (typeof value === "string") return value.slice(0, 10);
  return null;
}

function parseIfJson(value: unknown): unknown {
  if (typeof value === "string" && /^[[{]/.test(value)) {
    try {
      return JSON.parse(value);
    } catch {
      return value;
    }
  }
  return value;
}

function toStruct<K extends string>(value: unknown, fields: readonly K[], extras: readonly string[]): Record<K, string | null> | null {
  const parsed = parseIfJson(value);
  if (parsed === null || parsed === undefined || typeof parsed !== "object") return null;
  const source = parsed as Record<string, unknown>;
  const out = {} as Record<K, string | null>;
  for (const field of fields) out[field] = toText(source[field]);
  if (extras.length > 0) addFields(out, source, extras);
  return out;
}

function toResponse(value: unknown, extras: readonly string[]): AuditEvent["response"] {
  const parsed = parseIfJson(value);
  if (parsed === null || parsed === undefined || typeof parsed !== "object") return null;
  const source = parsed as Record<string, unknown>;
  const out = { status_code: toNumber(source.status_code), error_message: toText(source.error_message), result: toText(source.result) };
  if (extras.length > 0) addFields(out, source, extras);
  return out;
}

/** Struct fields this code does not know, after the known ones. */
function addFields(target: object, source: Record<string, unknown>, fields: readonly string[]): void {
  // defineProperty: a field named "__proto__" stays an ordinary field.
  for (const field of fields) Object.defineProperty(target, field, { value: toJsonValue(source[field]), enumerable: true, writable: true, configurable: true });
}

/**
 * A value of a column or field this code does not know, as JSON keeps it, whatever the driver
 * returned for its type: strings, booleans and finite numbers as they are; BIGINT (a bigint
 * where the driver keeps it) a number when exact, else its digits; TIMESTAMP and DATE (JS
 * Dates) ISO-8601; BINARY (a Buffer) base64, as Spark's to_json writes it; structs (objects)
 * and arrays recursively; maps (objects, or Maps) as objects; NaN and infinities as text.
 */
export function toJsonValue(value: unknown): unknown {
  if (value === null || value === undefined) return null;
  switch (typeof value) {
    case "string":
    case "boolean":
      return value;
    case "number":
      return Number.isFinite(value) ? value : String(value);
    case "bigint":
      return Number.isSafeInteger(Number(value)) ? Number(value) : value.toString();
    case "object":
      break;
    default:
      return null; // functions and symbols: nothing a driver returns, nothing JSON keeps
  }
  if (value instanceof Date) return Number.isNaN(value.getTime()) ? null : value.toISOString();
  if (value instanceof Uint8Array) return Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString("base64");
  if (Array.isArray(value)) return value.map(toJsonValue);
  // A null-prototype object: a key named "__proto__" stays an ordinary key.
  const out = Object.create(null) as Record<string, unknown>;
  const entries: Iterable<[unknown, unknown]> = value instanceof Map ? value.entries() : Object.entries(value);
  for (const [key, item] of entries) out[toText(key) ?? "null"] = toJsonValue(item);
  return out;
}

/** Maps come back from the driver as objects, Maps or entry lists depending on the result format. */
function toStringMap(value: unknown): Record<string, string | null> | null {
  const parsed = parseIfJson(value);
  if (parsed === null || parsed === undefined) return null;
  // A null-prototype object: a key named "__proto__" stays an ordinary key.
  const out = Object.create(null) as Record<string, string | null>;
  const entries: Iterable<[unknown, unknown]> =
    parsed instanceof Map
      ? parsed.entries()
      : Array.isArray(parsed)
        ? parsed.map((e: unknown) => (Array.isArray(e) ? [e[0], e[1]] : [(e as { key?: unknown }).key, (e as { value?: unknown }).value]) as [unknown, unknown])
        : typeof parsed === "object"
          ? Object.entries(parsed as Record<string, unknown>)
          : [];
  for (const [key, val] of entries) {
    if (key === null || key === undefined) continue;
    out[toText(key)!] = toText(val);
  }
  return out;
}
