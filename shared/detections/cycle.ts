import type { ContainerClient } from "@azure/storage-blob";
import type { TokenCredential } from "@azure/identity";
import type { Settings, SourceConfig } from "../config";
import type { DetectionsConfig } from "./config";
import { createAzureCredential, createContainerClients } from "../composition";
import { Warehouse, type WarehouseOptions } from "../databricks";
import { explainWarehouseError } from "../remediation";
import type { IngestionClientOptions } from "../logsIngestion";
import { AlertsIngestionSink } from "./alertsSink";
import { resolveCatalog, type ResolvedCatalog } from "./overrides";
import { runDetections, type DetectionsLog, type DetectionsRunSummary } from "./runner";
import type { SourceHandle } from "./runSources";
import { readBlobText } from "../blobStore";
import { BlobDetectionsStore } from "./store";

export interface DetectionsCycleOptions {
  now?: () => number;
  warehouse?: WarehouseOptions;
  ingestion?: IngestionClientOptions;
  lockTtlMs?: number;
}

/**
 * One detections cycle from validated settings (what the timer runs): the catalog with the
 * overrides blob applied, one session per source (SQL warehouse, one per region) for every
 * detection, the state and alerts in the export container, alerts to Log Analytics when its
 * alerts stream is set. A source that cannot connect is handed to the run as down: the
 * detections go on over the others.
 */
export async function runDetectionsCycle(
  config: DetectionsConfig,
  env: Settings,
  log: DetectionsLog,
  options: DetectionsCycleOptions = {},
): Promise<{ summary: DetectionsRunSummary; configErrors: string[] }> {
  const storage = config.app.storage;
  if (!storage) throw new Error("The detections need EXPORT_STORAGE_ACCOUNT_URL or EXPORT_STORAGE_CONNECTION_STRING for their state and alerts.");
  const credential = createAzureCredential(config.app, env);
  // State, alerts and the overrides file are rewritten: the state container, never the write-once archive.
  const container = createContainerClients(storage, credential).state;
  await container.createIfNotExists();
  const catalog = await loadCatalogFromBlob(container, config.overrides);
  for (const problem of catalog.errors) log.warn(`detections overrides: ${problem}`);
  const alerts = config.alertsIngestion ? new AlertsIngestionSink(config.alertsIngestion, credential, options.ingestion) : undefined;
  const handles = await connectSources(config.app.sources, credential, { queryTimeoutMs: config.app.queryTimeoutMs, ...options.warehouse });
  try {
    const summary = await runDetections(
      {
        detections: catalog.detections,
        workspaceIds: config.workspaceIds,
        settleDelayMs: config.app.settleDelayMs,
        lateHorizonMs: config.app.lateHorizonMs,
        configErrors: catalog.errors,
        ...(options.lockTtlMs !== undefined ? { lockTtlMs: options.lockTtlMs } : {}),
      },
      { sources: handles, store: new BlobDetectionsStore(container), ...(alerts ? { alerts } : {}), now: options.now ?? Date.now, log },
    );
    return { summary, configErrors: catalog.errors };
  } finally {
    await closeSources(handles);
  }
}

export type ConnectedSource = SourceHandle & { source?: Warehouse };

/** A session on every source at once; a source that cannot connect comes back with the reason, the others are not held up by it. */
export async function connectSources(
  sources: readonly SourceConfig[],
  credential: TokenCredential | undefined,
  options: WarehouseOptions = {},
): Promise<ConnectedSource[]> {
  const settled = await Promise.allSettled(sources.map((s) => Warehouse.connect(s.databricks, credential, options)));
  return settled.map((result, i) => {
    const name = sources[i]!.name;
    return result.status === "fulfilled" ? { name, source: result.value } : { name, connectError: `cannot connect: ${explainWarehouseError(result.reason)}` };
  });
}

export async function closeSources(handles: readonly ConnectedSource[]): Promise<void> {
  await Promise.all(handles.map((h) => (h.source ? h.source.close() : Promise.resolve())));
}

/** The catalog with the overrides blob applied; a missing blob is a problem, the built-ins still run. */
export async function loadCatalogFromBlob(container: ContainerClient, name: string | undefined): Promise<ResolvedCatalog> {
  if (!name) return resolveCatalog();
  const text = await readBlobText(container, name);
  if (!text) {
    const catalog = resolveCatalog();
    return { ...catalog, errors: [`DETECTIONS_CONFIG names '${name}', which is not in the container; every detection runs as built in.`] };
  }
  return resolveCatalog({ name, text: text.body });
}
