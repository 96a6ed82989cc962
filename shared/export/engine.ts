import { randomUUID } from "node:crypto";
import type { AuditFilter, ExportStart, RedactionRule } from "../config";
import { resolveStart } from "../config";
import { DeliveryError, describeError, ensureError } from "../errors";
import { microsToIso } from "../timestamps";
import { SourceArchiver } from "./archiver";
import type { SliceLimits } from "./boundedScan";
import { LockedState } from "./lockedState";
import { LogAnalyticsFollower } from "./logAnalytics";
import type { AuditSource, ExportLog, ExportStore, IngestionSink } from "./ports";
import { DEFAULT_SOURCE, initialSourceState, logAnalyticsBacklog } from "./state";

/**
 * The export engine. No SDK, no environment, no clock of its own: the warehouse, the blob
 * store, Log Analytics and time come in through the ports, which is what lets tests kill it at
 * any step and run it again. Under one lock, it resumes the archive's unfinished batch, scans
 * the warehouse to now minus the settle delay, then looks for late rows (archiver.ts), while
 * Log Analytics follows the archive on its own progress (logAnalytics.ts).
 */

export interface ExportOptions {
  filter: AuditFilter;
  redaction: readonly RedactionRule[];
  start: ExportStart;
  settleDelayMs: number;
  lateHorizonMs: number;
  timeBudgetMs: number;
  /** At most this many events per batch (bounded memory; each batch is one commit). */
  batchEvents?: number;
  /** Full Log Analytics calls per batch (with Log Analytics on). */
  callsPerBatch?: number;
  lockTtlMs?: number;
  /** Log Analytics calls in flight at once. */
  uploadConcurrency?: number;
  /** Archive blobs written at once. */
  archiveConcurrency?: number;
  /** Bounds of each query (time span and rows). */
  slices?: SliceLimits;
  /** Errors after which a query is issued again from the last key read (an expired CloudFetch link). */
  isRecoverable?: (error: unknown) => boolean;
}

export interface ExportDeps {
  source: AuditSource;
  store: ExportStore;
  ingestion?: IngestionSink;
  /** Milliseconds since the epoch. */
  now: () => number;
  log: ExportLog;
  onProgress?: (progress: ExportProgress) => void;
}

export interface ExportProgress {
  cursorUs: number;
  targetUs: number;
  eventsDelivered: number;
}

export interface LogAnalyticsSummary {
  /** "off": not configured; "current": caught up with the archive; "behind": batches wait (see reason). */
  status: "off" | "current" | "behind";
  batchesBehind: number;
  eventsBehind: number;
  /** Records refused alone by the service in this run, written to dead-letter blobs. */
  deadLettered: number;
  deadLetterBlobs: string[];
  /** Batches sent in this run that were read back from the archive (catching up). */
  batchesReadBack: number;
  laggingSince?: string;
  reason?: string;
  remediation?: string;
}

export interface ExportSummary {
  runId: string;
  /** The window this run read: from the saved cursor to now minus the settle delay. */
  windowStart: string;
  windowEnd: string;
  eventsRead: number;
  /** Events archived in this run (the record of truth). */
  eventsDelivered: number;
  lateEventsDelivered: number;
  resumedBatch: boolean;
  blobsWritten: number;
  bytesArchived: number;
  recordsIngested: number;
  ingestionCalls: number;
  /** True when the archive reached the window's end and Log Analytics (when on) the archive; false when the time budget ran out first. */
  caughtUp: boolean;
  cursor: string;
  batches: number;
  logAnalytics: LogAnalyticsSummary;
}

const DEFAULT_BATCH_EVENTS = 20_000;
const DEFAULT_CALLS_PER_BATCH = 4;
const MAX_ARCHIVE_BYTES_PER_BATCH = 8 * 1024 * 1024;
const DEFAULT_LOCK_TTL_MS = 5 * 60_000;

