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

/** Turns a row as the SQL driver returns it (the export query adds `event_time_us`) into an AuditEvent. */
export function eventFromRow(row: Record<string, unknown>): KeyedEvent {
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
    user_identity: toStruct(row.user_identity, ["email", "subject_name"]),
    service_name: toText(row.service_name),
    action_name: toText(row.action_name),
    request_id: toText(row.request_id),
    request_params: toStringMap(row.request_params),
    response: toResponse(row.response),
    audit_level: toText(row.audit_level),
    event_id: eventId,
    identity_metadata: toStruct(row.identity_metadata, ["run_by", "run_as"]),
  };
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

function toStruct<K extends string>(value: unknown, fields: readonly K[]): Record<K, string | null> | null {
  const parsed = parseIfJson(value);
  if (parsed === null || parsed === undefined || typeof parsed !== "object") return null;
  const source = parsed as Record<string, unknown>;
  const out = {} as Record<K, string | null>;
  for (const field of fields) out[field] = toText(source[field]);
  return out;
}

function toResponse(value: unknown): AuditEvent["response"] {
  const parsed = parseIfJson(value);
  if (parsed === null || parsed === undefined || typeof parsed !== "object") return null;
  const source = parsed as Record<string, unknown>;
  return { status_code: toNumber(source.status_code), error_message: toText(source.error_message), result: toText(source.result) };
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
