import type { TokenCredential } from "@azure/identity";
import type { DBSQLClient } from "@databricks/sql";
import type IDBSQLSession from "@databricks/sql/dist/contracts/IDBSQLSession";
import type IOperation from "@databricks/sql/dist/contracts/IOperation";
import { eventFromRow, shapeOf } from "./auditEvent";
import { hourlyCountQuery, scanQuery, type BoundQuery } from "./auditQueries";
import type { AuditFilter, DatabricksSettings } from "./config";
import type { AuditSource, ScanRequest } from "./export/ports";
import { prepareEvents, type PreparedEvent, type Preparation } from "./export/batching";

/**
 * The Databricks SQL warehouse, through the official driver. Authenticates with a PAT when
 * one is configured, otherwise with an Entra ID token from the given credential (managed
 * identity), which the driver caches and refreshes before it expires.
 */
export interface WarehouseOptions {
  /** Rows per FetchResults call. */
  fetchRows?: number;
  /** Driver retry attempts for retryable HTTP answers (429/503 on polls). */
  retryMaxAttempts?: number;
  /** Socket timeout in ms (a cold warehouse can take minutes to answer). */
  socketTimeoutMs?: number;
  /**
   * Each statement's timeout (the warehouse cancels it after this long), and how long any one
   * answer of the driver may take before the query counts as hung: a hung or timed-out query
   * fails the run cleanly instead of holding it until the function times out.
   */
  queryTimeoutMs?: number;
  /** How much longer than queryTimeoutMs an answer may take before the query counts as hung (default 60 s). */
  hangGraceMs?: number;
  /** Ask for results through CloudFetch links instead of inline pages (default USE_CLOUD_FETCH; the export's is cloudFetchFor). */
  cloudFetch?: boolean;
}

/** How much longer than the statement's own timeout the driver may take to report it. */
const HANG_GRACE_MS = 60_000;

export const DEFAULT_FETCH_ROWS = 5_000;

/**
 * Whether a reader that does not choose (the health check, the detections' small aggregates)
 * asks for CloudFetch links or inline Arrow pages: inline (see cloudFetchFor for the export).
 */
export const USE_CLOUD_FETCH = false;

/**
 * The instance memory from which the export reads through CloudFetch links (the driver's
 * default, faster on large results: the warehouse writes result files in parallel and the
 * driver downloads them instead of paging through the Thrift connection). A warehouse answers
 * large results with links to files of up to about 20 MB of Arrow, and the driver holds a
 * downloaded file whole until its rows are read, while node-fetch briefly holds two more
 * copies of it; V8 frees them only at a full collection. `npm run bench -- --events 200000
 * --rounds 2` on the 512 MB instance's heap: the export's peak RSS 284 MB through links (the
 * bare reader's 205 MB), 180 MB inline (119 MB). A 512 MB Flex Consumption instance must stay
 * within 200 MB, and its quarter core, not the transfer, limits the export's speed, so there
 * the export reads inline pages of `fetchRows` rows (LZ4-compressed by the warehouse: the
 * driver asks for LZ4 when it does not ask for links). The next size, 2,048 MB (the templates'
 * default), has room for links even with four sources at once. The threshold sits below 2 GB
 * because the limit the process sees (its cgroup's) can be a little under the instance's size.
 */
export const CLOUD_FETCH_MIN_MEMORY_BYTES = 1.5 * 1024 ** 3;

/**
 * Whether the export reads through CloudFetch links: as DATABRICKS_CLOUD_FETCH says when it is
 * true or false; on `auto` (unset), links from CLOUD_FETCH_MIN_MEMORY_BYTES of memory and
 * inline pages below. A process without a memory limit (0 or undefined: a laptop, a dedicated
 * plan) gets links, the driver's default.
 */
export function cloudFetchFor(setting: boolean | undefined, memoryLimitBytes: number | undefined): boolean {
  if (setting !== undefined) return setting;
  return memoryLimitBytes === undefined || memoryLimitBytes <= 0 || memoryLimitBytes >= CLOUD_FETCH_MIN_MEMORY_BYTES;
}

/**
 * Result files the driver downloads at once when it uses CloudFetch (its default is 10). With
 * one, the next file is fetched only once the current one is read: about one file in memory,
 * not ten (each up to about 20 MB).
 */
export const CLOUD_FETCH_CONCURRENT_DOWNLOADS = 1;

export class Warehouse implements AuditSource {
  private constructor(
    private readonly client: DBSQLClient,
    private readonly session: IDBSQLSession,
    private readonly fetchRows: number,
    private readonly queryTimeoutMs: number | undefined,
    private readonly hangGraceMs: number,
  ) {}

