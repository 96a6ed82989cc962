import { randomUUID } from "node:crypto";
import type { TokenCredential } from "@azure/identity";
import type { AppConfig } from "../config";
import { isExpiredResultLinkError, type WarehouseOptions } from "../databricks";
import { ConcurrentRunError, describeError } from "../errors";
import { LogsIngestionSink, type IngestionClientOptions } from "../logsIngestion";
import { LazyWarehouse, warehouseOptionsFor } from "../export/cycle";
import { runExport, type ExportOptions, type ExportSummary } from "../export/engine";
import type { ExportLog, ExportStore, IngestionSink } from "../export/ports";
import { StateConflictError } from "../export/ports";
import { initialSourceState, type BackfillSliceInfo, type ExportState } from "../export/state";
import { parseLedgerRef } from "../export/archiver";
import { parseSliceMessage, type SliceMessage } from "./plan";
import { sliceJournal, type BackfillStore } from "./store";
import { replaySlice } from "./replay";

/**
 * One backfill slice, one invocation: a (source, UTC day) exported by the live export's own
 * engine, with the slice's own state blob, from the day's start to its end instead of to now.
 * Everything that makes the live export exactly-once holds per slice: the lock and conditional
 * writes on its state (two instances given the same message: one works, the other is told
 * "busy"), deterministic archive names and the pending-batch resume (a crash, a redelivery),
 * and Log Analytics following the archive on its own progress. Its time budget ends the
 * invocation cleanly ("continue": the caller enqueues the rest).
 */

export type SliceStatus =
  /** Every event of the day is in the archive (and Log Analytics with both sinks). */
  | "done"
  /** Done by an earlier delivery of this or another backfill: nothing read. */
  | "already-done"
  /** The time budget ran out first: enqueue the slice again. */
  | "continue"
  /** Another instance holds the slice's lock: try again after `retryAfterSeconds`. */
  | "busy"
  /** The backfill was cancelled: the slice is dropped. */
  | "cancelled";

export interface SliceOutcome {
  status: SliceStatus;
  message: SliceMessage;
  summary?: ExportSummary;
  /** Records a replay of an archived day sent to Log Analytics in this invocation. */
  replayed?: number;
  retryAfterSeconds?: number;
}

export interface SliceRunOptions {
  now?: () => number;
  warehouse?: WarehouseOptions;
  ingestion?: IngestionClientOptions;
  tuning?: Pick<ExportOptions, "batchEvents" | "lockTtlMs" | "uploadConcurrency" | "archiveConcurrency" | "slices">;
  /** Replaces the slice's store (tests inject faults between its writes). */
  wrapStore?: (store: ExportStore) => ExportStore;
  /** Replaces a replay's Log Analytics sink (tests inject failures). */
  wrapSink?: (sink: IngestionSink) => IngestionSink;
}

const DEFAULT_LOCK_TTL_MS = 5 * 60_000;
/** A day and an hour: a slice's late-row horizon covers all of it. */
const SLICE_LEDGER_MS = 25 * 3600_000;

/** What a slice runs with: the backfill's store and the identity, built once by the caller (backfillClients). */
export interface SliceClients {
  store: BackfillStore;
  credential: TokenCredential;
}

export async function runSlice(body: unknown, config: AppConfig, clients: SliceClients, log: ExportLog, options: SliceRunOptions = {}): Promise<SliceOutcome> {
  const message = parseSliceMessage(body);
  const source = config.sources.find((s) => s.name === message.source);
  if (!source) {
    throw new Error(
      `Backfill slice ${message.source}/${message.day}: no source '${message.source}' is configured now (${config.sources.map((s) => s.name).join(", ")}). Restore its settings, or cancel the backfill.`,
    );
  }
  const now = options.now ?? Date.now;
  const { store: backfill, credential } = clients;

  const manifest = await backfill.readManifest(message.backfill);
  if (manifest?.manifest.cancelledAt) {
    log.info(`Backfill ${message.backfill} was cancelled at ${manifest.manifest.cancelledAt}: slice ${message.source}/${message.day} dropped.`);
    return { status: "cancelled", message };
  }
  const stored = await backfill.readSliceState(message.source, message.day);
  const info = stored?.state.backfillSlice;
  // A day archived earlier without Log Analytics, now asked for both: sent from the archive.
  const replay = info?.doneAt !== undefined && info.sinks === "archive" && message.sinks === "both" && !info.replay?.doneAt;
  if (info?.doneAt && !replay) return { status: "already-done", message };
  if (stored && info && (info.from !== message.from || info.to !== message.to)) {
    throw new Error(
      `Backfill slice ${message.source}/${message.day} was started for [${info.from}, ${info.to}) and this message asks for [${message.from}, ${message.to}): a day is exported once, over one range. Cancel this backfill.`,
    );
  }
  if (!stored) await createSliceState(backfill, message, now());

  // A slice keeps the sinks it started with: Log Analytics follows its archive from its first batch
  // or not at all. One started with the archive alone and now asked for both is sent from the
  // archive once it is done (below).
  const ingestionOn = (info?.sinks ?? message.sinks) === "both";
  if (message.sinks === "both" && !config.logsIngestion) {
    throw new Error(`Backfill slice ${message.source}/${message.day} sends to Log Analytics (--sinks both), but LOGS_INGESTION_* are not set here.`);
  }
  const lockTtlMs = options.tuning?.lockTtlMs ?? DEFAULT_LOCK_TTL_MS;
  if (replay) {
    const sink = new LogsIngestionSink(config.logsIngestion!, credential, options.ingestion);
    try {
      const sent = await replaySlice(message.source, backfill.sliceStore(message.source, message.day), options.wrapSink ? options.wrapSink(sink) : sink, {
        lockTtlMs,
        now,
        timeBudgetMs: config.backfillTimeBudgetMs,
        log,
        runId: randomUUID(),
      });
      return { status: sent.status, message, replayed: sent.records };
    } catch (error) {
      if (error instanceof ConcurrentRunError) return { status: "busy", message, retryAfterSeconds: Math.ceil(lockTtlMs / 1000) };
      throw error;
    }
  }
  const reader = new LazyWarehouse(source, credential, warehouseOptionsFor(config, options.warehouse));
  const filter = { ...source.filter, includeAccountLevel: source.filter.includeAccountLevel && message.accountLevel };
  const sliceStore = backfill.sliceStore(message.source, message.day);
  const store = options.wrapStore ? options.wrapStore(sliceStore) : sliceStore;
  let summary: ExportSummary;
  try {
    summary = await runExport(
      {
        filter,
        redaction: config.redaction,
        start: { kind: "at", us: message.fromUs },
        endUs: message.toUs,
        settleDelayMs: config.settleDelayMs,
        // The whole day stays in the late-row ledger, so the slice knows every batch it archived when it finishes.
        lateHorizonMs: Math.max(config.lateHorizonMs, SLICE_LEDGER_MS),
        timeBudgetMs: config.backfillTimeBudgetMs,
        isRecoverable: isExpiredResultLinkError,
        ...options.tuning,
      },
      {
        sources: [{ name: message.source, reader, filter }],
        store,
        ...(ingestionOn ? { ingestion: new LogsIngestionSink(config.logsIngestion!, credential, options.ingestion) } : {}),
        now,
        log,
      },
    );
  } catch (error) {
    if (error instanceof ConcurrentRunError) return { status: "busy", message, retryAfterSeconds: Math.ceil(lockTtlMs / 1000) };
    throw error;
  } finally {
    await reader.close();
  }
  if (!summary.caughtUp || !(await finishSlice(backfill, message, now()))) return { status: "continue", message, summary };
  // Archived without Log Analytics and now asked for both: the next delivery sends the day from the archive.
  if (message.sinks === "both" && !ingestionOn) return { status: "continue", message, summary };
  return { status: "done", message, summary };
}

