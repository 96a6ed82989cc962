import { randomBytes, randomUUID } from "node:crypto";
import { createServer, type Server } from "node:https";
import type { IncomingMessage, ServerResponse } from "node:http";
import { promisify } from "node:util";
import { gunzip as gunzipCallback } from "node:zlib";
import { closeServer, listenOnLoopback } from "./net";
import { AUDIENCE, checkBearerJwt } from "./tokens";
import { validateFaults, type IngestionFaults } from "./ingestionFaults";
import { QueryApiError, answerQuery } from "./logsQuery";
import tables from "../infra/tables.json";

/**
 * An HTTPS stand-in for the Azure Monitor Logs Ingestion API (a data collection endpoint with
 * one data collection rule). It answers `POST /dataCollectionRules/{ruleId}/streams/{stream}
 * ?api-version=2023-01-01` like the service: bearer token for https://monitor.azure.com,
 * gzip bodies, 1 MB per call, 64 KB per field value, JSON error bodies, 204 on success. It is
 * stricter than Azure in one way, on purpose: every record must match the stream's declared
 * columns (no undeclared column, no value of the wrong type), to catch mapping bugs.
 *
 * It also answers the Logs Query API for what it accepted (`POST /v1/workspaces/{workspaceId}/query`,
 * bearer token for https://api.loganalytics.io; logsQuery.ts), so reconciliation runs end to end.
 *
 * Extra loopback-only routes (no auth): `GET /received[?stream=...]` (every accepted record as
 * JSONL), `POST /admin/faults` (JSON IngestionFaults), `POST /admin/reset`, `GET /admin/stats`.
 */

export type ColumnType = "string" | "int" | "long" | "real" | "boolean" | "datetime" | "dynamic";

export interface StreamColumn {
  name: string;
  type: ColumnType;
}

export type { IngestionFaults };

export const DEFAULT_STREAM_NAME = "Custom-DatabricksAudit";
export const ALERTS_STREAM_NAME = "Custom-DatabricksAuditAlerts";

/**
 * Every stream infra/tables.json declares (the one source of truth the Bicep and the app's
 * records share), with its columns' types in lower case, as a DCR's stream declaration spells them.
 */
export const STREAMS_FROM_TABLES: Readonly<Record<string, readonly StreamColumn[]>> = Object.freeze(
  Object.fromEntries(
    Object.values(tables.tables).map((table) => [
      table.stream,
      Object.freeze(table.columns.map((c): StreamColumn => ({ name: c.name, type: c.type.toLowerCase() as ColumnType }))),
    ]),
  ),
);

/** The Sentinel solution's DatabricksAudit_CL columns, plus EventId and IdentityMetadata. */
export const DATABRICKS_AUDIT_STREAM_COLUMNS: readonly StreamColumn[] = STREAMS_FROM_TABLES[DEFAULT_STREAM_NAME]!;

export interface IngestionStats {
  /** Every POST to the ingestion route. */
  calls: number;
  /** Calls answered 204. */
  acceptedCalls: number;
  /** Uncompressed body size of every call whose body was read (past auth, routing and faults). */
  bytes: number[];
  /** Records stored. */
  records: number;
  /** Records answered 204 but not stored (IngestionFaults.drop). */
  dropped: number;
  /** Calls to the Logs Query API route. */
  queries: number;
  rejected: { status: number; reason: string }[];
}

export interface LogsIngestion {
  /** `https://127.0.0.1:<port>`: the data collection endpoint (LOGS_INGESTION_ENDPOINT). */
  endpoint: string;
  /** The DCR immutable id, `dcr-<32 hex>` (LOGS_INGESTION_RULE_ID). */
  ruleId: string;
  /** The first declared stream (LOGS_INGESTION_STREAM). */
  streamName: string;
  /** `https://127.0.0.1:<port>/received`. */
  receivedUrl: string;
  /** `https://127.0.0.1:<port>/v1`: the Logs Query API's base URL (LOG_ANALYTICS_QUERY_ENDPOINT). */
  queryEndpoint: string;
  /** The workspace's ID, a GUID (LOG_ANALYTICS_WORKSPACE_ID). */
  workspaceId: string;
  /** Accepted records of one stream, or of every stream in arrival order. */
  received(stream?: string): Record<string, unknown>[];
  setFaults(faults: IngestionFaults): void;
  stats(): IngestionStats;
  /** Forgets received records, stats and faults. */
  reset(): void;
  close(): Promise<void>;
}

