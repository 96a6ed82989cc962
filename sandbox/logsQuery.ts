import { randomUUID } from "node:crypto";

/**
 * The Logs Query API side of the Log Analytics stand-in (`POST /v1/workspaces/{workspaceId}/query`,
 * body `{query, timespan}`), answering from the records the ingestion side accepted. A faithful
 * subset: exactly the KQL shape reconciliation sends (shared/reconcile/kql.ts), parsed strictly;
 * any other query gets the 400 the real API gives, `{error: {code: "BadArgumentError", message,
 * correlationId, innererror: {code, message}}}`. The answer has the real API's shape: `{tables:
 * [{name: "PrimaryResult", columns: [{name, type}], rows}]}`, and like the service it only sees rows
 * whose TimeGenerated falls in the timespan.
 */

export class QueryApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly inner?: { code: string; message: string },
  ) {
    super(message);
  }

  body(): unknown {
    return { error: { message: this.message, code: this.code, correlationId: randomUUID(), ...(this.inner ? { innererror: this.inner } : {}) } };
  }
}

const TABLE_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const EVENT_ID_ROWS =
  /^([A-Za-z_][A-Za-z0-9_]*)\n\| where EventTime >= datetime\(([^()]+)\) and EventTime < datetime\(([^()]+)\)\n\| summarize Rows = count\(\) by EventId$/;

export interface QueryTable {
  name: string;
  columns: { name: string; type: string }[];
  rows: unknown[][];
}

/** Answers one query body over the accepted records of `table` (the audit stream's records). */
export function answerQuery(body: unknown, table: string, records: () => readonly Record<string, unknown>[]): { tables: QueryTable[] } {
  if (body === null || typeof body !== "object" || typeof (body as { query?: unknown }).query !== "string") {
    throw new QueryApiError(400, "BadArgumentError", "The request had some invalid properties", {
      code: "QueryValidationError",
      message: "'query' is required",
    });
  }
  const { query, timespan } = body as { query: string; timespan?: unknown };
  const window = readTimespan(timespan);
  const match = EVENT_ID_ROWS.exec(query);
  if (!match) {
    throw new QueryApiError(400, "BadArgumentError", "The request had some invalid properties", {
      code: "SyntaxError",
      message: "A recognition error occurred in the query (the sandbox answers only the reconciliation query shape).",
    });
  }
  const [, name = "", fromText = "", toText = ""] = match;
  if (!TABLE_NAME.test(name) || name !== table) {
    throw new QueryApiError(400, "BadArgumentError", "The request had some invalid properties", {
      code: "SemanticError",
      message: `'where' operator: Failed to resolve table or column expression named '${name}'`,
    });
  }
  const fromMs = datetimeLiteral(fromText);
  const toMs = datetimeLiteral(toText);
  const rows = new Map<string, number>();
  for (const record of records()) {
    const eventTime = Date.parse(String(record.EventTime));
    const generated = Date.parse(String(record.TimeGenerated));
    if (!(eventTime >= fromMs && eventTime < toMs)) continue;
    if (!(generated >= window.fromMs && generated <= window.toMs)) continue;
    const id = String(record.EventId);
    rows.set(id, (rows.get(id) ?? 0) + 1);
  }
  return {
    tables: [
      {
        name: "PrimaryResult",
        columns: [
          { name: "EventId", type: "string" },
          { name: "Rows", type: "long" },
        ],
        rows: [...rows].map(([id, count]) => [id, count]),
      },
    ],
  };
}

/** `start/end` ISO-8601 instants, as the SDK sends a {startTime, endTime} timespan. */
function readTimespan(value: unknown): { fromMs: number; toMs: number } {
  const parts = typeof value === "string" ? value.split("/") : [];
  const [fromMs, toMs] = parts.map((part) => (/^\d{4}-\d{2}-\d{2}T[\d:.]+Z$/.test(part) ? Date.parse(part) : NaN));
  if (parts.length !== 2 || !Number.isFinite(fromMs) || !Number.isFinite(toMs) || toMs! < fromMs!) {
    throw new QueryApiError(400, "BadArgumentError", "The request had some invalid properties", {
      code: "QueryValidationError",
      message: `'timespan' must be an ISO-8601 interval 'start/end' (the sandbox takes no durations); got '${String(value)}'`,
    });
  }
  return { fromMs: fromMs!, toMs: toMs! };
}

function datetimeLiteral(text: string): number {
  const ms = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/.test(text) ? Date.parse(text) : NaN;
  if (!Number.isFinite(ms)) {
    throw new QueryApiError(400, "BadArgumentError", "The request had some invalid properties", {
      code: "SyntaxError",
      message: `datetime(${text}) is not a valid datetime literal`,
    });
  }
  return ms;
}
