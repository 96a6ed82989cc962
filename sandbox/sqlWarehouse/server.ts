import { randomBytes } from "node:crypto";
import { listenOnLoopback } from "../net";
import type { IncomingMessage, ServerResponse } from "node:http";
import { createServer, type Server } from "node:https";
import type { Socket } from "node:net";
import type { DuckDBConnection, DuckDBDataChunk, DuckDBPreparedStatement, DuckDBResult, DuckDBVector } from "@duckdb/node-api";
import { AUDIENCE, checkBearerJwt } from "../tokens";
import { ALL_NATIVE, ArrowResultEncoder, ColumnResultEncoder, vectorsOf, type NativeTypes, type ResultColumn } from "./arrow";
import {
  AuditDatabase,
  AuditRowError,
  DUCK_CATALOG,
  SqlBridgeError,
  duckStringLiteral,
  translateSparkSql,
  type AuditRowInput,
  type SparkParameter,
} from "./auditTable";
import { CATALOG_WITHOUT_SQL_TEXT } from "./sqlText";
import { syntheticRecords, type SyntheticOptions } from "./synthetic";
import { compressFrameSync } from "lz4-napi";
import { ResultStore, cloudFetchAdmin, type CloudFetchSettings, type CloudFetchStats, type CloudFetchUpdate, type ResultFileSource } from "./cloudFetch";

/**
 * A local stand-in for a Databricks SQL warehouse: an HTTPS server speaking the HiveServer2
 * Thrift protocol (binary protocol over HTTP POST, as `@databricks/sql` sends it) that runs the
 * SQL on DuckDB holding `system.access.audit`, and answers with Arrow record batches, streamed
 * from DuckDB a FetchResults at a time. The Thrift code is the driver's own (its generated
 * `TCLIService` includes a server Processor), so the wire format cannot drift from the client.
 *
 * Large results go as a real warehouse sends them, through CloudFetch (cloudFetch.ts): when the
 * client can download results, FetchResults answers with links to LZ4-compressed (when asked)
 * Arrow files on a second HTTPS server on loopback, the "cloud storage", with expiry. Inline
 * Arrow batches (LZ4-compressed when asked) when CloudFetch is off or the client does not ask.
 *
 * Also on the same server (no auth, loopback sandbox): POST /admin/events (JSONL rows, which
 * may bring new columns and struct fields),
 * POST|GET /admin/faults (`noPiiAccess: true` serves audit rows without their SQL text, as to a
 * reader outside `databricks_pii_access`), GET /admin/stats (counters, CloudFetch's included), and
 * GET|POST /admin/cloudfetch: `{ "enabled": bool, "linkTtlMs": n, "fileBytes": n,
 * "linksPerFetch": n }` (any subset; answers the settings in force) changes `enabled` for
 * statements executed from then on and the others for links issued from then on;
 * `{ "expireNow": true }` makes every link issued so far answer 403, as an expired presigned
 * URL does.
 */

export interface SqlWarehouseOptions {
  tls: { cert: string; key: string };
  /** Full-access PAT-style token (e.g. "dapi" + 32 hex). */
  token: string;
  /** Opens sessions; any statement touching system.access.audit fails INSUFFICIENT_PERMISSIONS. */
  noGrantToken: string;
  /** Bearer JWTs (checkBearerJwt) with this audience get full access. Default AUDIENCE.databricks. */
  jwtAudience?: string;
  /** Default 0 (a free port). */
  port?: number;
  /** CloudFetch: on (the default, as a real warehouse), off (false), or on with these settings. */
  cloudFetch?: boolean | Partial<CloudFetchSettings>;
}

export interface WarehouseFaults {
  /** Destroy the socket (no HTTP answer) on the Nth FetchResults call from now (1 = next one); one-shot. */
  dropSocketOnFetch?: number;
  /** Answer HTTP 503 (Retry-After: 1) to the next N GetOperationStatus calls. */
  statusPoll503?: number;
  /** Warehouse "starting": statements stay PENDING until coldStartMs after this fault is set. */
  coldStartMs?: number;
  /** Extra delay per FetchResults. */
  fetchDelayMs?: number;
  /**
   * The reader is neither an account admin nor in `databricks_pii_access`: audit rows come back
   * without the request_params keys that hold SQL text, as Databricks serves them (sqlText.ts).
   */
  noPiiAccess?: boolean;
}

interface WarehouseCounters {
  sessionsOpened: number;
  statements: number;
  fetches: number;
  statusPolls: number;
  rowsSent: number;
}

export interface WarehouseStats extends WarehouseCounters, CloudFetchStats {}

export interface SqlWarehouse {
  /** "127.0.0.1:<port>" */
  serverHostname: string;
  /** "/sql/1.0/warehouses/<16 hex id>" */
  httpPath: string;
  /** "https://127.0.0.1:<port>/admin" */
  adminUrl: string;
  /**
   * Validates and appends rows (all or none); a bad row throws naming its position and the
   * problem. Rows may carry columns and struct fields the table lacks: it gains them, as
   * Databricks' table does (schemaEvolution).
   */
  appendRows(rows: Iterable<AuditRowInput | Record<string, unknown>> | AsyncIterable<AuditRowInput | Record<string, unknown>>): Promise<number>;
  appendSynthetic(n: number, options?: SyntheticOptions): Promise<number>;
  rowCount(): Promise<number>;
  /** ISO strings with microseconds; null for an empty table. */
  eventTimeRange(): Promise<{ min: string; max: string } | null>;
  /** Replaces the current faults. */
  setFaults(faults: WarehouseFaults): void;
  /** Changes CloudFetch (`enabled` for statements executed from now on, the rest for links issued from now on); returns the settings in force. */
  setCloudFetch(update: CloudFetchUpdate): CloudFetchSettings;
  cloudFetch(): CloudFetchSettings;
  stats(): WarehouseStats;
  close(): Promise<void>;
}

// ---------------------------------------------------------------------------------------------
// Thrift plumbing (the driver's generated code and the thrift runtime it uses)