export interface LogsIngestionOptions {
  tls: { cert: string; key: string };
  ruleId?: string;
  streams?: Record<string, readonly StreamColumn[]>;
  audience?: string;
  /** The Logs Query API's workspace ID (default: a random GUID). */
  workspaceId?: string;
  /** Faults in force from the start (as setFaults). */
  faults?: IngestionFaults;
}

/** Service limits (Azure Monitor Logs Ingestion API). */
export const MAX_BODY_BYTES = 1_048_576;
export const MAX_FIELD_BYTES = 65_536;
const API_VERSIONS = new Set(["2023-01-01", "2021-11-01-preview"]);
/** Compressed bodies above this are refused without reading them whole. */
const MAX_WIRE_BYTES = 32 * 1_048_576;
/** Gzip bodies are inflated at most this far. */
const MAX_INFLATED_BYTES = 64 * 1_048_576;

const gunzip = promisify(gunzipCallback);

class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

export async function startLogsIngestion(options: LogsIngestionOptions): Promise<LogsIngestion> {
  const ruleId = options.ruleId ?? `dcr-${randomBytes(16).toString("hex")}`;
  const audience = options.audience ?? AUDIENCE.monitor;
  const workspaceId = (options.workspaceId ?? randomUUID()).toLowerCase();
  const streamDefs = options.streams ?? { [DEFAULT_STREAM_NAME]: DATABRICKS_AUDIT_STREAM_COLUMNS };
  const streams = new Map<string, Map<string, ColumnType>>();
  for (const [name, columns] of Object.entries(streamDefs)) {
    streams.set(name, new Map(columns.map((c) => [c.name, c.type])));
  }
  const streamName = streams.keys().next().value;
  if (streamName === undefined) throw new Error("startLogsIngestion: at least one stream is needed");

  // Accepted records are kept as the JSON text of each call (as sent, unless a value was
  // truncated), and turned into objects only when read: a million records as objects made the
  // stand-in's garbage collector, not the exporter, the thing a benchmark measured.
  let received: { stream: string; json: string }[] = [];
  let stats = emptyStats();
  let faults: IngestionFaults = {};
  let faultCalls = 0;
  let throttleLeft = 0;
  let serverErrorLeft = 0;
  let dropCounter = 0;

  function setFaults(next: IngestionFaults): void {
    faults = validateFaults(next);
    faultCalls = 0;
    throttleLeft = faults.throttle?.calls ?? 0;
    serverErrorLeft = faults.serverError?.calls ?? 0;
    dropCounter = 0;
  }

  /** The records a DCR transform that filters rows would keep (IngestionFaults.drop). */
  function keptAfterDrop(records: Record<string, unknown>[]): Record<string, unknown>[] {
    const drop = faults.drop;
    if (!drop) return records;
    return records.filter((record) => {
      dropCounter += 1;
      const dropped = (drop.everyNth !== undefined && dropCounter % drop.everyNth === 0) || (drop.eventIds?.includes(String(record.EventId)) ?? false);
      if (dropped) stats.dropped += 1;
      return !dropped;
    });
  }

  /** Ingestion calls in flight: their refusals go into stats().rejected. */
  const ingestCalls = new WeakSet<IncomingMessage>();

  async function ingest(req: IncomingMessage, url: URL, match: RegExpExecArray): Promise<void> {
    stats.calls += 1;
    ingestCalls.add(req);
    // Read the whole body first: answering before the client finished sending can make it
    // see a reset instead of our status.
    const wire = await readBody(req, MAX_WIRE_BYTES);

    const auth = checkBearerJwt(req.headers.authorization, audience);
    if (!auth.ok) throw new HttpError(401, "InvalidToken", `The provided access token is not valid: ${auth.reason}.`);
    const [, rawRule = "", rawStream = ""] = match;
    const rule = decodeURIComponent(rawRule);
    const stream = decodeURIComponent(rawStream);
    if (faults.forbidden) {
      throw new HttpError(
        403,
        "OperationFailed",
        `The authentication token provided does not have access to ingest data for the data collection rule with immutable Id '${rule}'. ` +
          "Required role: Monitoring Metrics Publisher.",
      );
    }
    if (rule !== ruleId) {
      throw new HttpError(404, "NotFound", `Data collection rule with immutable Id '${rule}' not found.`);
    }
    const columns = streams.get(stream);
    if (!columns) {
      throw new HttpError(404, "InvalidStream", `Stream '${stream}' is not declared in data collection rule '${rule}'.`);
    }
    const apiVersion = url.searchParams.get("api-version");
    if (!apiVersion || !API_VERSIONS.has(apiVersion)) {
      throw new HttpError(400, "InvalidApiVersion", `The api-version '${apiVersion ?? ""}' is not supported; use 2023-01-01.`);
    }

    faultCalls += 1;
    if (faults.failCallNumbers?.includes(faultCalls)) {
      throw new HttpError(503, "ServiceUnavailable", `Simulated failure of call ${faultCalls}.`);
    }
    if (throttleLeft > 0) {
      throttleLeft -= 1;
      const retryAfter = faults.throttle?.retryAfterSeconds ?? 1;
      throw new HttpError(429, "TooManyRequests", "Request rate limit for the data collection rule exceeded; retry later.", {
        "Retry-After": String(retryAfter),
      });
    }
    if (serverErrorLeft > 0) {
      serverErrorLeft -= 1;
      const status = faults.serverError?.status ?? 503;
      throw new HttpError(status, status === 503 ? "ServiceUnavailable" : "InternalServerError", `Simulated server error (HTTP ${status}).`);
    }

    const body = await decode(req, wire);
    stats.bytes.push(body.length);
    if (body.length > MAX_BODY_BYTES) {
      throw new HttpError(
        413,
        "ContentLengthLimitExceeded",
        `Maximum allowed content length: ${MAX_BODY_BYTES} bytes (1 MB). Provided content length: ${body.length} bytes.`,
      );
    }
    const text = body.toString("utf8");
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (error) {
      throw new HttpError(400, "InvalidPayload", `The request body is not valid JSON: ${(error as Error).message}`);
    }
    if (!Array.isArray(parsed)) {
      throw new HttpError(400, "InvalidPayload", "The request body must be a JSON array of records.");
    }
    const refused = faults.rejectEventIds;
    const eventIdOf = (record: unknown): string => String((record as { EventId?: unknown } | null)?.EventId);
    const bad: unknown = refused ? (parsed as unknown[]).find((record) => refused.includes(eventIdOf(record))) : undefined;
    if (bad !== undefined) throw new HttpError(400, "InvalidRecord", `Record with EventId '${eventIdOf(bad)}' cannot be ingested (simulated).`);
    let edited = false;
    const records = parsed.map((record: unknown, index) => {
      const stored = checkRecord(record, index, columns, stream);
      edited ||= stored !== record;
      return stored;
    });
    const kept = keptAfterDrop(records);
    if (kept.length > 0) received.push({ stream, json: edited || kept.length < records.length ? JSON.stringify(kept) : text });
    stats.records += kept.length;
    stats.acceptedCalls += 1;
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? "/", "https://127.0.0.1");
    const ingestRoute = /^\/dataCollectionRules\/([^/]+)\/streams\/([^/]+)\/?$/.exec(url.pathname);
    if (ingestRoute) {
      if (req.method !== "POST") throw new HttpError(405, "MethodNotAllowed", `Use POST, not ${req.method ?? ""}.`);
      await ingest(req, url, ingestRoute);
      res.writeHead(204).end();
      return;
    }
    const queryRoute = /^\/v1\/workspaces\/([^/]+)\/query\/?$/.exec(url.pathname);
    if (queryRoute) {
      await answerQueryRoute(req, res, decodeURIComponent(queryRoute[1] ?? ""));
      return;
    }
    if (url.pathname === "/received" && req.method === "GET") {
      const stream = url.searchParams.get("stream") ?? undefined;
      res.writeHead(200, { "Content-Type": "application/x-ndjson; charset=utf-8" });
      for (const record of api.received(stream)) res.write(`${JSON.stringify(record)}\n`);
      res.end();
      return;
    }
    if (url.pathname === "/admin/faults" && req.method === "POST") {
      const text = (await readBody(req, 1_048_576)).toString("utf8");
      let body: unknown;
      try {
        body = text.trim() ? JSON.parse(text) : {};
      } catch (error) {
        throw new HttpError(400, "InvalidPayload", `Faults must be JSON: ${(error as Error).message}`);
      }
      try {
        setFaults(body as IngestionFaults);
      } catch (error) {
        throw new HttpError(400, "InvalidPayload", (error as Error).message);
      }
      res.writeHead(204).end();
      return;
    }
    if (url.pathname === "/admin/reset" && req.method === "POST") {
      await readBody(req, 1_048_576);
      api.reset();
      res.writeHead(204).end();
      return;
    }
    if (url.pathname === "/admin/stats" && req.method === "GET") {
      sendJson(res, 200, api.stats());
      return;
    }
    throw new HttpError(404, "NotFound", `No route for ${req.method ?? ""} ${url.pathname}.`);
  }

  async function answerQueryRoute(req: IncomingMessage, res: ServerResponse, workspace: string): Promise<void> {
    stats.queries += 1;
    const text = (await readBody(req, 1_048_576)).toString("utf8");
    try {
      if (req.method !== "POST") throw new QueryApiError(405, "MethodNotAllowed", `Use POST, not ${req.method ?? ""}.`);
      const auth = checkBearerJwt(req.headers.authorization, AUDIENCE.logAnalytics);
      if (!auth.ok) throw new QueryApiError(401, "InvalidTokenError", `The provided authentication is not valid for this resource: ${auth.reason}.`);
      if (faults.forbidden) {
        throw new QueryApiError(403, "InsufficientAccessError", "The provided credentials have insufficient access to perform the requested operation.");
      }
      if (workspace.toLowerCase() !== workspaceId) throw new QueryApiError(404, "WorkspaceNotFoundError", `The workspace could not be found: ${workspace}.`);
      let body: unknown;
      try {
        body = JSON.parse(text);
      } catch {
        throw new QueryApiError(400, "BadArgumentError", "The request body is not valid JSON.");
      }
      const auditTable = Object.entries(tables.tables).find(([, table]) => table.stream === DEFAULT_STREAM_NAME)?.[0] ?? "";
      sendJson(
        res,
        200,
        answerQuery(body, auditTable, () => api.received(DEFAULT_STREAM_NAME)),
      );
    } catch (error) {
      if (!(error instanceof QueryApiError)) throw error;
      sendJson(res, error.status, error.body());
    }
  }

  const server: Server = createServer({ cert: options.tls.cert, key: options.tls.key }, (req, res) => {
    handle(req, res).catch((error: unknown) => {
      const httpError = error instanceof HttpError ? error : new HttpError(500, "InternalServerError", `Stand-in error: ${(error as Error).message}`);
      if (ingestCalls.has(req)) stats.rejected.push({ status: httpError.status, reason: `${httpError.code}: ${httpError.message}` });
      if (res.headersSent) {
        res.destroy();
        return;
      }
      sendJson(res, httpError.status, { error: { code: httpError.code, message: httpError.message } }, httpError.headers);
      // A request we refused before reading its body: close rather than reuse the connection.
      if (!req.complete) res.once("finish", () => req.socket.destroy());
    });
  });

  const port = await listenOnLoopback(server);
  const endpoint = `https://127.0.0.1:${port}`;

  const api: LogsIngestion = {
    endpoint,
    ruleId,
    streamName,
    receivedUrl: `${endpoint}/received`,
    queryEndpoint: `${endpoint}/v1`,
    workspaceId,
    received(stream?: string) {
      const picked = stream === undefined ? received : received.filter((r) => r.stream === stream);
      return picked.flatMap((r) => JSON.parse(r.json) as Record<string, unknown>[]);
    },
    setFaults,
    stats: () => ({ ...stats, bytes: [...stats.bytes], rejected: stats.rejected.map((r) => ({ ...r })) }),
    reset() {
      received = [];
      stats = emptyStats();
      setFaults({});
    },
    close: () => closeServer(server),
  };
  if (options.faults) setFaults(options.faults);
  return api;
}

