import { randomBytes } from "node:crypto";
import type { TokenCredential } from "@azure/identity";
import type { AppConfig, Settings } from "../config";
import { SINGLE_SOURCE_NAME } from "../config";
import { createAzureCredential, createContainerClients } from "../composition";
import { BlobExportStore } from "../blobStore";
import { ConfigError } from "../errors";
import { mapConcurrently } from "../concurrency";
import { StateConflictError } from "../export/ports";
import type { ExportState } from "../export/state";
import { SliceQueue, loadQueueSettings } from "../storageQueue";
import { backfillId, planBackfill, sliceMessage, type BackfillRequest, type SliceRef } from "./plan";
import { BackfillStore, type BackfillManifest } from "./store";
import { backfillStatus, type BackfillStatus } from "./status";

/**
 * Starting and cancelling a backfill: what `dbx-audit backfill start|cancel` and the HTTP
 * function both call. Starting writes the manifest, then one queue message per slice that is
 * not done yet; one backfill runs at a time.
 */

export interface BackfillClients {
  store: BackfillStore;
  live: BlobExportStore;
  queue: SliceQueue;
  /** The identity every slice reads the warehouse and sends to Log Analytics with (one token cache per process). */
  credential: TokenCredential;
}

export function backfillClients(config: AppConfig, env: Settings): BackfillClients {
  if (!config.storage) throw new ConfigError(["A backfill needs EXPORT_STORAGE_ACCOUNT_URL or EXPORT_STORAGE_CONNECTION_STRING (the archive)."]);
  const queueSettings = loadQueueSettings(env);
  const credential = createAzureCredential(config, env);
  const containers = createContainerClients(config.storage, credential);
  return {
    store: new BackfillStore(containers.archive, containers.state),
    live: new BlobExportStore(containers.archive, containers.state),
    queue: new SliceQueue(queueSettings, () => credential),
    credential,
  };
}

export interface StartResult {
  manifest: BackfillManifest;
  enqueued: number;
  /** Days a backfill already finished: not enqueued again. */
  skipped: SliceRef[];
  /** Things the user should know (days done to the archive only while Log Analytics was asked for, ...). */
  notes: string[];
}

export async function startBackfill(config: AppConfig, clients: BackfillClients, request: BackfillRequest, nowMs: number): Promise<StartResult> {
  const live = (await clients.live.readState())?.state;
  const plan = planBackfill(request, {
    sources: config.sources.map((s) => ({ name: s.name, includeAccountLevel: s.filter.includeAccountLevel })),
    liveStartUs: (name) => liveStartOf(live, name, config),
    logAnalyticsConfigured: config.logsIngestion !== undefined,
    nowMs,
  });
  const running = await activeBackfill(clients.store, nowMs);
  if (running) {
    throw new ConfigError([
      `Backfill ${running.id} is still running (${running.slices.running} slice(s) running, ${running.slices.waiting} waiting): one backfill runs at a time. See 'dbx-audit backfill status', or stop it with 'dbx-audit backfill cancel' first.`,
    ]);
  }

  const states = await clients.store.readSliceStates(plan.slices);
  const toRun: { slice: SliceRef; sinks: typeof plan.sinks }[] = [];
  const skipped: SliceRef[] = [];
  const replays: string[] = [];
  const keptSinks: string[] = [];
  for (const [index, slice] of plan.slices.entries()) {
    const info = states[index]?.state.backfillSlice;
    if (info?.doneAt) {
      // Archived earlier without Log Analytics: sent now from the archive (the warehouse is not read again).
      if (plan.sinks === "both" && info.sinks === "archive" && !info.replay?.doneAt) {
        replays.push(slice.day);
        toRun.push({ slice, sinks: "both" });
      } else skipped.push(slice);
      continue;
    }
    // A slice started earlier keeps its sinks (Log Analytics follows its archive from its first batch
    // or not at all); one started with the archive alone is sent from the archive once it is done.
    if (info && info.sinks !== plan.sinks) keptSinks.push(`${slice.source}/${slice.day} (${info.sinks})`);
    toRun.push({ slice, sinks: plan.sinks === "both" || info?.sinks === "both" ? "both" : "archive" });
  }

  const id = backfillId(nowMs, randomBytes(3).toString("hex"));
  const manifest: BackfillManifest = {
    version: 1,
    id,
    createdAt: new Date(nowMs).toISOString(),
    from: plan.slices[0]!.from,
    to: plan.slices.reduce((latest, s) => (s.to > latest ? s.to : latest), plan.slices[0]!.to),
    sinks: plan.sinks,
    sources: plan.sources,
    slices: toRun.map((r) => r.slice),
    skipped: skipped.length,
  };
  await clients.live.ensureContainer();
  await clients.store.writeManifest(manifest, null);
  await clearFailures(
    clients.store,
    toRun.map((r) => r.slice),
    states,
    plan.slices,
  );
  if (toRun.length > 0) await clients.queue.ensureQueues();
  await mapConcurrently(toRun, 16, (r) => clients.queue.send(sliceMessage(id, r.slice, r.sinks)));

  const notes: string[] = [];
  if (replays.length > 0) {
    notes.push(
      `${replays.length} slice(s) archived earlier with --sinks archive (${replays[0]}${replays.length > 1 ? ` .. ${replays[replays.length - 1]}` : ""}) are sent to Log Analytics from the archive, once; the warehouse is not read again.`,
    );
  }
  if (keptSinks.length > 0) {
    notes.push(
      `${keptSinks.length} slice(s) started earlier keep the sinks they started with (${keptSinks.slice(0, 5).join(", ")}${keptSinks.length > 5 ? ", ..." : ""}); those started with the archive alone are sent to Log Analytics from the archive when they are done.`,
    );
  }
  return { manifest, enqueued: toRun.length, skipped, notes };
}