export async function runExport(options: ExportOptions, deps: ExportDeps): Promise<ExportSummary> {
  const runId = randomUUID();
  const startedAt = deps.now();
  const timeLeft = (): boolean => deps.now() - startedAt < options.timeBudgetMs;
  const locked = new LockedState(deps.store, runId, options.lockTtlMs ?? DEFAULT_LOCK_TTL_MS, deps.now, deps.log);
  await locked.acquire();
  const sourceName = DEFAULT_SOURCE;
  if (!locked.state.sources[sourceName]) {
    // A first run: the source starts at EXPORT_START, fixed now for every later run.
    const startUs = resolveStart(options.start, deps.now());
    await locked.save((state) => {
      state.sources[sourceName] = initialSourceState(startUs);
    });
  }
  const ingestionOn = deps.ingestion !== undefined;
  const follower = deps.ingestion
    ? new LogAnalyticsFollower(
        { source: sourceName, uploadConcurrency: options.uploadConcurrency ?? 4 },
        deps.ingestion,
        deps.store,
        locked,
        deps.log,
        deps.now,
        timeLeft,
      )
    : undefined;
  let targetUs = 0;
  const archiver = new SourceArchiver(
    {
      source: sourceName,
      filter: options.filter,
      redaction: options.redaction,
      lateHorizonMs: options.lateHorizonMs,
      batch: {
        maxEvents: options.batchEvents ?? DEFAULT_BATCH_EVENTS,
        callsPerBatch: options.callsPerBatch ?? DEFAULT_CALLS_PER_BATCH,
        maxArchiveBytes: MAX_ARCHIVE_BYTES_PER_BATCH,
      },
      ...(options.slices ? { slices: options.slices } : {}),
      archiveConcurrency: options.archiveConcurrency ?? 4,
      ingestionOn,
      ...(options.isRecoverable ? { isRecoverable: options.isRecoverable } : {}),
    },
    deps.source,
    deps.store,
    locked,
    deps.log,
    timeLeft,
    (batch) => follower?.offer(batch),
    (cursorUs) => deps.onProgress?.({ cursorUs, targetUs, eventsDelivered: archiver.progress.eventsArchived }),
  );

  let failure: unknown;
  let lagging: string | undefined;
  let caughtUp = false;
  const source = () => locked.state.sources[sourceName]!;
  const windowStart = microsToIso(source().cursor.timeUs);
  try {
    const following = follower?.run();
    following?.catch(() => undefined);
    let archiveFailure: unknown;
    try {
      await archiver.resumePending();
      targetUs = (deps.now() - options.settleDelayMs) * 1000;
      caughtUp = await archiver.scanTo(targetUs);
      if (caughtUp) await archiver.deliverLateEvents();
    } catch (error) {
      archiveFailure = error;
    } finally {
      follower?.archiveFinished();
    }
    // Whatever happened to the archive, Log Analytics finishes what was committed (or stops on
    // a lost lock) before the run ends: nothing may leave after the lock is released.
    await following;
    if (archiveFailure !== undefined) throw ensureError(archiveFailure);
    if (follower?.failure) {
      const backlog = logAnalyticsBacklog(source());
      lagging = `The archive is complete up to ${microsToIso(source().cursor.timeUs)}, but Log Analytics is ${backlog.batches} batch(es) (${backlog.events} events) behind it: ${follower.failure.message} ${follower.failure.remediation}`;
    }
  } catch (error) {
    failure = error;
  }
  locked.stop();
  // Wait for no call to be in flight before the lock goes: nothing may leave after this run ends.
  await locked
    .release((state) => {
      const now = new Date(deps.now()).toISOString();
      if (lagging !== undefined) {
        // The archive (the record of truth) is current: the run counts as a success for it.
        state.lastSuccessAt = now;
        state.lastFailureAt = now;
        state.lastError = lagging;
      } else if (failure === undefined) {
        state.lastSuccessAt = now;
        delete state.lastError;
      } else {
        state.lastFailureAt = now;
        state.lastError = describeError(failure);
      }
    })
    .catch((error: unknown) => deps.log.warn(`Could not release the export lock (it expires by itself): ${describeError(error)}`));
  if (failure !== undefined) throw ensureError(failure);

  const current = source();
  const backlog = logAnalyticsBacklog(current);
  const la = current.logAnalytics;
  const summary: ExportSummary = {
    runId,
    windowStart,
    windowEnd: microsToIso(Math.max(targetUs, current.cursor.timeUs)),
    eventsRead: archiver.progress.eventsRead,
    eventsDelivered: archiver.progress.eventsArchived,
    lateEventsDelivered: archiver.progress.lateEventsArchived,
    resumedBatch: archiver.progress.resumedBatch,
    blobsWritten: archiver.progress.blobsWritten,
    bytesArchived: archiver.progress.bytesArchived,
    recordsIngested: follower?.progress.recordsIngested ?? 0,
    ingestionCalls: follower?.progress.ingestionCalls ?? 0,
    caughtUp: caughtUp && (!ingestionOn || backlog.batches === 0),
    cursor: `${microsToIso(current.cursor.timeUs)}${current.cursor.eventId ? ` / ${current.cursor.eventId}` : ""}`,
    batches: archiver.progress.batches,
    logAnalytics: {
      status: !ingestionOn ? "off" : backlog.batches === 0 ? "current" : "behind",
      batchesBehind: ingestionOn ? backlog.batches : 0,
      eventsBehind: ingestionOn ? backlog.events : 0,
      deadLettered: follower?.progress.deadLettered ?? 0,
      deadLetterBlobs: follower?.progress.deadLetterBlobs ?? [],
      batchesReadBack: follower?.progress.batchesReadBack ?? 0,
      ...(la.laggingSince ? { laggingSince: la.laggingSince } : {}),
      ...(la.lastError ? { reason: la.lastError.message, remediation: la.lastError.remediation } : {}),
    },
  };
  // Log Analytics lagging fails the invocation (so it shows in Application Insights), after
  // the archive did its work, with the summary of what was and was not delivered.
  if (lagging !== undefined) throw new DeliveryError(lagging, summary);
  return summary;
}
