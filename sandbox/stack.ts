import { randomBytes } from "node:crypto";
import { createReadStream } from "node:fs";
import { createInterface } from "node:readline";
import { BlobServiceClient } from "@azure/storage-blob";
import { devstoreConnectionString, startAzurite, type AzuriteBlob, type AzuriteService } from "./azurite";
import { startIdentityEndpoint, type IdentityEndpoint } from "./identityEndpoint";
import { ALERTS_STREAM_NAME, DEFAULT_STREAM_NAME, STREAMS_FROM_TABLES, startLogsIngestion, type IngestionFaults, type LogsIngestion } from "./logsIngestion";
import type { SqlWarehouse } from "./sqlWarehouse/server";
import { ensureLocalTls } from "./tls";
import { DEFAULT_BACKFILL_QUEUE } from "../shared/storageQueue";
import { regionName, startWarehouses, type WarehouseGroup } from "./warehouses";

/**
 * The whole sandbox on loopback with free ports: the SQL warehouse stand-in, Azurite (blob and
 * queue), the Logs Ingestion stand-in and the managed identity endpoint, plus the contract object
 * (DESIGN.md, "The sandbox (local stack) contract") that `dbx-audit sandbox` prints as one
 * JSON line and that tests, the demo and the benchmark all use.
 *
 * With several events files there is one warehouse stand-in per file, a region each:
 * `databricksSources` lists them in flag order, and `databricks` is the first one (without its
 * name), so single-warehouse users read the same key as before.
 */
export interface SandboxContract {
  databricks: WarehouseEndpoint;
  /** Every warehouse in flag order (one entry when there is one warehouse). */
  databricksSources: DatabricksSource[];
  storage: {
    /**
     * The devstoreaccount1 connection string (account key, https) with both `BlobEndpoint` and
     * `QueueEndpoint`: each storage SDK reads its own, so blob users see what they always did.
     */
    connectionString: string;
    /** The archive container (created at start-up, as in a provisioned deployment). */
    container: string;
    /** `https://127.0.0.1:<port>/devstoreaccount1`: the queue service, for `new QueueServiceClient(queueUrl, credential)` with the managed identity. */
    queueUrl: string;
  };
  logsIngestion: { endpoint: string; ruleId: string; streamName: string; receivedUrl: string };
  /** The Logs Query API the same stand-in answers, over what it accepted (LOG_ANALYTICS_QUERY_ENDPOINT, LOG_ANALYTICS_WORKSPACE_ID). */
  logAnalytics: { queryEndpoint: string; workspaceId: string };
  /**
   * Every app setting a timer cycle needs, pointing at the sandbox. DATABRICKS_SERVER_HOSTNAME
   * and DATABRICKS_HTTP_PATH name the first warehouse; with several, DATABRICKS_SOURCES (a JSON
   * array of `{ name, serverHostname, httpPath }`) names every warehouse. AzureWebJobsStorage
   * (the storage connection string) is how the Functions host and the CLI find the backfill's
   * queue, BACKFILL_QUEUE (`dbx-audit-backfill`) its name.
   */
  env: Record<string, string>;
}

/** One warehouse stand-in as the contract describes it. */
export interface WarehouseEndpoint {
  /** `127.0.0.1:<port>` */
  serverHostname: string;
  httpPath: string;
  /** A PAT-shaped token with SELECT on system.access.audit (the same for every warehouse). */
  token: string;
  /** A token that opens a session but gets INSUFFICIENT_PERMISSIONS on system.access.audit. */
  noGrantToken: string;
  /** The local CA every sandbox HTTPS server is signed with. */
  caCertPath: string;
  /** `https://127.0.0.1:<port>/admin`; POST {adminUrl}/events (JSONL) appends rows to this warehouse only. */
  adminUrl: string;
  /** Large results come as CloudFetch links (as from a real warehouse); POST {adminUrl}/cloudfetch changes it. */
  cloudFetch: boolean;
}

export interface DatabricksSource extends WarehouseEndpoint {
  /** `region1`, `region2`, ... in flag order: a valid setting value, stable across runs. */
  name: string;
}

