import { AUDIT_TABLE, type BoundQuery } from "../auditQueries";
import { utcDateOf } from "../timestamps";
import { includesAccountLevel, measureShape, sourceCombination, thresholdAfterCombining } from "./combination";
import { DEFAULT_MEASURE, type Detection, type GroupField } from "./types";

/**
 * The one SQL text of a detection, built from its parts. The contract every detection keeps,
 * built-in or added in the overrides file:
 *  - the runner binds `:window_us` (window length), `:from_us` / `:to_us` (the range, in
 *    microseconds since the epoch), `:from_date` / `:to_date` (the same range as event_date
 *    bounds, for partition pruning), `:threshold`, and `:ws_0..n` when DETECTIONS_WORKSPACE_IDS
 *    narrows the workspaces; a detection's own filter and measure take no parameters;
 *  - the query returns one row per (window, group) whose measure passes the threshold, with the
 *    columns of {@link DetectionRow}; read from several warehouses (combination.ts), a detection
 *    whose groups span regions returns every group's partial measure instead, and the
 *    threshold applies once the parts are put together.
 * Every value from settings or the overrides file reaches the warehouse bound; the only text
 * spliced in is the catalog's (or the operator's own overrides file's) filter and measure, and
 * the operator, from a closed enum.
 */

/** Source IP without a `:port` suffix (an IPv6 address, with several colons, is kept whole). */
export const SOURCE_IP_SQL = "CASE WHEN source_ip_address LIKE '%:%:%' THEN source_ip_address ELSE regexp_replace(source_ip_address, ':[0-9]+$', '') END";
export const DEFAULT_PRINCIPAL_SQL = "user_identity.email";
export const METASTORE_SQL = "request_params['metastore_id']";
export const INSTANCE_SQL = "request_params['instanceId']";
export const DEFAULT_WORKSPACE_SQL = "workspace_id";

/** How many characters of each context value an alert keeps (a notebook command can be long). */
export const CONTEXT_VALUE_CHARS = 500;
const CONTEXT_NAME = /^[a-z][a-z0-9_]*$/;

/** How many principals, source IPs, workspaces, actions, services, context values and sample event ids an alert carries. */
export const SAMPLE_SIZE = 10;

/** The columns a detection query returns (names as the warehouse gives them back). */
export interface DetectionRow {
  window_index: unknown;
  g_email?: unknown;
  g_source_ip?: unknown;
  g_workspace_id?: unknown;
  g_metastore_id?: unknown;
  g_instance_id?: unknown;
  measure_value: unknown;
  event_count: unknown;
  first_event_us: unknown;
  last_event_us: unknown;
  principals: unknown;
  source_ips: unknown;
  workspaces: unknown;
  actions: unknown;
  services: unknown;
  sample_event_ids: unknown;
  /** One `ctx_<name>` per context entry of the detection: its collected values. */
  [context: `ctx_${string}`]: unknown;
  /** `count(DISTINCT x)` read from several warehouses: this one's set of x, to unite with the others'. */
  measure_set?: unknown;
}

export function groupExpression(detection: Pick<Detection, "principal" | "workspace">, field: GroupField): string {
  switch (field) {
    case "email":
      return detection.principal ?? DEFAULT_PRINCIPAL_SQL;
    case "source_ip":
      return SOURCE_IP_SQL;
    case "workspace_id":
      return detection.workspace ?? DEFAULT_WORKSPACE_SQL;
    case "metastore_id":
      return METASTORE_SQL;
    case "instance_id":
      return INSTANCE_SQL;
  }
}

/** The context columns of a detection's query: up to SAMPLE_SIZE distinct values of each, each capped. */
export function contextColumns(detection: Pick<Detection, "context" | "name">): string[] {
  return Object.entries(detection.context ?? {}).map(([name, expression]) => {
    // The name becomes a column alias: catalog text, but held to a plain identifier all the same.
    if (!CONTEXT_NAME.test(name)) throw new Error(`detection '${detection.name}': context name '${name}' must be lower snake case`);
    return `slice(collect_set(left(CAST(${expression} AS STRING), ${CONTEXT_VALUE_CHARS})), 1, ${SAMPLE_SIZE}) AS ctx_${name}`;
  });
}

export interface QueryRange {
  fromUs: number;
  toUs: number;
}

/** Which of a warehouse's rows a query reads when several warehouses are read (combine.ts). */
export interface SourceScope {
  /** How many warehouses this evaluation reads (1: the query is the whole answer). */
  sourceCount: number;
  /** Whether an earlier warehouse already answered this evaluation (it had the account-level rows). */
  anEarlierSourceAnswered: boolean;
}

const ONE_SOURCE: SourceScope = { sourceCount: 1, anEarlierSourceAnswered: false };

