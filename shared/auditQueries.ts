import { EVENT_TIME_US } from "./auditEvent";
import type { AuditFilter } from "./config";
import { MICROS_PER_HOUR, utcDateOf } from "./timestamps";

/**
 * SQL for system.access.audit. Every value from configuration or input reaches the warehouse
 * as a bound named parameter; the only text spliced in is generated parameter names. Keys
 * compare in SQL on (event_time, event_id), never on a JS Date (it keeps milliseconds only).
 * The SQL stays inside what both Databricks SQL and the local stand-in run.
 */
export interface BoundQuery {
  sql: string;
  params: Record<string, string>;
}

/** A position in export order. `eventId: ""` sorts before every event of that microsecond. */
export interface EventKey {
  timeUs: number;
  eventId: string;
}

export const AUDIT_TABLE = "system.access.audit";

/**
 * Every column the table has, including any Databricks adds after this code shipped (the
 * archive keeps them: eventFromRow), plus event_time in exact microseconds (a JS Date keeps
 * milliseconds), which is not archived.
 */
const SELECT_COLUMNS = `*, unix_micros(event_time) AS ${EVENT_TIME_US}`;

class ParamBag {
  readonly params: Record<string, string> = {};
  add(name: string, value: string | number): string {
    this.params[name] = String(value);
    return `:${name}`;
  }
  list(prefix: string, values: readonly string[]): string {
    return values.map((v, i) => this.add(`${prefix}_${i}`, v)).join(", ");
  }
}

function filterClauses(filter: AuditFilter, bag: ParamBag): string[] {
  const clauses: string[] = [];
  if (filter.services !== "all") clauses.push(`service_name IN (${bag.list("svc", filter.services)})`);
  if (filter.workspaceIds.length > 0) {
    const workspaces = `workspace_id IN (${bag.list("ws", filter.workspaceIds)})`;
    clauses.push(filter.includeAccountLevel ? `(${workspaces} OR workspace_id = '0')` : workspaces);
  } else if (!filter.includeAccountLevel) {
    clauses.push("workspace_id <> '0'");
  }
  return clauses;
}

/** Time range [fromUs, toUs), with event_date bounds so the warehouse prunes partitions. */
function timeClauses(fromUs: number, toUs: number, bag: ParamBag): string[] {
  return [
    `event_date >= CAST(${bag.add("from_date", utcDateOf(fromUs))} AS DATE)`,
    `event_date <= CAST(${bag.add("to_date", utcDateOf(Math.max(fromUs, toUs - 1)))} AS DATE)`,
    `event_time >= timestamp_micros(CAST(${bag.add("from_us", fromUs)} AS BIGINT))`,
    `event_time < timestamp_micros(CAST(${bag.add("to_us", toUs)} AS BIGINT))`,
  ];
}

/** Events after `after` (exclusive) with event_time < toUs, in export order; at most `limit` of them when given. */
export function scanQuery(filter: AuditFilter, after: EventKey, toUs: number, limit?: number): BoundQuery {
  const bag = new ParamBag();
  const afterTime = `timestamp_micros(CAST(${bag.add("after_us", after.timeUs)} AS BIGINT))`;
  const where = [
    ...timeClauses(after.timeUs, toUs, bag),
    `(event_time > ${afterTime} OR (event_time = ${afterTime} AND event_id > ${bag.add("after_id", after.eventId)}))`,
    ...filterClauses(filter, bag),
  ];
  return {
    sql: `SELECT ${SELECT_COLUMNS} FROM ${AUDIT_TABLE} WHERE ${where.join(" AND ")} ORDER BY event_time, event_id${limitClause(limit)}`,
    params: bag.params,
  };
}

/**
 * A row limit: the project's own constant, never input, written as a checked integer literal
 * (a LIMIT must be a constant, and parameter markers there are not portable).
 */
function limitClause(limit: number | undefined): string {
  if (limit === undefined) return "";
  if (!Number.isSafeInteger(limit) || limit < 1) throw new RangeError(`A query's row limit must be a whole number above 0; got ${limit}.`);
  return ` LIMIT ${limit}`;
}

/** Events in [fromUs, toUs), in export order (the CLI's export window). */
export function windowQuery(filter: AuditFilter, fromUs: number, toUs: number): BoundQuery {
  return scanQuery(filter, { timeUs: fromUs, eventId: "" }, toUs);
}

/** Event counts per UTC hour (hour index = micros / 3.6e9) in [fromUs, toUs). */
export function hourlyCountQuery(filter: AuditFilter, fromUs: number, toUs: number): BoundQuery {
  const bag = new ParamBag();
  const where = [...timeClauses(fromUs, toUs, bag), ...filterClauses(filter, bag)];
  return {
    sql:
      `SELECT CAST(floor(unix_micros(event_time) / ${MICROS_PER_HOUR}) AS BIGINT) AS hour_index, count(*) AS event_count ` +
      `FROM ${AUDIT_TABLE} WHERE ${where.join(" AND ")} GROUP BY 1`,
    params: bag.params,
  };
}

/** Number of events per workspace in [fromUs, toUs) for the given workspaces (the health check). */
export function workspaceActivityQuery(workspaceIds: readonly string[], fromUs: number, toUs: number): BoundQuery {
  const bag = new ParamBag();
  const where = [...timeClauses(fromUs, toUs, bag), `workspace_id IN (${bag.list("ws", workspaceIds)})`];
  return {
    sql: `SELECT workspace_id, count(*) AS event_count FROM ${AUDIT_TABLE} WHERE ${where.join(" AND ")} GROUP BY workspace_id`,
    params: bag.params,
  };
}

/** No rows, just the table's live schema. */
export const SCHEMA_PROBE_SQL = `SELECT * FROM ${AUDIT_TABLE} LIMIT 0`;

/**
 * Events whose request_params carry the SQL text that ran (a SQL warehouse's or a notebook's
 * command), under SQL_TEXT_KEY. Databricks masks that text (`<REDACTED>`) or leaves the key out
 * unless the reader is an account admin or in the `databricks_pii_access` group, so these
 * events none of which shows any text tell that the identity cannot see SQL text.
 */
export const SQL_TEXT_EVENTS: readonly { service: string; action: string }[] = [
  { service: "databrickssql", action: "commandSubmit" },
  { service: "notebook", action: "runCommand" },
];
export const SQL_TEXT_KEY = "commandText";
/** What a masked statement text reads (Databricks writes it `<REDACTED>` or `<Redacted>`: compared in upper case). */
export const REDACTED_SQL_TEXT = "<REDACTED>";

/** How many SQL_TEXT_EVENTS in [fromUs, toUs), and how many of them show their SQL text (present, not empty, not masked). */
export function sqlTextVisibilityQuery(fromUs: number, toUs: number): BoundQuery {
  const bag = new ParamBag();
  const events = SQL_TEXT_EVENTS.map(
    ({ service, action }, i) => `(service_name = ${bag.add(`svc_${i}`, service)} AND action_name = ${bag.add(`action_${i}`, action)})`,
  );
  const where = [...timeClauses(fromUs, toUs, bag), `(${events.join(" OR ")})`];
  const text = `upper(trim(coalesce(request_params[${bag.add("text_key", SQL_TEXT_KEY)}], '')))`;
  return {
    sql:
      `SELECT count(*) AS sql_events, count_if(${text} NOT IN ('', ${bag.add("redacted", REDACTED_SQL_TEXT)})) AS with_sql_text ` +
      `FROM ${AUDIT_TABLE} WHERE ${where.join(" AND ")}`,
    params: bag.params,
  };
}