/** Marks the backfill cancelled: its waiting slices are dropped when delivered; running ones finish their invocation and stop. */
export async function cancelBackfill(store: BackfillStore, nowMs: number, id?: string): Promise<BackfillManifest> {
  for (let attempt = 0; attempt < 5; attempt += 1) {
    const target = id ?? (await store.listBackfills()).pop();
    const read = target ? await store.readManifest(target) : null;
    if (!read) throw new ConfigError([id ? `No backfill '${id}' to cancel.` : "No backfill has been started: nothing to cancel."]);
    if (read.manifest.cancelledAt) return read.manifest;
    const manifest = { ...read.manifest, cancelledAt: new Date(nowMs).toISOString() };
    try {
      await store.writeManifest(manifest, read.etag);
      return manifest;
    } catch (error) {
      if (!(error instanceof StateConflictError)) throw error;
    }
  }
  throw new Error("The backfill manifest kept changing while it was being cancelled; try again.");
}

/** The latest backfill, when it still has slices waiting or running. */
async function activeBackfill(store: BackfillStore, nowMs: number): Promise<BackfillStatus | undefined> {
  const manifest = await store.latestManifest();
  if (!manifest || manifest.cancelledAt) return undefined;
  const status = backfillStatus(manifest, await store.readSliceStates(manifest.slices), nowMs);
  return status.finished ? undefined : status;
}

/**
 * Where the live export of a source began: its state's start (the single-source state, for a
 * first source that was renamed), or, before its first run, an absolute EXPORT_START.
 */
function liveStartOf(live: ExportState | undefined, name: string, config: AppConfig): number | undefined {
  const source = live?.sources[name] ?? (name === config.sources[0]?.name ? live?.sources[SINGLE_SOURCE_NAME] : undefined);
  if (source) return source.startUs;
  return config.start.kind === "at" ? config.start.us : undefined;
}

/** A slice that failed before runs again: its failure is cleared so the status shows it waiting. */
async function clearFailures(
  store: BackfillStore,
  toRun: readonly SliceRef[],
  states: readonly (Awaited<ReturnType<BackfillStore["readSliceState"]>> | null)[],
  all: readonly SliceRef[],
): Promise<void> {
  const wanted = new Set(toRun.map((s) => `${s.source}/${s.day}`));
  const failed = all.flatMap((slice, index) => (wanted.has(`${slice.source}/${slice.day}`) && states[index]?.state.backfillSlice?.failed ? [index] : []));
  await mapConcurrently(failed, 16, (index) =>
    store.changeSliceState(all[index]!.source, all[index]!.day, states[index]!, (state) => {
      delete state.backfillSlice!.failed;
    }),
  );
}
