import type { AppConfig, Settings } from "../config";
import { BlobExportStore } from "../blobStore";
import { createAzureCredential, createContainerClient } from "../composition";
import { Warehouse, isExpiredResultLinkError, type WarehouseOptions } from "../databricks";
import { ThreadedWarehouse } from "../databricksThread";
import { LogsIngestionSink, type IngestionClientOptions } from "../logsIngestion";
import { runExport, type ExportOptions, type ExportProgress, type ExportSummary } from "./engine";
import type { ExportLog } from "./ports";

export interface CycleOptions {
  now?: () => number;
  onProgress?: (progress: ExportProgress) => void;
  warehouse?: WarehouseOptions;
  ingestion?: IngestionClientOptions;
  tuning?: Pick<ExportOptions, "batchEvents" | "lockTtlMs" | "uploadConcurrency" | "archiveConcurrency" | "slices">;
}

/** One export cycle from validated settings: what the timer runs, and `dbx-audit run`. */
export async function runExportCycle(config: AppConfig, env: Settings, log: ExportLog, options: CycleOptions = {}): Promise<ExportSummary> {
  if (!config.storage) throw new Error("The export needs EXPORT_STORAGE_ACCOUNT_URL or EXPORT_STORAGE_CONNECTION_STRING.");
  const credential = createAzureCredential(config, env);
  const store = new BlobExportStore(createContainerClient(config.storage, credential));
  await store.ensureContainer();
  const ingestion = config.logsIngestion ? new LogsIngestionSink(config.logsIngestion, credential, options.ingestion) : undefined;
  // The driver's reads on a thread of their own (see databricksThread.ts); in the same thread
  // only when running from TypeScript sources that were never built.
  const warehouseOptions: WarehouseOptions = { queryTimeoutMs: config.queryTimeoutMs, ...options.warehouse };
  const warehouse = ThreadedWarehouse.available()
    ? await ThreadedWarehouse.connect(config.databricks, credential, warehouseOptions)
    : await Warehouse.connect(config.databricks, credential, warehouseOptions);
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
        ...options.tuning,
      },
      {
        source: warehouse,
        store,
        ...(ingestion ? { ingestion } : {}),
        now: options.now ?? Date.now,
        log,
        ...(options.onProgress ? { onProgress: options.onProgress } : {}),
      },
    );
  } finally {
    await warehouse.close();
  }
}

/** The one line a run logs: window, rows read, bytes archived, rows ingested, Log Analytics' lag, new state. Never row payloads. */
export function formatSummary(summary: ExportSummary): string {
  return [
    `export ${summary.caughtUp ? "caught up" : "stopped at its time budget (the next run continues)"}`,
    `window ${summary.windowStart} .. ${summary.windowEnd}`,
    `read ${summary.eventsRead}`,
    `delivered ${summary.eventsDelivered} (late ${summary.lateEventsDelivered})`,
    `archived ${summary.blobsWritten} blobs / ${summary.bytesArchived} bytes`,
    formatLogAnalytics(summary),
    `cursor ${summary.cursor}`,
    ...(summary.resumedBatch ? ["resumed a pending batch"] : []),
  ].join("; ");
}

function formatLogAnalytics(summary: ExportSummary): string {
  const la = summary.logAnalytics;
  if (la.status === "off") return "Log Analytics off";
  const sent = `ingested ${summary.recordsIngested} records in ${summary.ingestionCalls} calls`;
  const dead = la.deadLettered > 0 ? `, ${la.deadLettered} dead-lettered (${la.deadLetterBlobs.length} blob(s) under dead-letter/)` : "";
  if (la.status === "current") return `${sent}${dead}, Log Analytics current`;
  const why = la.reason ? `: ${la.reason} Fix: ${la.remediation ?? ""}` : " (it catches up from the archive in the next runs)";
  return `${sent}${dead}, Log Analytics ${la.batchesBehind} batch(es) / ${la.eventsBehind} events behind the archive${la.laggingSince ? ` since ${la.laggingSince}` : ""}${why}`;
}
