import { createHash } from "node:crypto";
import { microsToIso, utcDateOf } from "../timestamps";
import { SAMPLE_SIZE, type DetectionRow } from "./sql";
import { DEFAULT_MEASURE_NAME, type Detection, type GroupField } from "./types";
import { MICROS_PER_MINUTE } from "./windows";

/**
 * Alerts: one per (detection, window, group) whose measure passed the threshold. The id is a
 * hash of the detection's name, the window's bounds and the canonical group key, so the same
 * window and group always give the same id: re-evaluating never makes a second alert, and a
 * late row can still make the first.
 */

/** An alert as the Blob JSONL and `dbx-audit detect --output` write it (snake_case). */
export interface AlertLine {
  alert_id: string;
  detection: string;
  description: string;
  severity: string;
  tactic: string;
  technique: string;
  window_start: string;
  window_end: string;
  /** The principal's email, under both names, when the group has a principal. */
  email?: string | null;
  user?: string | null;
  source_ip?: string | null;
  workspace_id?: string | null;
  metastore_id?: string | null;
  /** The data plane host (request_params.instanceId), for detections grouped by host. */
  instance_id?: string | null;
  /** The UTC day, for day windows. */
  event_date?: string;
  /** Matching events in the window for this group. */
  count: number;
  /** The detection's measure (the event count, or e.g. distinct secrets read), as compared with the threshold. */
  value: number;
  /** What `value` is, as upstream names its alert column (total, num_keys_accessed, infected_files, ...). */
  measure_name: string;
  /** The comparison `value` passed, e.g. "> 50". */
  condition: string;
  first_event_time: string;
  last_event_time: string;
  principals: string[];
  source_ips: string[];
  workspaces: string[];
  /** Up to 10 action names and service names of the matching events. */
  actions: string[];
  services: string[];
  /** The detection's context (e.g. mount_point, target_user): up to 10 distinct values each. */
  context: Record<string, string[]>;
  sample_event_ids: string[];
  /** The sources (SQL warehouses, one per region) whose rows the alert counts, in configured order. */
  sources: string[];
  group_key: Record<string, string | null>;
}

/** The DatabricksAuditAlerts_CL record (infra/tables.json is the source of truth for its columns). */
export interface AlertRecord {
  TimeGenerated: string;
  AlertId: string;
  Detection: string;
  Description: string;
  Severity: string;
  Tactic: string;
  Technique: string;
  WindowStart: string;
  WindowEnd: string;
  GroupKey: Record<string, string | null>;
  UserEmail: string;
  SourceIPAddress: string;
  WorkspaceId: string;
  MetastoreId: string;
  InstanceId: string;
  EventCount: number;
  MeasureName: string;
  MeasureValue: number;
  Condition: string;
  FirstEventTime: string;
  LastEventTime: string;
  Principals: string[];
  SourceIPs: string[];
  Workspaces: string[];
  Actions: string[];
  Services: string[];
  Context: Record<string, string[]>;
  SampleEventIds: string[];
  Sources: string[];
}

const GROUP_COLUMNS: Record<GroupField, keyof DetectionRow> = {
  email: "g_email",
  source_ip: "g_source_ip",
  workspace_id: "g_workspace_id",
  metastore_id: "g_metastore_id",
  instance_id: "g_instance_id",
};

export function alertId(detection: string, windowStart: string, windowEnd: string, groupKey: Record<string, string | null>): string {
  const canonical = JSON.stringify(
    Object.keys(groupKey)
      .sort()
      .map((k) => [k, groupKey[k] ?? null]),
  );
  return createHash("sha256").update(`${detection}\n${windowStart}\n${windowEnd}\n${canonical}`).digest("hex").slice(0, 32);
}