  static async connect(settings: DatabricksSettings, credential: TokenCredential | undefined, options: WarehouseOptions = {}): Promise<Warehouse> {
    // The driver (with Apache Arrow and Thrift) is loaded on first use, in the thread that
    // reads: the export's main thread, which only talks to the reader thread, stays about
    // 20 MB smaller without it.
    const { DBSQLClient: Client } = await import("@databricks/sql");
    // The driver's default logger prints info lines to stdout (breaking --json output and the
    // Functions log); its errors reach us as exceptions, so it stays silent.
    const client = new Client({ logger: { log: () => undefined } });
    // The driver's connect() takes no CloudFetch options; its config does.
    client.getConfig().useCloudFetch = options.cloudFetch ?? USE_CLOUD_FETCH;
    client.getConfig().cloudFetchConcurrentDownloads = CLOUD_FETCH_CONCURRENT_DOWNLOADS;
    // The driver logs to the console by default; errors reach us as exceptions instead.
    client.on("error", () => undefined);
    const common = {
      host: settings.host,
      port: settings.port,
      path: settings.httpPath,
      telemetryEnabled: false,
      userAgentEntry: "dbx-audit-export",
      ...(options.retryMaxAttempts !== undefined ? { retryMaxAttempts: options.retryMaxAttempts } : {}),
      ...(options.socketTimeoutMs !== undefined ? { socketTimeout: options.socketTimeoutMs } : {}),
    };
    if (settings.accessToken) {
      await client.connect({ ...common, authType: "access-token", token: settings.accessToken });
    } else {
      if (!credential) throw new Error("No DATABRICKS_ACCESS_TOKEN and no Azure credential: cannot authenticate to the SQL warehouse.");
      const scope = settings.scope;
      await client.connect({
        ...common,
        authType: "external-token",
        getToken: async () => {
          const token = await credential.getToken(scope);
          if (!token) throw new Error(`The Azure credential returned no token for scope ${scope}.`);
          return token.token;
        },
      });
    }
    try {
      const session = await client.openSession();
      return new Warehouse(client, session, options.fetchRows ?? DEFAULT_FETCH_ROWS, options.queryTimeoutMs, options.hangGraceMs ?? HANG_GRACE_MS);
    } catch (error) {
      await client.close().catch(() => undefined);
      throw markWarehouseError(error);
    }
  }

  /** Runs a query and yields its rows in chunks; the operation is closed when iteration ends, early or not. */
  async *rows(query: BoundQuery, fetchRows = this.fetchRows): AsyncGenerator<Record<string, unknown>[]> {
    const timeoutMs = this.queryTimeoutMs;
    const options = {
      namedParameters: query.params,
      maxRows: fetchRows,
      ...(timeoutMs ? { queryTimeout: Math.max(1, Math.ceil(timeoutMs / 1000)) } : {}),
    };
    const operation: IOperation = await this.answerIn(this.session.executeStatement(query.sql, options)).catch((e: unknown) => {
      throw markWarehouseError(e);
    });
    try {
      for (;;) {
        let chunk: Record<string, unknown>[];
        try {
          if (!(await this.answerIn(operation.hasMoreRows()))) break;
          chunk = (await this.answerIn(operation.fetchChunk({ maxRows: fetchRows, disableBuffering: true }))) as Record<string, unknown>[];
        } catch (error) {
          if (error instanceof QueryHungError) void operation.cancel().catch(() => undefined);
          throw markWarehouseError(error);
        }
        if (chunk.length > 0) yield chunk;
      }
    } finally {
      await operation.close().catch(() => undefined);
    }
  }

  /** The driver's answer, or QueryHungError when it takes longer than the query timeout allows. */
  private answerIn<T>(work: Promise<T>): Promise<T> {
    const timeoutMs = this.queryTimeoutMs;
    if (!timeoutMs) return work;
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(
            new QueryHungError(
              `The SQL warehouse did not answer within ${Math.round((timeoutMs + this.hangGraceMs) / 1000)} s (EXPORT_QUERY_TIMEOUT ${Math.round(timeoutMs / 1000)} s plus a grace period); the query was abandoned. If the warehouse is overloaded or starting, the next run retries; if queries are just slow, raise EXPORT_QUERY_TIMEOUT.`,
            ),
          ),
        timeoutMs + this.hangGraceMs,
      );
      timer.unref();
    });
    work.catch(() => undefined);
    return Promise.race([work, deadline]).finally(() => clearTimeout(timer));
  }

  async all(query: BoundQuery): Promise<Record<string, unknown>[]> {
    const out: Record<string, unknown>[] = [];
    for await (const chunk of this.rows(query)) out.push(...chunk);
    return out;
  }

  /** Column names and type names of a statement's result, without fetching rows. */
  async columns(sql: string): Promise<{ name: string; type: string }[]> {
    const operation = await this.session.executeStatement(sql).catch((e: unknown) => {
      throw markWarehouseError(e);
    });
    try {
      const schema = await operation.getSchema().catch((e: unknown) => {
        throw markWarehouseError(e);
      });
      return (schema?.columns ?? []).map((column) => {
        const entry = column.typeDesc.types[0]?.primitiveEntry;
        return { name: column.columnName, type: entry ? String(entry.type) : "UNKNOWN" };
      });
    } finally {
      await operation.close().catch(() => undefined);
    }
  }

  async *scan(request: ScanRequest): AsyncGenerator<PreparedEvent[]> {
    for await (const chunk of this.rows(scanQuery(request.filter, request.after, request.toUs, request.limit))) yield prepareRows(chunk, request.preparation);
  }

  countByHour(filter: AuditFilter, fromUs: number, toUs: number): Promise<Map<number, number>> {
    return countRowsByHour((query) => this.rows(query), filter, fromUs, toUs);
  }

  async close(): Promise<void> {
    await this.session.close().catch(() => undefined);
    await this.client.close().catch(() => undefined);
  }
}