export type { SqlWarehouse };

export interface SandboxStack {
  contract: SandboxContract;
  /** The first warehouse (`warehouses[0]`). */
  warehouse: SqlWarehouse;
  /** One warehouse per events file, in flag order; one when no file or a single file was given. */
  warehouses: SqlWarehouse[];
  blob: AzuriteBlob;
  /** Azurite's queue service (the backfill's queue; the Functions host's AzureWebJobsStorage). */
  queue: AzuriteService;
  logsIngestion: LogsIngestion;
  identity: IdentityEndpoint;
  /** Stops everything (idempotent); resolves when every server and child process is gone. */
  close(): Promise<void>;
}

export interface SandboxStackOptions {
  /** JSONL of audit rows in the table's column names (event_time, service_name, ...). Same as `eventsFiles: [eventsFile]`. */
  eventsFile?: string;
  /** One warehouse stand-in per file (a region each), loaded with that file's rows, in this order. */
  eventsFiles?: string[];
  /** Append this many synthetic rows (to the first warehouse only). */
  synthetic?: number;
  /** At least this many warehouses (regions), the ones without a file empty; for tests. */
  regions?: number;
  /** The warehouse answers large results with CloudFetch links, as a real one does (default true). */
  cloudFetch?: boolean;
  /** The Logs Ingestion stand-in answers 204 but keeps none of these records (as a DCR transform that filters rows): to prove reconciliation's report. */
  logsDrop?: IngestionFaults["drop"];
}

export const SANDBOX_CONTAINER = "databricks-audit";
const EVENTS_BATCH = 5_000;