function emptyStats(): IngestionStats {
  return { calls: 0, acceptedCalls: 0, bytes: [], records: 0, dropped: 0, queries: 0, rejected: [] };
}

function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  return new Promise<Buffer>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        reject(new HttpError(413, "ContentLengthLimitExceeded", `The request body exceeds ${limit} bytes.`));
        req.pause();
        return;
      }
      chunks.push(chunk);
    });
    req.on("end", () => resolve(Buffer.concat(chunks)));
    req.on("error", reject);
  });
}

async function decode(req: IncomingMessage, wire: Buffer): Promise<Buffer> {
  const encoding = String(req.headers["content-encoding"] ?? "identity")
    .trim()
    .toLowerCase();
  if (encoding === "identity" || encoding === "") return wire;
  if (encoding !== "gzip") {
    throw new HttpError(400, "InvalidContentEncoding", `Content-Encoding '${encoding}' is not supported; use gzip or none.`);
  }
  try {
    // Inflate far enough to report the real size of an oversized body, but never a gzip bomb.
    return await gunzip(wire, { maxOutputLength: MAX_INFLATED_BYTES });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ERR_BUFFER_TOO_LARGE") {
      throw new HttpError(
        413,
        "ContentLengthLimitExceeded",
        `Maximum allowed content length: ${MAX_BODY_BYTES} bytes (1 MB). The uncompressed body is larger than ${MAX_INFLATED_BYTES} bytes.`,
      );
    }
    throw new HttpError(400, "InvalidContentEncoding", `Content-Encoding is gzip but the body is not valid gzip: ${(error as Error).message}`);
  }
}