type RowSource = (query: BoundQuery) => AsyncIterable<Record<string, unknown>[]>;

/**
 * Rows of the export's query (rows of one result, so of one schema) turned into prepared
 * events (on whichever thread reads them); what the table adds beyond the known columns is
 * found once for them all.
 */
export function prepareRows(rows: readonly Record<string, unknown>[], preparation: Preparation): PreparedEvent[] {
  const shape = shapeOf(rows);
  return prepareEvents(rows, preparation, (row) => eventFromRow(row, shape));
}

export async function countRowsByHour(rows: RowSource, filter: AuditFilter, fromUs: number, toUs: number): Promise<Map<number, number>> {
  const counts = new Map<number, number>();
  for await (const chunk of rows(hourlyCountQuery(filter, fromUs, toUs))) {
    for (const row of chunk) counts.set(Number(row.hour_index), Number(row.event_count));
  }
  return counts;
}

/** A query whose answer never came (see WarehouseOptions.queryTimeoutMs). */
export class QueryHungError extends Error {
  override readonly name = "QueryHungError";
}

/** Tags an error as the warehouse's, so messages blame the right system. */
export function markWarehouseError(error: unknown): unknown {
  if (error && typeof error === "object") Object.defineProperty(error, "fromWarehouse", { value: true, enumerable: false });
  return error;
}

export function isWarehouseError(error: unknown): boolean {
  return !!error && typeof error === "object" && (error as { fromWarehouse?: boolean }).fromWarehouse === true;
}

/**
 * The driver refused or failed a CloudFetch result link because it expired: the driver's own
 * check ("CloudFetch link has expired", thrown before downloading a link whose expiryTime has
 * passed) or the storage's answer to a link that expired on the way ("CloudFetch HTTP error
 * 403 ...": presigned Azure Blob / S3 URLs answer 403 once expired, and the clock that counts
 * is the storage's). The statement's remaining links expire too, so recover by re-issuing the
 * query from the last delivered cursor; a 403 that persists (a storage firewall) comes back on
 * the re-issued query, so bound the re-issues. The driver's error classes are not exported
 * and these are plain Errors: the message is what identifies them, also after it crossed the
 * reader thread.
 */
export function isExpiredResultLinkError(error: unknown): boolean {
  const message = error instanceof Error ? error.message : (error as { message?: unknown } | null)?.message;
  return typeof message === "string" && /^CloudFetch (link has expired|HTTP error 403\b)/.test(message);
}

/** Classifies driver errors by what they carry (the driver's error classes are not exported). */
export function warehouseErrorKind(error: unknown): "auth" | "permission" | "unreachable" | "sql" | "other" {
  const e = error as { statusCode?: number; code?: string; name?: string; message?: string; response?: { sqlState?: string; errorMessage?: string } };
  const text = `${e.message ?? ""} ${e.response?.errorMessage ?? ""}`;
  if (e.response?.sqlState === "42501" || /INSUFFICIENT_PERMISSIONS|PERMISSION_DENIED/.test(text)) return "permission";
  if (e.statusCode === 401 || e.statusCode === 403) return "auth";
  if (
    typeof e.code === "string" &&
    /^(ECONNREFUSED|ENOTFOUND|EAI_AGAIN|ETIMEDOUT|ECONNRESET|EHOSTUNREACH|ENETUNREACH|CERT_|DEPTH_ZERO|SELF_SIGNED|UNABLE_TO)/.test(e.code)
  )
    return "unreachable";
  // The driver's error classes are not exported and do not set `name`: look at the constructor too.
  if (e.name === "OperationStateError" || (error as object | null)?.constructor?.name === "OperationStateError" || e.response?.sqlState) return "sql";
  return "other";
}
