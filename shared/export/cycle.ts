import type { TokenCredential } from "@azure/identity";
import { sourceConcurrencyFor, type AppConfig, type AuditFilter, type Settings, type SourceConfig } from "../config";
import { BlobExportStore } from "../blobStore";
import { createAzureCredential, createContainerClients } from "../composition";
import { Warehouse, cloudFetchFor, isExpiredResultLinkError, type WarehouseOptions } from "../databricks";
import { ThreadedWarehouse } from "../databricksThread";
import { LogsIngestionSink, type IngestionClientOptions } from "../logsIngestion";
import { runExport, type ExportOptions, type ExportProgress, type ExportSummary, type SourceSummary } from "./engine";
import type { PreparedEvent } from "./batching";
import type { AuditSource, ExportLog, ScanRequest } from "./ports";

export interface CycleOptions {
  now?: () => number;
  onProgress?: (progress: ExportProgress) => void;
  warehouse?: WarehouseOptions;
  ingestion?: IngestionClientOptions;
  tuning?: Pick<ExportOptions, "batchEvents" | "lockTtlMs" | "uploadConcurrency" | "archiveConcurrency" | "slices">;
}

/** One export cycle from validated settings: what the timer runs, and `dbx-audit run`. Every configured source, each failing alone. */
export async function runExportCycle(config: AppConfig, env: Settings, log: ExportLog, options: CycleOptions = {}): Promise<ExportSummary> {
  if (!config.storage) throw new Error("The export needs EXPORT_STORAGE_ACCOUNT_URL or EXPORT_STORAGE_CONNECTION_STRING.");
  const credential = createAzureCredential(config, env);
  const containers = createContainerClients(config.storage, credential);
  const store = new BlobExportStore(containers.archive, containers.state);
  await store.ensureContainer();
  const ingestion = config.logsIngestion ? new LogsIngestionSink(config.logsIngestion, credential, options.ingestion) : undefined;
  const memoryLimitBytes = process.constrainedMemory?.();
  const warehouseOptions = warehouseOptionsFor(config, options.warehouse);
  const readers = config.sources.map((source) => new LazyWarehouse(source, credential, warehouseOptions));
  try {
    return await runExport(
      {
        filter: config.filter,
        redaction: config.redaction,
        start: config.start,
        settleDelayMs: config.settleDelayMs,
        lateHorizonMs: config.lateHorizonMs,
        timeBudgetMs: config.timeBudgetMs,
        isRecoverable: isExpiredResultLinkError,
        sourceConcurrency: config.sourceConcurrency ?? sourceConcurrencyFor(memoryLimitBytes),
        ...options.tuning,
      },
      {
        sources: config.sources.map((source, index) => ({
          name: source.name,
          reader: readers[index]!,
          filter: source.filter,
          finished: () => readers[index]!.close(),
        })),
        store,
        ...(ingestion ? { ingestion } : {}),
        now: options.now ?? Date.now,
        log,
        ...(options.onProgress ? { onProgress: options.onProgress } : {}),
      },
    );
  } finally {
    await Promise.all(readers.map((reader) => reader.close()));
  }
}

/** How the export reads its warehouses: the instance's memory limit (its cgroup's) decides what DATABRICKS_CLOUD_FETCH=auto means. */
export function warehouseOptionsFor(config: AppConfig, overrides?: WarehouseOptions): WarehouseOptions {
  return { queryTimeoutMs: config.queryTimeoutMs, cloudFetch: cloudFetchFor(config.cloudFetch, process.constrainedMemory?.()), ...overrides };
}

/**
 * A source's warehouse, connected on first use: a region whose warehouse is down fails its
 * own source when the run reaches it, not the whole run before it starts. The driver reads on
 * a thread of its own (see databricksThread.ts); in the same thread only when running from
 * TypeScript sources that were never built.
 */
export class LazyWarehouse implements AuditSource {
  private connecting: Promise<Warehouse | ThreadedWarehouse> | undefined;

  constructor(
    private readonly source: SourceConfig,
    private readonly credential: TokenCredential | undefined,
    private readonly options: WarehouseOptions,
  ) {}

  private connect(): Promise<Warehouse | ThreadedWarehouse> {
    this.connecting ??= ThreadedWarehouse.available()
      ? ThreadedWarehouse.connect(this.source.databricks, this.credential, this.options)
      : Warehouse.connect(this.source.databricks, this.credential, this.options);
    return this.connecting;
  }

  async *scan(request: ScanRequest): AsyncGenerator<PreparedEvent[]> {
    yield* (await this.connect()).scan(request);
  }

  async countByHour(filter: AuditFilter, fromUs: number, toUs: number): Promise<Map<number, number>> {
    return (await this.connect()).countByHour(filter, fromUs, toUs);
  }

  async close(): Promise<void> {
    const connecting = this.connecting;
    this.connecting = undefined;
    if (connecting) await (await connecting.catch(() => undefined))?.close();
  }
}

/** The one line a run logs: window, rows read, bytes archived, rows ingested, Log Analytics' lag, new state; per source when there are several. Never row payloads. */
export function formatSummary(summary: ExportSummary): string {
  if (summary.sources.length <= 1) return formatSource(summary);
  const caughtUp = summary.sources.filter((s) => s.caughtUp).length;
  const head = [
    `export of ${summary.sources.length} sources: ${caughtUp} caught up`,
    `read ${summary.eventsRead}`,
    `delivered ${summary.eventsDelivered} (late ${summary.lateEventsDelivered}; ${summary.duplicatesSkipped} account-level events already delivered by another source skipped)`,
  ].join("; ");
  return [head, ...summary.sources.map((s) => `source ${s.name}: ${s.status === "failed" ? `FAILED: ${s.error}` : formatSource(s)}`)].join(" | ");
}

function formatSource(summary: Omit<SourceSummary, "name">): string {
  return [
    `export ${summary.caughtUp ? "caught up" : summary.status === "failed" ? "failed" : "stopped at its time budget (the next run continues)"}`,
    `window ${summary.windowStart} .. ${summary.windowEnd}`,
    `read ${summary.eventsRead}`,
    `delivered ${summary.eventsDelivered} (late ${summary.lateEventsDelivered})`,
    `archived ${summary.blobsWritten} blobs / ${summary.bytesArchived} bytes`,
    formatLogAnalytics(summary),
    `cursor ${summary.cursor}`,
    ...(summary.resumedBatch ? ["resumed a pending batch"] : []),
  ].join("; ");
}

function formatLogAnalytics(summary: Omit<SourceSummary, "name">): string {
  const la = summary.logAnalytics;
  if (la.status === "off") return "Log Analytics off";
  const sent = `ingested ${summary.recordsIngested} records in ${summary.ingestionCalls} calls`;
  const dead = la.deadLettered > 0 ? `, ${la.deadLettered} dead-lettered (${la.deadLetterBlobs.length} blob(s) under dead-letter/)` : "";
  if (la.status === "current") return `${sent}${dead}, Log Analytics current`;
  const why = la.reason ? `: ${la.reason} Fix: ${la.remediation ?? ""}` : " (it catches up from the archive in the next runs)";
  return `${sent}${dead}, Log Analytics ${la.batchesBehind} batch(es) / ${la.eventsBehind} events behind the archive${la.laggingSince ? ` since ${la.laggingSince}` : ""}${why}`;
}