/**
 * Checks one record against the stream's columns and returns it as stored: the record itself,
 * or a copy with long values truncated.
 */
function checkRecord(record: unknown, index: number, columns: Map<string, ColumnType>, stream: string): Record<string, unknown> {
  if (record === null || typeof record !== "object" || Array.isArray(record)) {
    throw new HttpError(400, "InvalidPayload", `Record ${index} is not a JSON object.`);
  }
  const source = record as Record<string, unknown>;
  let stored: Record<string, unknown> | undefined;
  for (const column in source) {
    const value = source[column];
    const type = columns.get(column);
    if (type === undefined) {
      throw new HttpError(400, "InvalidPayload", `Record ${index}: column '${column}' is not declared in stream '${stream}'.`);
    }
    if (value === null) continue;
    const problem = typeProblem(type, value);
    if (problem) {
      throw new HttpError(400, "InvalidPayload", `Record ${index}: column '${column}' (${type}) ${problem}.`);
    }
    let kept = value;
    if (type === "dynamic") {
      if (jsonBytesAtMost(value) > MAX_FIELD_BYTES) {
        const text = JSON.stringify(value);
        if (Buffer.byteLength(text, "utf8") > MAX_FIELD_BYTES) kept = truncateUtf8(text, MAX_FIELD_BYTES);
      }
    } else if (typeof value === "string") {
      kept = truncateUtf8(value, MAX_FIELD_BYTES);
    }
    if (kept !== value) (stored ??= { ...source })[column] = kept;
  }
  return stored ?? source;
}