/** One source's row as an alert (combine.ts puts several sources' lines of one alert together). */
export function alertFromRow(detection: Detection, row: DetectionRow, sources: readonly string[] = []): AlertLine {
  const windowUs = detection.windowMinutes * MICROS_PER_MINUTE;
  const startUs = Number(row.window_index) * windowUs;
  const windowStart = microsToIso(startUs);
  const windowEnd = microsToIso(startUs + windowUs);
  const groupKey: Record<string, string | null> = {};
  for (const field of detection.groupBy) groupKey[field] = textOrNull(row[GROUP_COLUMNS[field]]);
  if (detection.windowMinutes === 1440) groupKey.event_date = utcDateOf(startUs);
  const email = detection.groupBy.includes("email") ? { email: groupKey.email ?? null, user: groupKey.email ?? null } : {};
  const plain: Partial<AlertLine> = { ...email };
  for (const field of ["source_ip", "workspace_id", "metastore_id", "instance_id"] as const) if (field in groupKey) plain[field] = groupKey[field] ?? null;
  if (groupKey.event_date) plain.event_date = groupKey.event_date;
  return {
    alert_id: alertId(detection.name, windowStart, windowEnd, groupKey),
    detection: detection.name,
    description: detection.description,
    severity: detection.severity,
    tactic: detection.tactic,
    technique: detection.technique,
    window_start: windowStart,
    window_end: windowEnd,
    ...plain,
    count: Number(row.event_count),
    value: Number(row.measure_value),
    measure_name: detection.measureName ?? (detection.measure ? "measure" : DEFAULT_MEASURE_NAME),
    condition: `${detection.operator} ${detection.threshold}`,
    first_event_time: microsToIso(Number(row.first_event_us)),
    last_event_time: microsToIso(Number(row.last_event_us)),
    principals: texts(row.principals),
    source_ips: texts(row.source_ips),
    workspaces: texts(row.workspaces),
    actions: texts(row.actions),
    services: texts(row.services),
    context: Object.fromEntries(Object.keys(detection.context ?? {}).map((name) => [name, texts(row[`ctx_${name}`])])),
    sample_event_ids: texts(row.sample_event_ids),
    sources: [...sources],
    group_key: groupKey,
  };
}

/** The Log Analytics record of an alert raised at `raisedAt` (ISO). */
export function alertRecord(alert: AlertLine, raisedAt: string): AlertRecord {
  return {
    TimeGenerated: raisedAt,
    AlertId: alert.alert_id,
    Detection: alert.detection,
    Description: alert.description,
    Severity: alert.severity,
    Tactic: alert.tactic,
    Technique: alert.technique,
    WindowStart: alert.window_start,
    WindowEnd: alert.window_end,
    GroupKey: alert.group_key,
    UserEmail: alert.email ?? "",
    SourceIPAddress: alert.source_ip ?? "",
    WorkspaceId: alert.workspace_id ?? "",
    MetastoreId: alert.metastore_id ?? "",
    InstanceId: alert.instance_id ?? "",
    EventCount: alert.count,
    // Alerts still pending from before these were recorded have none.
    MeasureName: alert.measure_name ?? DEFAULT_MEASURE_NAME,
    MeasureValue: alert.value,
    Condition: alert.condition ?? "",
    FirstEventTime: alert.first_event_time,
    LastEventTime: alert.last_event_time,
    Principals: alert.principals,
    SourceIPs: alert.source_ips,
    Workspaces: alert.workspaces,
    Actions: alert.actions ?? [],
    Services: alert.services ?? [],
    Context: alert.context ?? {},
    SampleEventIds: alert.sample_event_ids,
    // Alerts still pending from before sources were recorded have none.
    Sources: alert.sources ?? [],
  };
}

/** `alerts/date=YYYY-MM-DD/hour=HH/<detection>-<alert id>.jsonl`: by the window's start; one blob per alert, so a retry overwrites. */
export function alertBlobName(alert: Pick<AlertLine, "alert_id" | "detection" | "window_start">): string {
  return `alerts/date=${alert.window_start.slice(0, 10)}/hour=${alert.window_start.slice(11, 13)}/${alert.detection}-${alert.alert_id}.jsonl`;
}

function textOrNull(value: unknown): string | null {
  if (value === null || value === undefined) return null;
  return typeof value === "string" ? value : JSON.stringify(value);
}

function texts(value: unknown): string[] {
  return collectedValues(value).sort().slice(0, SAMPLE_SIZE);
}

/**
 * A `collect_set` as the driver returns it, as comparable strings: arrays arrive as arrays from
 * Arrow results; a driver set to return complex types as JSON text sends a string.
 */
export function collectedValues(value: unknown): string[] {
  let list = value;
  if (typeof list === "string") {
    try {
      list = JSON.parse(list);
    } catch {
      return [];
    }
  }
  if (!Array.isArray(list)) return [];
  return (list as unknown[])
    .filter((v) => v !== null && v !== undefined)
    .map((v) => (typeof v === "object" ? JSON.stringify(v) : String(v as string | number)));
}