interface ThriftTransport {
  readonly _never?: never;
}
interface ThriftRuntime {
  TBufferedTransport: {
    new (buffer?: Buffer, onFlush?: (message: Buffer) => void): ThriftTransport;
    receiver(callback: (transport: ThriftTransport) => void, seqid?: number): (data: Buffer) => void;
  };
  TBinaryProtocol: new (transport: ThriftTransport) => unknown;
}
interface ThriftProcessor {
  process(input: unknown, output: unknown): void;
}
// eslint-disable-next-line @typescript-eslint/no-require-imports
const thrift = require("thrift") as ThriftRuntime;
// eslint-disable-next-line @typescript-eslint/no-require-imports
const TCLIService = require("@databricks/sql/thrift/TCLIService") as { Processor: new (handler: object) => ThriftProcessor };

/** TCLIService enum values used here. */
const StatusCode = { SUCCESS: 0, ERROR: 3, INVALID_HANDLE: 4 } as const;
const OperationState = { INITIALIZED: 0, RUNNING: 1, FINISHED: 2, CANCELED: 3, CLOSED: 4, ERROR: 5, PENDING: 7, TIMEDOUT: 8 } as const;
const OperationType = { EXECUTE_STATEMENT: 0, GET_CATALOGS: 2, GET_SCHEMAS: 3, GET_TABLES: 4, GET_TABLE_TYPES: 5, GET_COLUMNS: 6 } as const;
const RowSetType = { ARROW_BASED_SET: 0, COLUMN_BASED_SET: 1, URL_BASED_SET: 3 } as const;
/** SPARK_CLI_SERVICE_PROTOCOL_V8: the first version whose servers take named parameters. */
const SERVER_PROTOCOL_VERSION = 0xa508;

interface HandleIdentifier {
  guid: Buffer;
  secret: Buffer;
}
interface TStatus {
  statusCode: number;
  errorMessage?: string;
  sqlState?: string;
  displayMessage?: string;
  errorCode?: number;
}
interface Int64Like {
  toNumber?: () => number;
}

const OK: TStatus = { statusCode: StatusCode.SUCCESS };

function errorStatus(message: string, sqlState?: string, code: number = StatusCode.ERROR): TStatus {
  return { statusCode: code, errorMessage: message, displayMessage: message, ...(sqlState ? { sqlState } : {}) };
}

function toNumber(value: unknown, fallback: number): number {
  if (typeof value === "number") return value;
  if (value && typeof (value as Int64Like).toNumber === "function") return (value as Int64Like & { toNumber(): number }).toNumber();
  return fallback;
}

/** The method name of a binary-protocol Thrift message (strict or not), without consuming it. */
function thriftMethodName(body: Buffer): string | undefined {
  try {
    if (body.length < 8) return undefined;
    const first = body.readInt32BE(0);
    if (first < 0) {
      const length = body.readInt32BE(4);
      return body.toString("utf8", 8, 8 + length);
    }
    return body.toString("utf8", 4, 4 + first);
  } catch {
    return undefined;
  }
}

function newHandle(): HandleIdentifier {
  const guid = randomBytes(16);
  guid[6] = (guid[6]! & 0x0f) | 0x40; // a version-4 UUID
  guid[8] = (guid[8]! & 0x3f) | 0x80;
  return { guid, secret: randomBytes(16) };
}