/** An upper bound of a parsed JSON value's UTF-8 size, without serializing it (a character escapes to at most 6 bytes). */
function jsonBytesAtMost(value: unknown): number {
  if (typeof value === "string") return value.length * 6 + 2;
  if (value === null || typeof value !== "object") return 24;
  let bytes = 2;
  if (Array.isArray(value)) for (const item of value) bytes += jsonBytesAtMost(item) + 1;
  else for (const key in value) bytes += key.length * 6 + 3 + jsonBytesAtMost((value as Record<string, unknown>)[key]) + 1;
  return bytes;
}

const ISO_DATETIME = /^\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:Z|[+-]\d{2}:?\d{2})?)?$/i;

function typeProblem(type: ColumnType, value: unknown): string | undefined {
  // Built only for a refusal: previewing every value would make the stand-in, not the caller, what a benchmark measures.
  const got = (): string => `got ${Array.isArray(value) ? "array" : typeof value} ${preview(value)}`;
  switch (type) {
    case "string":
      return typeof value === "string" ? undefined : `must be a string, ${got()}`;
    case "int":
      return typeof value === "number" && Number.isInteger(value) && value >= -2_147_483_648 && value <= 2_147_483_647
        ? undefined
        : `must be a 32-bit integer, ${got()}`;
    case "long":
      return typeof value === "number" && Number.isSafeInteger(value) ? undefined : `must be an integer, ${got()}`;
    case "real":
      return typeof value === "number" && Number.isFinite(value) ? undefined : `must be a number, ${got()}`;
    case "boolean":
      return typeof value === "boolean" ? undefined : `must be a boolean, ${got()}`;
    case "datetime":
      return typeof value === "string" && ISO_DATETIME.test(value) && !Number.isNaN(Date.parse(value.replace(" ", "T")))
        ? undefined
        : `must be an ISO 8601 date-time string, ${got()}`;
    case "dynamic":
      return undefined;
  }
}

function preview(value: unknown): string {
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}

/** Cuts a string to at most `maxBytes` of UTF-8 without splitting a character. */
export function truncateUtf8(text: string, maxBytes: number): string {
  // A UTF-16 code unit is at most 3 bytes of UTF-8: short strings need no counting.
  if (text.length * 3 <= maxBytes || Buffer.byteLength(text, "utf8") <= maxBytes) return text;
  const bytes = Buffer.from(text, "utf8");
  let end = maxBytes;
  // Step back over continuation bytes (10xxxxxx) to the start of the character that straddles the cut.
  while (end > 0 && ((bytes[end] ?? 0) & 0xc0) === 0x80) end -= 1;
  return bytes.subarray(0, end).toString("utf8");
}

function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { ...headers, "Content-Type": "application/json; charset=utf-8", "Content-Length": Buffer.byteLength(text) });
  res.end(text);
}