/**
 * The detection's query over [fromUs, toUs), grouped by window (window_index = floor(event time
 * / window length)) and the detection's group fields. `workspaceIds` empty: every workspace.
 * Account-level events (workspace "0") always count: login failures and account settings live
 * there, whichever workspaces are watched; every warehouse has them, so with several only one
 * reads them (combination.ts); a NULL workspace counts as account-level.
 */
export function detectionQuery(detection: Detection, range: QueryRange, workspaceIds: readonly string[], scope: SourceScope = ONE_SOURCE): BoundQuery {
  const params: Record<string, string> = {
    window_us: String(detection.windowMinutes * 60_000_000),
    from_us: String(range.fromUs),
    to_us: String(range.toUs),
    from_date: utcDateOf(range.fromUs),
    to_date: utcDateOf(Math.max(range.fromUs, range.toUs - 1)),
  };
  const measure = detection.measure ?? DEFAULT_MEASURE;
  const principal = detection.principal ?? DEFAULT_PRINCIPAL_SQL;
  const groups = detection.groupBy.map((field) => `${groupExpression(detection, field)} AS g_${field}`);
  const where = [
    "event_date >= CAST(:from_date AS DATE)",
    "event_date <= CAST(:to_date AS DATE)",
    "event_time >= timestamp_micros(CAST(:from_us AS BIGINT))",
    "event_time < timestamp_micros(CAST(:to_us AS BIGINT))",
  ];
  const combination = sourceCombination(detection);
  const accountLevel = includesAccountLevel(combination, scope.anEarlierSourceAnswered);
  if (workspaceIds.length > 0) {
    const names = workspaceIds.map((id, i) => {
      params[`ws_${i}`] = id;
      return `:ws_${i}`;
    });
    where.push(accountLevel ? `(workspace_id IN (${names.join(", ")}) OR workspace_id = '0')` : `workspace_id IN (${names.join(", ")})`);
  } else if (!accountLevel) {
    where.push("coalesce(workspace_id, '0') <> '0'");
  }
  where.push(`(${detection.filter})`);
  const partsOnly = thresholdAfterCombining(combination, scope.sourceCount);
  const select = [
    "CAST(floor(unix_micros(event_time) / CAST(:window_us AS BIGINT)) AS BIGINT) AS window_index",
    ...groups,
    `${measure} AS measure_value`,
    "count(*) AS event_count",
    "min(unix_micros(event_time)) AS first_event_us",
    "max(unix_micros(event_time)) AS last_event_us",
    `slice(collect_set(${principal}), 1, ${SAMPLE_SIZE}) AS principals`,
    `slice(collect_set(${SOURCE_IP_SQL}), 1, ${SAMPLE_SIZE}) AS source_ips`,
    `slice(collect_set(${detection.workspace ?? DEFAULT_WORKSPACE_SQL}), 1, ${SAMPLE_SIZE}) AS workspaces`,
    `slice(collect_set(action_name), 1, ${SAMPLE_SIZE}) AS actions`,
    `slice(collect_set(service_name), 1, ${SAMPLE_SIZE}) AS services`,
    `slice(collect_list(event_id), 1, ${SAMPLE_SIZE}) AS sample_event_ids`,
    ...contextColumns(detection),
  ];
  const shape = measureShape(measure);
  if (partsOnly && shape.kind === "distinct") select.push(`collect_set(${shape.expression}) AS measure_set`);
  const groupBy = Array.from({ length: detection.groupBy.length + 1 }, (_, i) => String(i + 1));
  // Parts to put together: every group comes back, and the threshold applies once they are (combine.ts).
  if (!partsOnly) params.threshold = String(detection.threshold);
  const having = partsOnly ? "" : ` HAVING ${measure} ${detection.operator} CAST(:threshold AS BIGINT)`;
  const sql = `SELECT ${select.join(", ")} FROM ${AUDIT_TABLE} WHERE ${where.join(" AND ")} GROUP BY ${groupBy.join(", ")}${having}`;
  return { sql, params };
}

/**
 * Refuses filter or measure text that could leave its expression: statement separators,
 * comments, and parameter markers (the runner binds its own parameters only). Returns a
 * problem, or undefined when the text is acceptable. String literals are skipped.
 */
export function expressionProblem(text: string): string | undefined {
  const outsideLiterals = text.replace(/'(?:[^'\\]|\\.|'')*'/g, "''");
  if (/'/.test(outsideLiterals.replace(/''/g, ""))) return "has an unterminated string literal";
  if (outsideLiterals.includes(";")) return "must not contain ';'";
  if (/--|\/\*|\*\//.test(outsideLiterals)) return "must not contain comments";
  if (/(^|[^:]):[A-Za-z_]/.test(outsideLiterals) || outsideLiterals.includes("?")) return "must not contain parameter markers (:name or ?)";
  let depth = 0;
  for (const char of outsideLiterals) {
    if (char === "(") depth += 1;
    if (char === ")") depth -= 1;
    if (depth < 0) return "has unbalanced parentheses";
  }
  if (depth !== 0) return "has unbalanced parentheses";
  return undefined;
}