function keyOf(id: { guid?: Buffer | null } | null | undefined): string {
  return id?.guid ? Buffer.from(id.guid).toString("hex") : "";
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

// ---------------------------------------------------------------------------------------------
// Errors as Databricks reports them

interface SqlError {
  message: string;
  sqlState: string;
}

export const INSUFFICIENT_PERMISSIONS_MESSAGE =
  "[INSUFFICIENT_PERMISSIONS] Insufficient privileges: User does not have USE SCHEMA on Schema 'system.access'. SQLSTATE: 42501";

function sqlErrorOf(error: unknown): SqlError {
  if (error instanceof SqlBridgeError) return { message: `${error.message} SQLSTATE: ${error.sqlState}`, sqlState: error.sqlState };
  const text = error instanceof Error ? error.message : String(error);
  const rules: [RegExp, string, string][] = [
    [/^Parser Error/, "PARSE_SYNTAX_ERROR", "42601"],
    [/^Binder Error: (Referenced column|Values list .* does not have a column|.*not found in FROM clause)/, "UNRESOLVED_COLUMN.WITHOUT_SUGGESTION", "42703"],
    [/^Catalog Error: Table with name/, "TABLE_OR_VIEW_NOT_FOUND", "42P01"],
    [/^Catalog Error: (Scalar|Aggregate|Table) Function with name/, "UNRESOLVED_ROUTINE", "42883"],
    [/^Catalog Error/, "SCHEMA_NOT_FOUND", "42704"],
    [/^Binder Error/, "DATATYPE_MISMATCH", "42K09"],
    [/^Conversion Error/, "CAST_INVALID_INPUT", "22018"],
    [/^Out of Range Error/, "ARITHMETIC_OVERFLOW", "22003"],
    [/^Invalid Input Error/, "INVALID_PARAMETER_VALUE", "22023"],
    [/^Permission Error/, "INSUFFICIENT_PERMISSIONS", "42501"],
    [/^Not implemented Error/, "UNSUPPORTED_FEATURE", "0A000"],
  ];
  for (const [re, errorClass, sqlState] of rules) {
    if (re.test(text)) return { message: `[${errorClass}] ${text} SQLSTATE: ${sqlState}`, sqlState };
  }
  return { message: `[INTERNAL_ERROR] ${text} SQLSTATE: XX000`, sqlState: "XX000" };
}

// ---------------------------------------------------------------------------------------------
// Sessions and operations

type Access = "full" | "noGrant";

interface Session {
  key: string;
  handle: HandleIdentifier;
  operations: Set<string>;
}

/** DuckDB statement types a caller may run: reads anywhere, writes only outside the `system` catalog. */
const READ_STATEMENTS = new Set([1 /* SELECT */, 4 /* EXPLAIN */]);
const WRITE_STATEMENTS = new Set([2 /* INSERT */, 3 /* UPDATE */, 5 /* DELETE */, 7 /* CREATE */, 9 /* ALTER */, 10 /* TRANSACTION */, 15 /* DROP */]);

interface FetchPage {
  rows: number;
  hasMoreRows: boolean;
  rowSet: object;
}

interface PendingChunk {
  /** Held so the native chunk (which owns the vectors' memory) is not collected while they are read. */
  chunk: DuckDBDataChunk;
  vectors: DuckDBVector[];
  rowCount: number;
  offset: number;
}

/** How a statement's rows reach the client: through result links (CloudFetch) or inline, LZ4 or not. */
interface Delivery {
  links: boolean;
  lz4: boolean;
  maxBytesPerFile?: number | undefined;
}
const INLINE: Delivery = { links: false, lz4: false };

class Operation implements ResultFileSource {
  readonly handle = newHandle();
  readonly key = keyOf(this.handle);
  state: number = OperationState.PENDING;
  error?: SqlError;
  columns?: ResultColumn[];
  encoder?: ArrowResultEncoder | ColumnResultEncoder;
  startRowOffset = 0;
  /** Arrow bytes per row of the last result file (CloudFetch). */
  private fileRowBytes = 0;
  private connection?: DuckDBConnection;
  private prepared?: DuckDBPreparedStatement;
  private result?: DuckDBResult;
  private current?: PendingChunk;
  private exhausted = false;
  private fetchChain: Promise<unknown> = Promise.resolve();
  private inFlight = 0;
  private releaseRequested = false;
  private readonly settled: Promise<void>;
  private settle!: () => void;

  constructor(
    readonly session: Session,
    readonly operationType: number,
    readonly arrowResults: boolean,
    readonly native: NativeTypes,
    readonly delivery: Delivery = INLINE,
  ) {
    this.settled = new Promise<void>((resolve) => (this.settle = resolve));
  }

  get lz4(): boolean {
    return this.delivery.lz4;
  }

  get maxBytesPerFile(): number | undefined {
    return this.delivery.maxBytesPerFile;
  }

  arrowSchema(): Buffer {
    return (this.encoder as ArrowResultEncoder).arrowSchema();
  }

  /**
   * A result file's worth of record batches (CloudFetch): about `maxBytes` of them. After the
   * first file the rows are counted from the Arrow bytes a row took so far, so a file ends
   * near `maxBytes` rather than up to a DuckDB chunk (2,048 rows) past it.
   */
  async nextBatches(maxBytes: number): Promise<{ batches: Buffer[]; rows: number; startRowOffset: number; hasMoreRows: boolean }> {
    const maxRows = this.fileRowBytes > 0 ? Math.max(1, Math.floor(maxBytes / this.fileRowBytes)) : Number.MAX_SAFE_INTEGER;
    const page = await this.fetch(maxRows, maxBytes);
    const rowSet = page.rowSet as { startRowOffset: number; arrowBatches: { batch: Buffer }[] };
    const batches = rowSet.arrowBatches.map((b) => b.batch);
    if (page.rows > 0) this.fileRowBytes = batches.reduce((sum, b) => sum + b.length, 0) / page.rows;
    return { batches, rows: page.rows, startRowOffset: rowSet.startRowOffset, hasMoreRows: page.hasMoreRows };
  }

  get terminal(): boolean {
    return this.state !== OperationState.PENDING && this.state !== OperationState.RUNNING && this.state !== OperationState.INITIALIZED;
  }

  /** Resolves when the statement has finished (or failed), or after `timeoutMs`. */
  waitSettled(timeoutMs?: number): Promise<void> {
    if (timeoutMs === undefined) return this.settled;
    return Promise.race([this.settled, sleep(timeoutMs)]);
  }

  /**
   * Prepares, binds and starts streaming the statement. `systemReadOnly`: the statement touches
   * the `system` catalog, which (as on Databricks) nobody may modify.
   */
  async run(db: AuditDatabase, sql: string, values: Record<string, string> | string[], systemReadOnly = false): Promise<void> {
    if (this.terminal) return;
    this.state = OperationState.RUNNING;
    await this.duck(async () => {
      this.connection = await db.connect();
      if (this.terminal) return;
      const prepared = await this.connection.prepare(sql);
      this.prepared = prepared;
      const type = prepared.statementType as number;
      if (!READ_STATEMENTS.has(type) && !WRITE_STATEMENTS.has(type)) {
        throw new SqlBridgeError("[UNSUPPORTED_FEATURE] This statement is not supported by the local SQL warehouse.", "0A000", "UNSUPPORTED_FEATURE");
      }
      if (systemReadOnly && !READ_STATEMENTS.has(type)) {
        throw new SqlBridgeError(
          "[INSUFFICIENT_PERMISSIONS] Insufficient privileges: User does not have MODIFY on Table 'system.access.audit'.",
          "42501",
          "INSUFFICIENT_PERMISSIONS",
        );
      }
      if (Array.isArray(values) ? values.length > 0 : Object.keys(values).length > 0) prepared.bind(values);
      const result = await prepared.stream();
      if (this.terminal) return;
      this.result = result;
      const names = result.deduplicatedColumnNames();
      this.columns = result.columnTypes().map((columnType, i) => ({ name: names[i] ?? `col${i}`, type: columnType }));
      this.encoder = this.arrowResults ? new ArrowResultEncoder(this.columns, this.native) : new ColumnResultEncoder(this.columns);
      this.state = OperationState.FINISHED;
      this.settle();
    });
  }

  /** Whether a DuckDB call of this operation is still running. */
  get busy(): boolean {
    return this.inFlight > 0;
  }

  /** Runs DuckDB work; a release requested meanwhile waits until no DuckDB call is in flight. */
  private async duck<T>(work: () => Promise<T>): Promise<T> {
    this.inFlight++;
    try {
      return await work();
    } finally {
      this.inFlight--;
      if (this.inFlight === 0 && this.releaseRequested) this.release();
    }
  }

  fail(error: SqlError): void {
    if (this.terminal) return;
    this.state = OperationState.ERROR;
    this.error = error;
    this.release();
    this.settle();
  }

  cancel(): void {
    if (this.terminal && this.state !== OperationState.FINISHED) return;
    try {
      this.connection?.interrupt();
    } catch {
      // the connection may already be closed
    }
    this.state = OperationState.CANCELED;
    this.release();
    this.settle();
  }

  close(): void {
    try {
      if (!this.terminal) this.connection?.interrupt();
    } catch {
      // ignore
    }
    this.state = OperationState.CLOSED;
    this.release();
    this.settle();
  }

  timeOut(): void {
    if (this.terminal) return;
    try {
      this.connection?.interrupt();
    } catch {
      // ignore
    }
    this.state = OperationState.TIMEDOUT;
    this.error = { message: "[QUERY_TIMEOUT] The query timed out. SQLSTATE: HYT00", sqlState: "HYT00" };
    this.release();
    this.settle();
  }

  /**
   * The next page of results: up to `maxRows` rows (fewer once an Arrow batch passes
   * `maxBytes`), converted chunk by chunk straight from DuckDB's stream; one fetch at a time.
   */
  fetch(maxRows: number, maxBytes: number): Promise<FetchPage> {
    const run = this.fetchChain.then(() => this.duck(() => this.fetchNow(maxRows, maxBytes)));
    this.fetchChain = run.catch(() => undefined);
    return run;
  }

  private async fetchNow(maxRows: number, maxBytes: number): Promise<FetchPage> {
    const encoder = this.encoder!;
    const startRowOffset = this.startRowOffset;
    let rows = 0;
    // A page carries several Arrow record batches, as a warehouse's does: the driver hands
    // each batch to fetchChunk() on its own, so no single call converts a whole page.
    const batches: { batch: Buffer; rowCount: number }[] = [];
    let takenBytes = 0;
    const take = (): void => {
      if (!(encoder instanceof ArrowResultEncoder) || encoder.bufferedRows() === 0) return;
      const taken = encoder.takeBatch();
      takenBytes += taken.batch.length;
      batches.push(taken);
    };
    const withinBudget = () => !(encoder instanceof ArrowResultEncoder) || takenBytes + encoder.bufferedBytes() < maxBytes;
    while (rows < maxRows && withinBudget()) {
      if (!this.current && !(await this.nextChunk())) break;
      const cur = this.current!;
      const count = Math.min(cur.rowCount - cur.offset, maxRows - rows);
      encoder.append(cur.vectors, cur.offset, cur.offset + count);
      cur.offset += count;
      rows += count;
      if (cur.offset >= cur.rowCount) this.current = undefined;
      if (encoder instanceof ArrowResultEncoder && encoder.bufferedRows() >= ARROW_BATCH_ROWS) take();
    }
    // Look one chunk ahead so hasMoreRows is exact.
    if (!this.current && !this.exhausted) await this.nextChunk();
    this.startRowOffset += rows;
    take();
    const rowSet =
      encoder instanceof ArrowResultEncoder ? { startRowOffset, rows: [], arrowBatches: batches } : { startRowOffset, rows: [], columns: encoder.take() };
    return { rows, hasMoreRows: this.current !== undefined, rowSet };
  }

  private async nextChunk(): Promise<boolean> {
    if (this.exhausted || !this.result || this.state !== OperationState.FINISHED) {
      this.exhausted = true;
      return false;
    }
    const chunk = await this.result.fetchChunk();
    if (!chunk || chunk.rowCount === 0) {
      this.exhausted = true;
      this.release();
      return false;
    }
    this.current = { chunk, vectors: vectorsOf(chunk), rowCount: chunk.rowCount, offset: 0 };
    return true;
  }

  private release(): void {
    if (this.inFlight > 0) {
      this.releaseRequested = true;
      return;
    }
    this.releaseRequested = false;
    this.result = undefined;
    this.current = undefined;
    try {
      this.prepared?.destroySync();
    } catch {
      // ignore
    }
    this.prepared = undefined;
    try {
      this.connection?.closeSync();
    } catch {
      // ignore
    }
    this.connection = undefined;
  }
}

// ---------------------------------------------------------------------------------------------
// The warehouse

const MAX_BATCH_BYTES = 64 * 1024 * 1024;
/** Rows per Arrow record batch inside a page (DuckDB's own chunk size). */
const ARROW_BATCH_ROWS = 2048;
const STATUS_LONG_POLL_MS = 200;

class Warehouse {
  readonly sessions = new Map<string, Session>();
  readonly operations = new Map<string, Operation>();
  readonly counters: WarehouseCounters = { sessionsOpened: 0, statements: 0, fetches: 0, statusPolls: 0, rowsSent: 0 };
  private faults: WarehouseFaults = {};
  private coldStartUntil = 0;

  constructor(
    readonly db: AuditDatabase,
    private readonly options: SqlWarehouseOptions,
    readonly store: ResultStore,
  ) {}

  // ----- faults

  setFaults(faults: WarehouseFaults): void {
    const clean: WarehouseFaults = {};
    for (const [key, value] of Object.entries(faults ?? {})) {
      if (key === "noPiiAccess") {
        if (value !== undefined && value !== null && typeof value !== "boolean")
          throw new Error(`fault noPiiAccess must be true or false, got ${JSON.stringify(value)}`);
        if (value === true) clean.noPiiAccess = true;
        continue;
      }
      if (!["dropSocketOnFetch", "statusPoll503", "coldStartMs", "fetchDelayMs"].includes(key)) throw new Error(`unknown fault '${key}'`);
      if (value === undefined || value === null) continue;
      if (typeof value !== "number" || !Number.isFinite(value) || value < 0)
        throw new Error(`fault ${key} must be a number >= 0, got ${JSON.stringify(value)}`);
      if (value === 0) continue; // 0 = no fault
      (clean as Record<string, number>)[key] = value;
    }
    this.faults = clean;
    this.coldStartUntil = clean.coldStartMs ? Date.now() + clean.coldStartMs : 0;
  }

  currentFaults(): WarehouseFaults & { coldStartRemainingMs?: number } {
    const remaining = Math.max(0, this.coldStartUntil - Date.now());
    return { ...this.faults, ...(remaining > 0 ? { coldStartRemainingMs: remaining } : {}) };
  }

  // ----- authentication

  /** Full or no-grant access for the request's bearer token, or the HTTP status to refuse it with. */
  authenticate(header: string | undefined): Access | { status: 401 | 403; reason: string } {
    if (!header) return { status: 401, reason: "missing Authorization header" };
    const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
    if (!match) return { status: 403, reason: "unsupported Authorization scheme" };
    const token = match[1]!;
    if (token === this.options.token) return "full";
    if (token === this.options.noGrantToken) return "noGrant";
    const jwt = checkBearerJwt(header, this.options.jwtAudience ?? AUDIENCE.databricks);
    if (jwt.ok) return "full";
    return { status: 403, reason: `invalid access token (${jwt.reason})` };
  }

  // ----- HTTP entry for Thrift

  async handleThrift(req: IncomingMessage, res: ServerResponse, body: Buffer): Promise<void> {
    const access = this.authenticate(req.headers.authorization);
    if (typeof access !== "string") {
      sendJson(res, access.status, { error_code: access.status === 401 ? "UNAUTHENTICATED" : "PERMISSION_DENIED", message: access.reason });
      return;
    }
    const method = thriftMethodName(body);
    if (method === "GetOperationStatus") {
      this.counters.statusPolls++;
      if ((this.faults.statusPoll503 ?? 0) > 0) {
        this.faults.statusPoll503 = this.faults.statusPoll503! - 1;
        if (this.faults.statusPoll503 === 0) delete this.faults.statusPoll503;
        res.writeHead(503, { "Retry-After": "1", "Content-Type": "text/plain" });
        res.end("Service temporarily unavailable (injected fault)");
        return;
      }
    }
    if (method === "FetchResults") {
      this.counters.fetches++;
      if (this.faults.dropSocketOnFetch !== undefined) {
        const left = this.faults.dropSocketOnFetch - 1;
        if (left <= 0) {
          delete this.faults.dropSocketOnFetch;
          req.socket.destroy();
          return;
        }
        this.faults.dropSocketOnFetch = left;
      }
      if (this.faults.fetchDelayMs) await sleep(this.faults.fetchDelayMs);
    }
    let reply: Buffer;
    try {
      reply = await this.process(body, access);
    } catch (error) {
      sendJson(res, 400, { error: `not a Thrift binary-protocol TCLIService call: ${(error as Error)?.message ?? String(error)}` });
      return;
    }
    if (res.destroyed) return;
    res.writeHead(200, { "Content-Type": "application/x-thrift", "Content-Length": String(reply.length) });
    res.end(reply);
  }

  private process(body: Buffer, access: Access): Promise<Buffer> {
    return new Promise<Buffer>((resolve, reject) => {
      const output = new thrift.TBufferedTransport(undefined, (message) => resolve(Buffer.from(message)));
      const outputProtocol = new thrift.TBinaryProtocol(output);
      const processor = new TCLIService.Processor(this.handler(access));
      try {
        thrift.TBufferedTransport.receiver((transport) => {
          processor.process(new thrift.TBinaryProtocol(transport), outputProtocol);
        })(body);
      } catch (error) {
        reject(error instanceof Error ? error : new Error(String(error)));
      }
    });
  }

  // ----- TCLIService handlers (promise style: the generated Processor awaits them)

  private handler(access: Access): object {
    // Every handler takes exactly one argument: the generated Processor then awaits its promise.
    const notSupported = (_req: unknown) => ({ status: errorStatus("This operation is not supported by the local SQL warehouse.", "0A000") });
    return {
      OpenSession: (_req: unknown) => {
        const session: Session = { handle: newHandle(), key: "", operations: new Set() };
        session.key = keyOf(session.handle);
        this.sessions.set(session.key, session);
        this.counters.sessionsOpened++;
        return {
          status: OK,
          serverProtocolVersion: SERVER_PROTOCOL_VERSION,
          sessionHandle: { sessionId: session.handle },
          configuration: {},
          canUseMultipleCatalogs: true,
        };
      },
      CloseSession: (req: { sessionHandle?: { sessionId?: HandleIdentifier } }) => {
        const session = this.sessions.get(keyOf(req.sessionHandle?.sessionId));
        if (session) {
          for (const key of session.operations) this.dropOperation(key);
          this.sessions.delete(session.key);
        }
        return { status: OK };
      },
      GetInfo: (req: { sessionHandle?: { sessionId?: HandleIdentifier }; infoType?: number }) => {
        if (!this.sessions.has(keyOf(req.sessionHandle?.sessionId))) return { status: this.invalidSession(), infoValue: { stringValue: "" } };
        const values: Record<number, string> = { 2: "Databricks SQL (local stand-in)", 13: "Spark SQL", 17: "Spark SQL", 18: "3.5.0" }; // CLI_DATA_SOURCE_NAME, CLI_SERVER_NAME, CLI_DBMS_NAME, CLI_DBMS_VER
        return { status: OK, infoValue: { stringValue: values[req.infoType ?? -1] ?? "" } };
      },
      ExecuteStatement: async (req: ExecuteStatementReq) => this.executeStatement(req, access),
      GetTypeInfo: notSupported,
      GetCatalogs: (req: MetadataReq) => this.metadata(req, OperationType.GET_CATALOGS, "SELECT 'system' AS TABLE_CAT"),
      GetSchemas: (req: MetadataReq) => this.metadata(req, OperationType.GET_SCHEMAS, "SELECT 'access' AS TABLE_SCHEM, 'system' AS TABLE_CATALOG"),
      GetTables: (req: MetadataReq) =>
        this.metadata(
          req,
          OperationType.GET_TABLES,
          "SELECT 'system' AS TABLE_CAT, 'access' AS TABLE_SCHEM, 'audit' AS TABLE_NAME, 'TABLE' AS TABLE_TYPE, '' AS REMARKS",
        ),
      GetTableTypes: (req: MetadataReq) => this.metadata(req, OperationType.GET_TABLE_TYPES, "SELECT 'TABLE' AS TABLE_TYPE"),
      GetColumns: (req: MetadataReq) => {
        const rows = this.db
          .columns()
          .map((c, i) => `('system', 'access', 'audit', ${duckStringLiteral(c.name)}, ${duckStringLiteral(c.sparkType)}, ${i + 1})`);
        return this.metadata(
          req,
          OperationType.GET_COLUMNS,
          `SELECT * FROM (VALUES ${rows.join(", ")}) AS t(TABLE_CAT, TABLE_SCHEM, TABLE_NAME, COLUMN_NAME, TYPE_NAME, ORDINAL_POSITION)`,
        );
      },
      GetFunctions: notSupported,
      GetPrimaryKeys: notSupported,
      GetCrossReference: notSupported,
      GetDelegationToken: notSupported,
      CancelDelegationToken: notSupported,
      RenewDelegationToken: notSupported,
      GetOperationStatus: async (req: OperationReq) => {
        const op = this.operations.get(keyOf(req.operationHandle?.operationId));
        if (!op) return { status: this.invalidOperation() };
        if (!op.terminal) await op.waitSettled(STATUS_LONG_POLL_MS);
        return {
          status: OK,
          operationState: op.state,
          hasResultSet: true,
          ...(op.error ? { errorMessage: op.error.message, displayMessage: op.error.message, sqlState: op.error.sqlState } : {}),
        };
      },
      CancelOperation: (req: OperationReq) => {
        const op = this.operations.get(keyOf(req.operationHandle?.operationId));
        if (!op) return { status: this.invalidOperation() };
        op.cancel();
        return { status: OK };
      },
      CloseOperation: (req: OperationReq) => {
        this.dropOperation(keyOf(req.operationHandle?.operationId));
        return { status: OK };
      },
      GetResultSetMetadata: async (req: OperationReq) => {
        const op = this.operations.get(keyOf(req.operationHandle?.operationId));
        if (!op) return { status: this.invalidOperation() };
        await op.waitSettled();
        if (op.state !== OperationState.FINISHED || !op.encoder) return { status: this.operationError(op) };
        const arrowResults = op.encoder instanceof ArrowResultEncoder;
        return {
          status: OK,
          schema: { columns: op.encoder.hiveColumns() },
          resultFormat: op.delivery.links ? RowSetType.URL_BASED_SET : arrowResults ? RowSetType.ARROW_BASED_SET : RowSetType.COLUMN_BASED_SET,
          lz4Compressed: op.delivery.lz4,
          ...(op.encoder instanceof ArrowResultEncoder ? { arrowSchema: op.encoder.arrowSchema() } : {}),
          isStagingOperation: false,
        };
      },
      FetchResults: async (req: FetchResultsReq) => this.fetchResults(req),
    };
  }

  private invalidSession(): TStatus {
    return errorStatus("Invalid SessionHandle: the session does not exist or was closed.", "HY000", StatusCode.INVALID_HANDLE);
  }

  private invalidOperation(): TStatus {
    return errorStatus("Invalid OperationHandle: the operation does not exist or was closed.", "HY000", StatusCode.INVALID_HANDLE);
  }

  private operationError(op: Operation): TStatus {
    if (op.error) return errorStatus(op.error.message, op.error.sqlState);
    return errorStatus(`The operation is ${Object.entries(OperationState).find(([, v]) => v === op.state)?.[0] ?? "not finished"}.`, "HY000");
  }

  private executeStatement(req: ExecuteStatementReq, access: Access) {
    const session = this.sessions.get(keyOf(req.sessionHandle?.sessionId));
    if (!session) return { status: this.invalidSession() };
    this.counters.statements++;
    const native: NativeTypes = req.useArrowNativeTypes
      ? {
          timestampAsArrow: req.useArrowNativeTypes.timestampAsArrow ?? false,
          decimalAsArrow: req.useArrowNativeTypes.decimalAsArrow ?? false,
          complexTypesAsArrow: req.useArrowNativeTypes.complexTypesAsArrow ?? false,
        }
      : { timestampAsArrow: false, decimalAsArrow: false, complexTypesAsArrow: false };
    const arrowResults = req.canReadArrowResult === true;
    // As a real warehouse: links when the client can download results, LZ4 when it can decompress it (Arrow only).
    const delivery: Delivery = {
      links: arrowResults && req.canDownloadResult === true && this.store.settings.enabled,
      lz4: arrowResults && req.canDecompressLZ4Result === true,
      maxBytesPerFile: toNumber(req.maxBytesPerFile, 0) || undefined,
    };
    const op = new Operation(session, OperationType.EXECUTE_STATEMENT, arrowResults, native, delivery);
    this.operations.set(op.key, op);
    session.operations.add(op.key);
    const parameters: SparkParameter[] = (req.parameters ?? []).map((p) => ({
      name: p.name ?? null,
      ordinal: p.ordinal ?? null,
      type: p.type ?? null,
      value:
        p.value?.stringValue ??
        (p.value?.doubleValue !== undefined && p.value?.doubleValue !== null
          ? String(p.value.doubleValue)
          : p.value?.booleanValue !== undefined && p.value?.booleanValue !== null
            ? String(p.value.booleanValue).toUpperCase()
            : null),
    }));
    const timeoutMs = toNumber(req.queryTimeout, 0) * 1000;
    if (timeoutMs > 0) setTimeout(() => op.timeOut(), timeoutMs).unref();
    const done = this.runStatement(op, req.statement ?? "", parameters, access);
    const handle = { operationId: op.handle, operationType: OperationType.EXECUTE_STATEMENT, hasResultSet: true };
    if (req.runAsync === false) return done.then(() => ({ status: OK, operationHandle: handle }));
    return { status: OK, operationHandle: handle };
  }

  private async runStatement(op: Operation, sql: string, parameters: SparkParameter[], access: Access): Promise<void> {
    try {
      // Cold start: the statement waits, PENDING, until the warehouse is "up".
      while (Date.now() < this.coldStartUntil && !op.terminal) await sleep(Math.min(50, this.coldStartUntil - Date.now()));
      if (op.terminal) return;
      // A reader without PII access reads the table through the view that lacks SQL text.
      const statement = translateSparkSql(sql, parameters, this.db.columns(), this.faults.noPiiAccess ? CATALOG_WITHOUT_SQL_TEXT : DUCK_CATALOG);
      if (statement.touchesSystem && access !== "full") {
        op.fail({ message: INSUFFICIENT_PERMISSIONS_MESSAGE, sqlState: "42501" });
        return;
      }
      await op.run(this.db, statement.sql, statement.values, statement.touchesSystem);
    } catch (error) {
      op.fail(sqlErrorOf(error));
    }
  }

  private metadata(req: MetadataReq, operationType: number, sql: string) {
    const session = this.sessions.get(keyOf(req.sessionHandle?.sessionId));
    if (!session) return { status: this.invalidSession() };
    const op = new Operation(session, operationType, true, ALL_NATIVE);
    this.operations.set(op.key, op);
    session.operations.add(op.key);
    op.run(this.db, sql, {}).catch((error: unknown) => op.fail(sqlErrorOf(error)));
    return { status: OK, operationHandle: { operationId: op.handle, operationType, hasResultSet: true } };
  }

  private async fetchResults(req: FetchResultsReq) {
    const op = this.operations.get(keyOf(req.operationHandle?.operationId));
    if (!op) return { status: this.invalidOperation() };
    const emptyRowSet = { startRowOffset: op.startRowOffset, rows: [] as never[], ...(op.arrowResults ? { arrowBatches: [] } : { columns: [] }) };
    if (req.fetchType === 1) return { status: OK, hasMoreRows: false, results: emptyRowSet }; // logs: none
    await op.waitSettled();
    if (op.state !== OperationState.FINISHED || !op.encoder) return { status: this.operationError(op) };
    const maxRows = Math.max(1, toNumber(req.maxRows, 10_000));
    if (op.delivery.links) {
      const startRowOffset = op.startRowOffset;
      const maxBytes = toNumber(req.maxBytes, 0);
      const issued = await this.store.issueLinks(op, maxRows, maxBytes > 0 ? maxBytes : undefined);
      this.counters.rowsSent += issued.rows;
      return { status: OK, hasMoreRows: issued.hasMoreRows, results: { startRowOffset, rows: [], resultLinks: issued.links } };
    }
    const page = await op.fetch(maxRows, MAX_BATCH_BYTES);
    this.counters.rowsSent += page.rows;
    if (op.delivery.lz4) for (const b of (page.rowSet as { arrowBatches?: { batch: Buffer }[] }).arrowBatches ?? []) b.batch = compressFrameSync(b.batch);
    return { status: OK, hasMoreRows: page.hasMoreRows, results: page.rowSet };
  }

  dropOperation(key: string): void {
    const op = this.operations.get(key);
    if (!op) return;
    op.close();
    op.session.operations.delete(key);
    this.operations.delete(key);
    this.store.dropOperation(key);
  }

  /** Closes every operation and waits (up to 10 s) until none has a DuckDB call in flight. */
  async closeAll(): Promise<void> {
    const all = [...this.operations.values()];
    for (const key of [...this.operations.keys()]) this.dropOperation(key);
    this.sessions.clear();
    const deadline = Date.now() + 10_000;
    while (all.some((op) => op.busy) && Date.now() < deadline) await sleep(10);
  }
}

interface ExecuteStatementReq {
  sessionHandle?: { sessionId?: HandleIdentifier };
  statement?: string;
  runAsync?: boolean;
  queryTimeout?: unknown;
  canReadArrowResult?: boolean;
  canDownloadResult?: boolean;
  canDecompressLZ4Result?: boolean;
  maxBytesPerFile?: unknown;
  useArrowNativeTypes?: { timestampAsArrow?: boolean; decimalAsArrow?: boolean; complexTypesAsArrow?: boolean };
  parameters?: {
    name?: string;
    ordinal?: number;
    type?: string;
    value?: { stringValue?: string | null; doubleValue?: number | null; booleanValue?: boolean | null };
  }[];
}
interface MetadataReq {
  sessionHandle?: { sessionId?: HandleIdentifier };
}
interface OperationReq {
  operationHandle?: { operationId?: HandleIdentifier };
}
interface FetchResultsReq extends OperationReq {
  maxRows?: unknown;
  maxBytes?: unknown;
  fetchType?: number;
}

// ---------------------------------------------------------------------------------------------
// HTTP helpers and admin endpoints

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { "Content-Type": "application/json", "Content-Length": String(Buffer.byteLength(text)) });
  res.end(text);
}

