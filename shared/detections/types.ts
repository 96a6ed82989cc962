/**
 * What a detection is. A detection counts the events of `system.access.audit` that match its
 * filter, per window and per group, and alerts when its measure compares with the threshold as
 * its operator says. The runner builds the one SQL text from these parts (sql.ts): the window,
 * the range and the threshold are bound parameters, never text.
 */

export const SEVERITIES = ["Informational", "Low", "Medium", "High"] as const;
export type Severity = (typeof SEVERITIES)[number];

/** The closed set of comparisons; `>` and `>=` differ (the source's `<=` became `<`: not here). */
export const THRESHOLD_OPERATORS = [">", ">="] as const;
export type ThresholdOperator = (typeof THRESHOLD_OPERATORS)[number];

/** What an alert can be grouped by, besides its window (`instance_id`: the data plane host, request_params.instanceId). */
export const GROUP_FIELDS = ["email", "source_ip", "workspace_id", "metastore_id", "instance_id"] as const;
export type GroupField = (typeof GROUP_FIELDS)[number];

/**
 * Window lengths a detection may use, in minutes. Each divides a day, so windows align to UTC
 * days. Windows up to an hour are evaluated when complete; longer ones (a day: the entries that
 * group by event_date) are evaluated so far, every hour, and alert once when they cross.
 */
export const WINDOW_MINUTES = [5, 10, 15, 20, 30, 60, 120, 180, 240, 360, 480, 720, 1440] as const;

/** The measure of a detection that names none. */
export const DEFAULT_MEASURE = "count(*)";
/** The measure's name in an alert when the detection names none: upstream's name for its count(*) column. */
export const DEFAULT_MEASURE_NAME = "total";

export type DetectionOrigin = "seed" | "sentinel" | "custom";

export interface Detection {
  /** Lower snake case; the seed's entries keep their names exactly. */
  name: string;
  description: string;
  severity: Severity;
  /** MITRE ATT&CK tactic, as Sentinel spells it (e.g. CredentialAccess). */
  tactic: string;
  /** MITRE ATT&CK technique ID (e.g. T1110 or T1098.001). */
  technique: string;
  /** A SQL boolean over the table's columns: the events that count. No parameters, no statement separators. */
  filter: string;
  /** A SQL aggregate compared with the threshold; default `count(*)`. */
  measure?: string;
  /** What the measure counts, in words (for the docs). */
  measureNote?: string;
  /** The measure's name in an alert, as upstream names its alert column (e.g. num_keys_accessed); default "total". */
  measureName?: string;
  /**
   * What an analyst needs to see besides the counts: named SQL expressions over the events, each
   * listed in the alert with up to 10 distinct values (capped in length), e.g. the mount point or
   * the target user. Names are lower snake case; catalog text only, like the filter.
   */
  context?: Readonly<Record<string, string>>;
  /** SQL for the workspace an event concerns, when it is not workspace_id (upstream's request_params.workspace_id fallback). */
  workspace?: string;
  operator: ThresholdOperator;
  threshold: number;
  windowMinutes: number;
  /** Non-empty: an entry that names no grouping alerts per principal, so the analyst sees who. */
  groupBy: readonly GroupField[];
  /** SQL for the principal (email) when it is not user_identity.email. */
  principal?: string;
  enabled: boolean;
  origin: DetectionOrigin;
  /** The seed catalog's entry number, for built-ins from the seed. */
  seedEntry?: number;
}

/** A built-in entry as the catalog states it: the runner's defaults (per principal, hourly, enabled) fill in the rest. */
export type CatalogEntry = Omit<Detection, "enabled" | "origin" | "groupBy" | "windowMinutes"> &
  Partial<Pick<Detection, "groupBy" | "windowMinutes">> & { origin?: Detection["origin"] };

/** A query-only entry of the seed (a report over the last N days); no alert. */
export interface Report {
  name: string;
  description: string;
  seedEntry: number;
  /** SQL with the bound parameters `:from_us`, `:to_us`, `:from_date`, `:to_date`. */
  sql: string;
}