/** A slice's first state: the source's progress from the day's start, in the slice's own journal folder. */
async function createSliceState(backfill: BackfillStore, message: SliceMessage & { fromUs: number }, nowMs: number): Promise<void> {
  const info: BackfillSliceInfo = {
    backfill: message.backfill,
    source: message.source,
    day: message.day,
    from: message.from,
    to: message.to,
    sinks: message.sinks,
    accountLevel: message.accountLevel,
  };
  const state: ExportState = {
    version: 2,
    lock: null,
    writer: null,
    sources: { [message.source]: { ...initialSourceState(message.fromUs), journal: sliceJournal(message.source, message.day) } },
    lastRunAt: new Date(nowMs).toISOString(),
    backfillSlice: info,
  };
  try {
    await backfill.writeSliceState(message.source, message.day, state, null);
  } catch (error) {
    // Another delivery created it first: the same slice, the same range (checked when it is read).
    if (!(error instanceof StateConflictError)) throw error;
  }
}

/**
 * Marks the slice done and drops what only an unfinished slice needs: its batch ledgers (the
 * late-row check of a finished day does not run again). Conditional on the state's ETag: a
 * writer that lost the race leaves the slice to the next delivery, which finds it caught up.
 */
async function finishSlice(backfill: BackfillStore, message: SliceMessage, nowMs: number): Promise<boolean> {
  const stored = await backfill.readSliceState(message.source, message.day);
  if (!stored?.state.backfillSlice) return false;
  // Another run holds the slice (this one's lock was released): the next delivery finishes it.
  if (stored.state.lock && stored.state.lock.expiresAtMs > nowMs) return false;
  const source = stored.state.sources[message.source];
  const ledgers = [...new Set(source ? Object.values(source.deliveredByHour).flatMap((hour) => hour.batches.map((ref) => parseLedgerRef(ref).id)) : [])];
  const written = await backfill.changeSliceState(message.source, message.day, stored, (state) => {
    state.backfillSlice = { ...state.backfillSlice!, doneAt: new Date(nowMs).toISOString(), batches: ledgers };
    delete state.backfillSlice.failed;
    if (state.sources[message.source]) state.sources[message.source]!.deliveredByHour = {};
    state.lock = null;
  });
  if (!written) return false;
  await backfill
    .sliceStore(message.source, message.day)
    .deleteBatches(ledgers)
    .catch(() => undefined);
  return true;
}

/** A delivery that failed with no attempt left: the slice's state says so (the message goes to the poison queue). Best effort. */
export async function recordSliceFailure(backfill: BackfillStore, body: unknown, error: unknown, attempts: number, nowMs: number): Promise<void> {
  let message: SliceMessage;
  try {
    message = parseSliceMessage(body);
  } catch {
    return;
  }
  const failed = { at: new Date(nowMs).toISOString(), error: describeError(error), attempts };
  for (let attempt = 0; attempt < 3; attempt += 1) {
    const stored = await backfill.readSliceState(message.source, message.day).catch(() => null);
    if (!stored?.state.backfillSlice || stored.state.backfillSlice.doneAt) return;
    const written = await backfill
      .changeSliceState(message.source, message.day, stored, (state) => {
        state.backfillSlice = { ...state.backfillSlice!, failed };
      })
      .catch(() => true);
    if (written) return;
  }
}