function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("end", () => resolve(Buffer.concat(chunks)));
    req.on("error", reject);
  });
}

/** Parses a JSONL body; a line that is not JSON is reported by number, and each row's line number is kept for the table's checks. */
function parseEventLines(text: string): { rows: unknown[]; lineNumbers: number[] } | { error: string } {
  const rows: unknown[] = [];
  const lineNumbers: number[] = [];
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const line = (i === 0 ? lines[i]!.replace(/^\uFEFF/, "") : lines[i]!).replace(/\r$/, "");
    if (!line.trim()) continue;
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch (error) {
      return { error: `line ${i + 1}: not valid JSON (${(error as Error).message})` };
    }
    rows.push(value);
    lineNumbers.push(i + 1);
  }
  return { rows, lineNumbers };
}

async function handleAdmin(warehouse: Warehouse, req: IncomingMessage, res: ServerResponse, path: string): Promise<void> {
  const route = `${req.method ?? "GET"} ${path}`;
  switch (route) {
    case "POST /admin/events": {
      const parsed = parseEventLines((await readBody(req)).toString("utf8"));
      if ("error" in parsed) return sendJson(res, 400, { error: parsed.error });
      try {
        // Rows may bring columns and struct fields the table lacks: the table gains them.
        const appended = await warehouse.db.appendRows(parsed.rows, (index) => `line ${parsed.lineNumbers[index - 1]}`);
        return sendJson(res, 200, { appended });
      } catch (error) {
        if (error instanceof AuditRowError) return sendJson(res, 400, { error: error.message });
        throw error;
      }
    }
    case "POST /admin/faults": {
      const text = (await readBody(req)).toString("utf8");
      let faults: unknown;
      try {
        faults = text.trim() ? JSON.parse(text) : {};
      } catch (error) {
        return sendJson(res, 400, { error: `not valid JSON (${(error as Error).message})` });
      }
      if (faults === null || typeof faults !== "object" || Array.isArray(faults)) return sendJson(res, 400, { error: "expected a JSON object of faults" });
      try {
        warehouse.setFaults(faults);
      } catch (error) {
        return sendJson(res, 400, { error: (error as Error).message });
      }
      return sendJson(res, 200, { faults: warehouse.currentFaults() });
    }
    case "GET /admin/faults":
      await readBody(req);
      return sendJson(res, 200, { faults: warehouse.currentFaults() });
    case "GET /admin/stats":
      await readBody(req);
      return sendJson(res, 200, { ...warehouse.counters, ...warehouse.store.stats(), rowCount: await warehouse.db.rowCount() });
    case "GET /admin/cloudfetch":
    case "POST /admin/cloudfetch": {
      const answer = cloudFetchAdmin(warehouse.store, req.method ?? "GET", (await readBody(req)).toString("utf8"));
      return sendJson(res, answer.status, answer.body);
    }
    default:
      await readBody(req);
      if (["/admin/events", "/admin/faults", "/admin/stats", "/admin/cloudfetch"].includes(path))
        return sendJson(res, 405, { error: `${req.method} not allowed on ${path}` });
      return sendJson(res, 404, { error: `no such admin endpoint: ${path}` });
  }
}