export async function startSandboxStack(options: SandboxStackOptions = {}): Promise<SandboxStack> {
  if (options.synthetic !== undefined && (!Number.isInteger(options.synthetic) || options.synthetic < 0)) {
    throw new RangeError(`synthetic must be a whole number of rows (0 or more), got ${options.synthetic}`);
  }
  const eventsFiles = [...(options.eventsFile ? [options.eventsFile] : []), ...(options.eventsFiles ?? [])];
  const tls = await ensureLocalTls();
  const token = patLike();
  const noGrantToken = patLike();

  // Start everything at once; if one part fails, stop the parts that did start.
  const started = await Promise.allSettled([
    startIdentityEndpoint(),
    // Both streams of infra/tables.json, the audit stream first (it is the contract's streamName).
    startLogsIngestion({
      tls: { cert: tls.cert, key: tls.key },
      streams: { [DEFAULT_STREAM_NAME]: STREAMS_FROM_TABLES[DEFAULT_STREAM_NAME]!, [ALERTS_STREAM_NAME]: STREAMS_FROM_TABLES[ALERTS_STREAM_NAME]! },
      ...(options.logsDrop ? { faults: { drop: options.logsDrop } } : {}),
    }),
    startAzurite({ tls: { certPath: tls.caCertPath, keyPath: tls.keyPath } }),
    startAzurite({ service: "queue", tls: { certPath: tls.caCertPath, keyPath: tls.keyPath } }),
    startWarehouses(Math.max(1, eventsFiles.length, options.regions ?? 1), {
      tls: { cert: tls.cert, key: tls.key },
      token,
      noGrantToken,
      cloudFetch: options.cloudFetch ?? true,
    }),
  ] as const);
  const closers: (() => Promise<void>)[] = [];
  for (const result of started) if (result.status === "fulfilled") closers.push(() => result.value.close());
  const closeAll = once(async () => {
    const results = await Promise.allSettled(closers.map((close) => close()));
    const errors = results.flatMap((r) => (r.status === "rejected" ? [r.reason as unknown] : []));
    if (errors.length > 0) throw new AggregateError(errors, "sandbox: some parts did not stop cleanly");
  });
  const failed = started.find((r): r is PromiseRejectedResult => r.status === "rejected");
  if (failed) {
    await closeAll().catch(() => undefined);
    throw failed.reason;
  }
  const [identity, logsIngestion, blob, queue, { warehouses }] = started.map((r) => (r as PromiseFulfilledResult<unknown>).value) as [
    IdentityEndpoint,
    LogsIngestion,
    AzuriteBlob,
    AzuriteService,
    WarehouseGroup,
  ];
  const connectionString = devstoreConnectionString({ blob: blob.accountUrl, queue: queue.accountUrl });
  const warehouse = warehouses[0]!;

  try {
    // The archive container exists in a provisioned deployment (private: no public access).
    await BlobServiceClient.fromConnectionString(blob.connectionString).getContainerClient(SANDBOX_CONTAINER).createIfNotExists();

    for (const [index, file] of eventsFiles.entries()) await loadEventsFile(warehouses[index]!, file);
    if (options.synthetic) await warehouse.appendSynthetic(options.synthetic);

    const exportStart = (await earliestEventHour(warehouses)) ?? new Date(Date.now() - 24 * 3600_000).toISOString();
    const databricksSources = warehouses.map((w, index): DatabricksSource => ({
      name: regionName(index),
      serverHostname: w.serverHostname,
      httpPath: w.httpPath,
      token,
      noGrantToken,
      caCertPath: tls.caCertPath,
      adminUrl: w.adminUrl,
      cloudFetch: w.cloudFetch().enabled,
    }));
    const first = databricksSources[0]!;

    const contract: SandboxContract = {
      databricks: {
        serverHostname: first.serverHostname,
        httpPath: first.httpPath,
        token,
        noGrantToken,
        caCertPath: tls.caCertPath,
        adminUrl: first.adminUrl,
        cloudFetch: first.cloudFetch,
      },
      databricksSources,
      storage: { connectionString, container: SANDBOX_CONTAINER, queueUrl: queue.accountUrl },
      logsIngestion: {
        endpoint: logsIngestion.endpoint,
        ruleId: logsIngestion.ruleId,
        streamName: logsIngestion.streamName,
        receivedUrl: logsIngestion.receivedUrl,
      },
      logAnalytics: { queryEndpoint: logsIngestion.queryEndpoint, workspaceId: logsIngestion.workspaceId },
      env: {
        DATABRICKS_SERVER_HOSTNAME: warehouse.serverHostname,
        DATABRICKS_HTTP_PATH: warehouse.httpPath,
        ...(databricksSources.length > 1
          ? { DATABRICKS_SOURCES: JSON.stringify(databricksSources.map(({ name, serverHostname, httpPath }) => ({ name, serverHostname, httpPath }))) }
          : {}),
        DATABRICKS_WORKSPACE_IDS: "",
        IDENTITY_ENDPOINT: identity.endpoint,
        IDENTITY_HEADER: identity.header,
        EXPORT_STORAGE_CONNECTION_STRING: connectionString,
        EXPORT_CONTAINER: SANDBOX_CONTAINER,
        AzureWebJobsStorage: connectionString,
        BACKFILL_QUEUE: DEFAULT_BACKFILL_QUEUE,
        LOGS_INGESTION_ENDPOINT: logsIngestion.endpoint,
        LOGS_INGESTION_RULE_ID: logsIngestion.ruleId,
        LOGS_INGESTION_STREAM: logsIngestion.streamName,
        LOGS_INGESTION_ALERTS_STREAM: ALERTS_STREAM_NAME,
        LOG_ANALYTICS_WORKSPACE_ID: logsIngestion.workspaceId,
        LOG_ANALYTICS_QUERY_ENDPOINT: logsIngestion.queryEndpoint,
        EXPORT_START: exportStart,
        NODE_EXTRA_CA_CERTS: tls.caCertPath,
        DATABRICKS_TELEMETRY_DISABLED: "true",
      },
    };
    return { contract, warehouse, warehouses, blob, queue, logsIngestion, identity, close: closeAll };
  } catch (error) {
    await closeAll().catch(() => undefined);
    throw error;
  }
}

/**
 * Closes the stack on SIGINT or SIGTERM and exits 0 (1 if something did not stop cleanly).
 * A second signal while closing exits at once.
 */
