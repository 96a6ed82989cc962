import type { TokenCredential } from "@azure/identity";
// @azure/monitor-query-logs is the successor of the deprecated @azure/monitor-query (its LogsQueryClient takes the endpoint).
import { LogsQueryClient, LogsQueryResultStatus, type LogsTable } from "@azure/monitor-query-logs";
import type { LogAnalyticsQuerySettings } from "./config";
import { statusOf } from "./errors";
import { eventIdRowsQuery } from "./reconcile/kql";

/** The Logs Query API's token scope: the audience https://api.loganalytics.io. */
export const LOG_ANALYTICS_QUERY_SCOPE = "https://api.loganalytics.io/.default";

/** What reconciliation needs from Log Analytics: the rows per EventId of a window of the audit table. */
export interface LogAnalyticsRows {
  eventIdRows(fromMs: number, toMs: number, nowMs: number): Promise<Map<string, number>>;
}

/** A query the service refused or could not answer whole, with what to do about it. */
export class LogAnalyticsQueryError extends Error {
  override readonly name = "LogAnalyticsQueryError";
  constructor(
    message: string,
    readonly status: number | undefined,
    readonly remediation: string,
  ) {
    super(message);
  }
}

/**
 * Log Analytics through the Logs Query API (`POST {endpoint}/workspaces/{id}/query`) with the
 * app's identity, which needs Log Analytics Reader on the workspace (the templates grant it).
 */
export class LogAnalyticsQuery implements LogAnalyticsRows {
  private readonly client: LogsQueryClient;

  constructor(
    private readonly settings: LogAnalyticsQuerySettings,
    credential: TokenCredential,
    options: { maxRetries?: number } = {},
  ) {
    this.client = new LogsQueryClient(credential, {
      endpoint: settings.endpoint,
      credentials: { scopes: [LOG_ANALYTICS_QUERY_SCOPE] },
      retryOptions: { maxRetries: options.maxRetries ?? 3 },
    });
  }

  async eventIdRows(fromMs: number, toMs: number, nowMs: number): Promise<Map<string, number>> {
    const query = eventIdRowsQuery(fromMs, toMs);
    // TimeGenerated is the event's time, or the receive time for events sent over 2 days late: never
    // before the event, so a timespan from the window's start to now holds every row of it.
    const timespan = { startTime: new Date(fromMs), endTime: new Date(Math.max(nowMs, toMs) + 60_000) };
    let tables: LogsTable[];
    try {
      const result = await this.client.queryWorkspace(this.settings.workspaceId, query, timespan, { serverTimeoutInSeconds: 120 });
      if (result.status !== LogsQueryResultStatus.Success) {
        throw new LogAnalyticsQueryError(
          `Log Analytics answered the query for ${new Date(fromMs).toISOString()} only in part: ${result.partialError.message ?? result.partialError.code}`,
          undefined,
          "The hour holds more rows than one query may return (500,000 rows / 64 MB): reconcile shorter windows (--since/--until).",
        );
      }
      tables = result.tables;
    } catch (error) {
      if (error instanceof LogAnalyticsQueryError) throw error;
      throw explainQueryError(error, this.settings);
    }
    return readEventIdRows(tables);
  }
}

/** The rows of the `summarize Rows = count() by EventId` answer as a map; a different shape is an error, never a silent zero. */
export function readEventIdRows(tables: readonly LogsTable[]): Map<string, number> {
  const table = tables[0];
  const names = table?.columnDescriptors.map((c) => c.name) ?? [];
  const idColumn = names.indexOf("EventId");
  const rowsColumn = names.indexOf("Rows");
  if (!table || idColumn < 0 || rowsColumn < 0) {
    throw new LogAnalyticsQueryError(
      `Log Analytics answered with columns [${names.join(", ")}], not EventId and Rows.`,
      undefined,
      "Check LOG_ANALYTICS_QUERY_ENDPOINT: it must be the Logs Query API.",
    );
  }
  const rows = new Map<string, number>();
  for (const row of table.rows) {
    const id = row[idColumn];
    const count = row[rowsColumn];
    if (typeof id !== "string" || typeof count !== "number") {
      throw new LogAnalyticsQueryError(
        "Log Analytics answered a row whose EventId is not a string or whose Rows is not a number.",
        undefined,
        "Check LOG_ANALYTICS_QUERY_ENDPOINT: it must be the Logs Query API.",
      );
    }
    rows.set(id, count);
  }
  return rows;
}

function explainQueryError(error: unknown, settings: LogAnalyticsQuerySettings): LogAnalyticsQueryError {
  const status = statusOf(error);
  const message = error instanceof Error ? error.message : String(error);
  const where = `workspace ${settings.workspaceId} at ${settings.endpoint}`;
  if (status === 401 || status === 403) {
    return new LogAnalyticsQueryError(
      `Log Analytics refused the query (HTTP ${status}) on ${where}: ${message}`,
      status,
      "Give the app's identity the Log Analytics Reader role on the workspace (the templates grant it on the workspace they create; for another workspace grant it there), and check that LOG_ANALYTICS_WORKSPACE_ID is that workspace's ID.",
    );
  }
  if (status === 404) {
    return new LogAnalyticsQueryError(
      `Log Analytics does not know ${where} (HTTP 404): ${message}`,
      status,
      "Set LOG_ANALYTICS_WORKSPACE_ID to the workspace ID (customer ID GUID on the workspace's Overview), not the resource ID.",
    );
  }
  if (status === 400 && /basic|auxiliary/i.test(message)) {
    return new LogAnalyticsQueryError(
      `Log Analytics refused the query on ${where}: ${message}`,
      status,
      "The table's plan (Basic or Auxiliary) does not allow this query: keep DatabricksAudit_CL on the Analytics plan (Sentinel's rules need it too).",
    );
  }
  return new LogAnalyticsQueryError(
    `The Logs Query API failed on ${where}${status ? ` (HTTP ${status})` : ""}: ${message}`,
    status,
    "Check LOG_ANALYTICS_QUERY_ENDPOINT and the network path to it, then run again.",
  );
}