// ---------------------------------------------------------------------------------------------
// Start

/** Starts the stand-in on 127.0.0.1 (HTTPS). */
export async function startSqlWarehouse(options: SqlWarehouseOptions): Promise<SqlWarehouse> {
  if (!options.token || !options.noGrantToken || options.token === options.noGrantToken) {
    throw new Error("startSqlWarehouse: token and noGrantToken are required and must differ");
  }
  const cloudFetch = options.cloudFetch ?? true;
  const db = await AuditDatabase.create();
  let store: ResultStore;
  try {
    store = await ResultStore.start(options.tls, typeof cloudFetch === "boolean" ? { enabled: cloudFetch } : cloudFetch);
  } catch (error) {
    db.close();
    throw error;
  }
  const warehouse = new Warehouse(db, options, store);
  const httpPath = `/sql/1.0/warehouses/${randomBytes(8).toString("hex")}`;
  const sockets = new Set<Socket>();

  const server: Server = createServer({ cert: options.tls.cert, key: options.tls.key }, (req, res) => {
    const path = new URL(req.url ?? "/", "https://127.0.0.1").pathname;
    const work = (async () => {
      if (path === httpPath || path === `${httpPath}/`) {
        if (req.method !== "POST") {
          await readBody(req);
          return sendJson(res, 405, { error: "Thrift requests are POSTs" });
        }
        const body = await readBody(req);
        return warehouse.handleThrift(req, res, body);
      }
      if (path === "/admin" || path.startsWith("/admin/")) return handleAdmin(warehouse, req, res, path);
      await readBody(req);
      return sendJson(res, 404, { error: `not found: ${path}` });
    })();
    work.catch((error: unknown) => {
      if (!res.headersSent && !res.destroyed) sendJson(res, 500, { error: (error as Error)?.message ?? String(error) });
      else res.destroy();
    });
  });
  // Keep idle keep-alive sockets longer than the driver would reuse them: a socket closed under
  // a request that is not retried (FetchResults) would look like a dropped connection.
  server.keepAliveTimeout = 120_000;
  server.headersTimeout = 125_000;
  server.requestTimeout = 0;
  server.on("connection", (socket: Socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
  });
  server.on("tlsClientError", () => undefined);

  let port: number;
  try {
    port = await listenOnLoopback(server, options.port ?? 0);
  } catch (error) {
    await store.close();
    db.close();
    throw error;
  }
  let closing: Promise<void> | undefined;

  return {
    serverHostname: `127.0.0.1:${port}`,
    httpPath,
    adminUrl: `https://127.0.0.1:${port}/admin`,
    appendRows: (rows) => db.appendRows(rows),
    appendSynthetic: (n, synthetic) => db.appendBulk(syntheticRecords(n, synthetic)),
    rowCount: () => db.rowCount(),
    eventTimeRange: () => db.eventTimeRange(),
    setFaults: (faults) => warehouse.setFaults(faults),
    setCloudFetch: (update) => store.configure(update),
    cloudFetch: () => store.settings,
    stats: () => ({ ...warehouse.counters, ...store.stats() }),
    close: () =>
      (closing ??= (async () => {
        // Stop taking requests, then end every statement, then drop the database.
        const stopped = new Promise<void>((resolve) => server.close(() => resolve()));
        for (const socket of sockets) socket.destroy();
        await warehouse.closeAll();
        await stopped;
        await store.close();
        await db.drain();
        db.close();
      })()),
  };
}