export function stopOnSignals(stack: Pick<SandboxStack, "close">): void {
  let stopping = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (stopping) {
      process.exit(130);
    }
    stopping = true;
    stack.close().then(
      () => process.exit(0),
      (error: unknown) => {
        process.stderr.write(`sandbox: error while stopping after ${signal}: ${(error as Error)?.message ?? String(error)}\n`);
        process.exit(1);
      },
    );
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
}

/** Streams a JSONL file of audit rows into the warehouse, in batches; a bad line names the file and line. */
export async function loadEventsFile(warehouse: Pick<SqlWarehouse, "appendRows">, file: string): Promise<number> {
  const lines = createInterface({ input: createReadStream(file, { encoding: "utf8" }), crlfDelay: Infinity });
  let lineNumber = 0;
  let total = 0;
  let batch: Record<string, unknown>[] = [];
  try {
    for await (const line of lines) {
      lineNumber += 1;
      const text = lineNumber === 1 ? line.replace(/^\uFEFF/, "") : line;
      if (!text.trim()) continue;
      let row: unknown;
      try {
        row = JSON.parse(text);
      } catch (error) {
        throw new Error(`${file}:${lineNumber}: not valid JSON (${(error as Error).message})`, { cause: error });
      }
      if (row === null || typeof row !== "object" || Array.isArray(row)) {
        throw new Error(
          `${file}:${lineNumber}: expected one JSON object per line (an audit row), got ${Array.isArray(row) ? "an array" : JSON.stringify(row)}`,
        );
      }
      batch.push(row as Record<string, unknown>);
      if (batch.length >= EVENTS_BATCH) {
        await appendBatch(warehouse, batch, file, lineNumber);
        total += batch.length;
        batch = [];
      }
    }
    if (batch.length > 0) {
      await appendBatch(warehouse, batch, file, lineNumber);
      total += batch.length;
    }
  } finally {
    lines.close();
  }
  return total;
}

async function appendBatch(warehouse: Pick<SqlWarehouse, "appendRows">, rows: Record<string, unknown>[], file: string, lastLine: number): Promise<void> {
  try {
    await warehouse.appendRows(rows);
  } catch (error) {
    const first = lastLine - rows.length + 1;
    throw new Error(`${file}: rows ending at line ${lastLine} (from about line ${first}) were refused: ${(error as Error).message}`, { cause: error });
  }
}

/** The hour of the earliest event across the warehouses; undefined when they are all empty. */
async function earliestEventHour(warehouses: Pick<SqlWarehouse, "eventTimeRange">[]): Promise<string | undefined> {
  const ranges = await Promise.all(warehouses.map((w) => w.eventTimeRange()));
  // floorToHour always gives the same ISO-8601 UTC shape, so the smallest string is the earliest.
  return ranges.flatMap((range) => (range ? [floorToHour(range.min)] : [])).sort()[0];
}

/** `2025-01-02 03:04:05.123456` or `2025-01-02T03:04:05Z` (UTC) -> `2025-01-02T03:00:00.000Z`. */
export function floorToHour(value: string | Date): string {
  if (value instanceof Date) return new Date(Math.floor(value.getTime() / 3600_000) * 3600_000).toISOString();
  const timestamp = String(value);
  const match = /^(\d{4}-\d{2}-\d{2})[T ](\d{2})/.exec(timestamp.trim());
  const hasOffset = /(?:Z|[+-]\d{2}:?\d{2})$/i.test(timestamp.trim());
  if (match && !hasOffset) return `${match[1]}T${match[2]}:00:00.000Z`;
  const ms = Date.parse(timestamp);
  if (Number.isNaN(ms)) throw new Error(`cannot read the earliest event_time '${timestamp}'`);
  return new Date(Math.floor(ms / 3600_000) * 3600_000).toISOString();
}

function patLike(): string {
  return `dapi${randomBytes(16).toString("hex")}`;
}

function once(fn: () => Promise<void>): () => Promise<void> {
  let running: Promise<void> | undefined;
  return () => (running ??= fn());
}
