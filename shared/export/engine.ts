import { randomUUID } from "node:crypto";
import type { AuditFilter, ExportStart, RedactionRule } from "../config";
import { SINGLE_SOURCE_NAME, resolveStart } from "../config";
import { SOURCES_AT_ONCE } from "../sourcesConfig";
import { DeliveryError, LockLostError, describeError, ensureError } from "../errors";
import { hourIndexOf, microsToIso } from "../timestamps";
import { SourceArchiver } from "./archiver";
import type { SliceLimits } from "./boundedScan";
import { LockedState } from "./lockedState";
import { LogAnalyticsFollower } from "./logAnalytics";
import type { AuditSource, ExportLog, ExportStore, IngestionSink } from "./ports";
import { AccountEventClaims } from "./accountEvents";
import { initialSourceState, logAnalyticsBacklog, type ExportState, type SourceState } from "./state";

/**
 * The export engine. No SDK, no environment, no clock of its own: the warehouse, the blob
 * store, Log Analytics and time come in through the ports, which is what lets tests kill it at
 * any step and run it again. Under one lock, for each source (a SQL warehouse per region, in
 * parallel), it resumes the archive's unfinished batch, scans the warehouse to now minus the
 * settle delay, then looks for late rows (archiver.ts), while Log Analytics follows that
 * source's archive on its own progress (logAnalytics.ts). A source that fails does not stop
 * the others; account-level events, which every region returns, are archived by one source
 * only (accountEvents.ts).
 */

export interface ExportOptions {
  /** The filter of `deps.source` (one source); with `deps.sources`, each has its own. */
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
  /** Sources exported at once. */
  sourceConcurrency?: number;
  /** Read no event at or after this time (microseconds): a backfill slice ends at its day's end, not at now minus the settle delay. */
  endUs?: number;
}

/** One warehouse to read: its name in the state and the summary, the reader, its filter. */
export interface NamedSource {
  name: string;
  reader: AuditSource;
  filter: AuditFilter;
  /** Called once the source's part of the run is over (its reader's thread and session can go before the other sources finish). */
  finished?: () => Promise<void>;
}

export interface ExportDeps {
  /** The one source (named "default"), or `sources`. */
  source?: AuditSource;
  sources?: readonly NamedSource[];
  store: ExportStore;
  ingestion?: IngestionSink;
  /** Milliseconds since the epoch. */
  now: () => number;
  log: ExportLog;
  onProgress?: (progress: ExportProgress) => void;
}

export interface ExportProgress {
  source: string;
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

/** What a run did for one source. */
export interface SourceSummary {
  name: string;
  /** "failed": this source's run stopped on an error (`error`); the others went on. */
  status: "ok" | "failed";
  error?: string;
  /** The window this run read: from the saved cursor to now minus the settle delay. */
  windowStart: string;
  windowEnd: string;
  eventsRead: number;
  /** Events archived in this run (the record of truth). */
  eventsDelivered: number;
  lateEventsDelivered: number;
  /** Account-level events another source archived (every region returns them): skipped here. */
  duplicatesSkipped: number;
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

/**
 * What a run did: the totals over its sources (for one source, that source's figures), and
 * each source's own summary.
 */
export interface ExportSummary extends Omit<SourceSummary, "name"> {
  runId: string;
  sources: SourceSummary[];
}

const DEFAULT_BATCH_EVENTS = 20_000;
const DEFAULT_CALLS_PER_BATCH = 4;
const MAX_ARCHIVE_BYTES_PER_BATCH = 8 * 1024 * 1024;
const DEFAULT_LOCK_TTL_MS = 5 * 60_000;

export async function runExport(options: ExportOptions, deps: ExportDeps): Promise<ExportSummary> {
  const runId = randomUUID();
  const startedAt = deps.now();
  const timeLeft = (): boolean => deps.now() - startedAt < options.timeBudgetMs;
  const sources = deps.sources ?? (deps.source ? [{ name: SINGLE_SOURCE_NAME, reader: deps.source, filter: options.filter }] : []);
  if (sources.length === 0) throw new Error("runExport needs a source to read.");
  const locked = new LockedState(deps.store, runId, options.lockTtlMs ?? DEFAULT_LOCK_TTL_MS, deps.now, deps.log);
  await locked.acquire();
  const missing = sources.filter((s) => !locked.state.sources[s.name]);
  if (missing.length > 0) {
    const startUs = resolveStart(options.start, deps.now());
    await locked.save((state) =>
      addSources(
        state,
        missing.map((s) => s.name),
        sources[0]!.name,
        startUs,
      ),
    );
  }
  // Every region returns the account-level events: with several sources, one archives each.
  const claims =
    sources.length > 1 && sources.some((s) => s.filter.includeAccountLevel) ? new AccountEventClaims(deps.store, () => locked.confirmHeld()) : undefined;
  const context: SourceRunContext = { options, deps, locked, timeLeft, ...(claims ? { claims } : {}) };

  const outcomes = new Array<SourceOutcome>(sources.length);
  const queue = sources.map((source, index) => ({ source, index }));
  const concurrency = Math.min(options.sourceConcurrency ?? SOURCES_AT_ONCE, sources.length);
  const worker = async (): Promise<void> => {
    for (let item = queue.shift(); item; item = queue.shift()) {
      // Sources that wait their turn get a share of what is left of the budget: a backfill of
      // one region must not take all of it from the regions after it.
      const turnsLeft = Math.ceil((queue.length + 1) / concurrency);
      let sourceTimeLeft = timeLeft;
      if (turnsLeft > 1) {
        const now = deps.now();
        const sourceDeadline = now + Math.max(0, startedAt + options.timeBudgetMs - now) / turnsLeft;
        sourceTimeLeft = () => deps.now() < sourceDeadline;
      }
      outcomes[item.index] = await exportSource({ ...context, timeLeft: sourceTimeLeft }, item.source);
      await item.source
        .finished?.()
        .catch((error: unknown) => deps.log.warn(`Could not close the warehouse session of source '${item.source.name}': ${describeError(error)}`));
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));

  // A lost lock stops every source: the run fails as a whole.
  const lockLost = outcomes.find((o) => o.failure instanceof LockLostError)?.failure;
  if (claims && lockLost === undefined) await forgetOldClaims(claims, locked.state, sources, options.lateHorizonMs, deps.log);
  const failed = outcomes.filter((o) => o.failure !== undefined);
  const lagging = outcomes.filter((o) => o.failure === undefined && o.lagging !== undefined);
  const problems = [...failed.map((o) => describeSourceFailure(o, sources.length)), ...lagging.map((o) => o.lagging!)];
  locked.stop();
  // Wait for no call to be in flight before the lock goes: nothing may leave after this run ends.
  await locked
    .release((state) => {
      const now = new Date(deps.now()).toISOString();
      for (const outcome of outcomes) recordOutcome(state.sources[outcome.name], outcome, now);
      // The archive (the record of truth) of every source that did not fail is current.
      if (failed.length < outcomes.length) state.lastSuccessAt = now;
      if (problems.length === 0) delete state.lastError;
      else {
        state.lastFailureAt = now;
        state.lastError = problems.join(" ");
      }
    })
    .catch((error: unknown) => deps.log.warn(`Could not release the export lock (it expires by itself): ${describeError(error)}`));
  if (lockLost !== undefined) throw ensureError(lockLost);
  // One source: its failure is the run's, as it always was.
  if (sources.length === 1 && failed.length === 1) throw ensureError(failed[0]!.failure);

  const summaries = outcomes.map((outcome) => summarizeSource(outcome, locked.state.sources[outcome.name]!, deps.ingestion !== undefined));
  const summary = totalOf(runId, summaries);
  // A failed source or Log Analytics lagging fails the invocation (so it shows in Application
  // Insights), after every other source did its work, with the summary of what was delivered.
  if (problems.length > 0) throw new DeliveryError(problems.join(" "), summary);
  return summary;
}

/**
 * Adds the state of sources that have none. A run's first source takes over the state of the
 * single-source settings ("default") when the settings now name it differently, so an app that
 * goes from one warehouse to a list keeps its progress (list that warehouse first). A source
 * added next to sources already running skips the account-level events before it joined.
 */
function addSources(state: ExportState, names: readonly string[], first: string, startUs: number): void {
  const existing = Object.values(state.sources);
  const joinedUs = existing.length > 0 ? Math.min(...existing.map((s) => s.cursor.timeUs)) : undefined;
  for (const name of names) {
    const legacy = state.sources[SINGLE_SOURCE_NAME];
    if (name === first && legacy && !names.includes(SINGLE_SOURCE_NAME) && Object.keys(state.sources).length === 1) {
      state.sources[name] = { ...legacy, journal: legacy.journal ?? SINGLE_SOURCE_NAME };
      delete state.sources[SINGLE_SOURCE_NAME];
      continue;
    }
    state.sources[name] = { ...initialSourceState(startUs), ...(joinedUs !== undefined ? { accountEventsFromUs: joinedUs } : {}) };
  }
}

/**
 * Claims are needed while a source may still read their hour: ahead of its cursor, or inside
 * its late-row horizon. Older ones are deleted.
 */
async function forgetOldClaims(
  claims: AccountEventClaims,
  state: ExportState,
  sources: readonly NamedSource[],
  lateHorizonMs: number,
  log: ExportLog,
): Promise<void> {
  const oldestNeededUs = Math.min(...sources.map((s) => (state.sources[s.name]?.cursor.timeUs ?? 0) - lateHorizonMs * 1000));
  try {
    await claims.forgetBefore(hourIndexOf(oldestNeededUs) - 1);
  } catch (error) {
    log.warn(`Could not delete account-event claims older than the late-row horizon (the next run tries again): ${describeError(error)}`);
  }
}

interface SourceRunContext {
  options: ExportOptions;
  deps: ExportDeps;
  locked: LockedState;
  timeLeft: () => boolean;
  claims?: AccountEventClaims;
}

interface SourceOutcome {
  name: string;
  windowStartUs: number;
  targetUs: number;
  caughtUp: boolean;
  archive: SourceArchiver["progress"];
  follower?: LogAnalyticsFollower["progress"];
  failure?: unknown;
  /** Log Analytics behind the archive, and why. */
  lagging?: string;
}

/** One source's run: its archive follows its warehouse, its Log Analytics its archive. Never throws: the outcome says. */
async function exportSource(context: SourceRunContext, named: NamedSource): Promise<SourceOutcome> {
  const { options, deps, locked, timeLeft } = context;
  const sourceName = named.name;
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
      filter: named.filter,
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
      ...(context.claims && named.filter.includeAccountLevel ? { claims: context.claims } : {}),
    },
    named.reader,
    deps.store,
    locked,
    deps.log,
    timeLeft,
    (batch) => follower?.offer(batch),
    (cursorUs) => deps.onProgress?.({ source: sourceName, cursorUs, targetUs, eventsDelivered: archiver.progress.eventsArchived }),
  );

  const source = () => locked.state.sources[sourceName]!;
  const outcome: SourceOutcome = { name: sourceName, windowStartUs: source().cursor.timeUs, targetUs, caughtUp: false, archive: archiver.progress };
  if (follower) outcome.follower = follower.progress;
  try {
    const following = follower?.run();
    following?.catch(() => undefined);
    let archiveFailure: unknown;
    try {
      await archiver.resumePending();
      const settledUs = (deps.now() - options.settleDelayMs) * 1000;
      targetUs = outcome.targetUs = options.endUs === undefined ? settledUs : Math.min(options.endUs, settledUs);
      outcome.caughtUp = await archiver.scanTo(targetUs);
      if (outcome.caughtUp) await archiver.deliverLateEvents();
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
      const who = sourceName === SINGLE_SOURCE_NAME ? "" : ` of source '${sourceName}'`;
      outcome.lagging = `The archive${who} is complete up to ${microsToIso(source().cursor.timeUs)}, but Log Analytics is ${backlog.batches} batch(es) (${backlog.events} events) behind it: ${follower.failure.message} ${follower.failure.remediation}`;
    }
  } catch (error) {
    outcome.failure = error;
    outcome.caughtUp = false;
  }
  return outcome;
}

function describeSourceFailure(outcome: SourceOutcome, sources: number): string {
  const reason = describeError(outcome.failure);
  return sources === 1 ? reason : `Source '${outcome.name}' failed (the other sources went on): ${reason}`;
}

function recordOutcome(source: SourceState | undefined, outcome: SourceOutcome, now: string): void {
  if (!source) return;
  if (outcome.failure === undefined) source.lastSuccessAt = now;
  if (outcome.failure !== undefined || outcome.lagging !== undefined) {
    source.lastFailureAt = now;
    source.lastError = outcome.failure !== undefined ? describeError(outcome.failure) : outcome.lagging!;
  } else delete source.lastError;
}

function summarizeSource(outcome: SourceOutcome, current: SourceState, ingestionOn: boolean): SourceSummary {
  const backlog = logAnalyticsBacklog(current);
  const la = current.logAnalytics;
  const archive = outcome.archive;
  return {
    name: outcome.name,
    status: outcome.failure === undefined ? "ok" : "failed",
    ...(outcome.failure !== undefined ? { error: describeError(outcome.failure) } : {}),
    windowStart: microsToIso(outcome.windowStartUs),
    windowEnd: microsToIso(Math.max(outcome.targetUs, current.cursor.timeUs)),
    eventsRead: archive.eventsRead,
    eventsDelivered: archive.eventsArchived,
    lateEventsDelivered: archive.lateEventsArchived,
    duplicatesSkipped: archive.duplicatesSkipped,
    resumedBatch: archive.resumedBatch,
    blobsWritten: archive.blobsWritten,
    bytesArchived: archive.bytesArchived,
    recordsIngested: outcome.follower?.recordsIngested ?? 0,
    ingestionCalls: outcome.follower?.ingestionCalls ?? 0,
    caughtUp: outcome.caughtUp && (!ingestionOn || backlog.batches === 0),
    cursor: `${microsToIso(current.cursor.timeUs)}${current.cursor.eventId ? ` / ${current.cursor.eventId}` : ""}`,
    batches: archive.batches,
    logAnalytics: {
      status: !ingestionOn ? "off" : backlog.batches === 0 ? "current" : "behind",
      batchesBehind: ingestionOn ? backlog.batches : 0,
      eventsBehind: ingestionOn ? backlog.events : 0,
      deadLettered: outcome.follower?.deadLettered ?? 0,
      deadLetterBlobs: outcome.follower?.deadLetterBlobs ?? [],
      batchesReadBack: outcome.follower?.batchesReadBack ?? 0,
      ...(la.laggingSince ? { laggingSince: la.laggingSince } : {}),
      ...(la.lastError ? { reason: la.lastError.message, remediation: la.lastError.remediation } : {}),
    },
  };
}

/** The run's totals: one source's own figures, or the sum over several (windows and cursors per source in `sources`). */
function totalOf(runId: string, sources: SourceSummary[]): ExportSummary {
  if (sources.length === 1) {
    const only: Partial<SourceSummary> = { ...sources[0]! };
    delete only.name;
    return { runId, ...(only as Omit<SourceSummary, "name">), sources };
  }
  const sum = (pick: (s: SourceSummary) => number): number => sources.reduce((total, s) => total + pick(s), 0);
  const las = sources.map((s) => s.logAnalytics);
  const behind = las.find((la) => la.status === "behind");
  const failed = sources.filter((s) => s.status === "failed");
  return {
    runId,
    status: failed.length === 0 ? "ok" : "failed",
    ...(failed.length > 0 ? { error: failed.map((s) => `${s.name}: ${s.error}`).join("; ") } : {}),
    windowStart: sources.map((s) => s.windowStart).sort()[0]!,
    windowEnd: sources
      .map((s) => s.windowEnd)
      .sort()
      .at(-1)!,
    eventsRead: sum((s) => s.eventsRead),
    eventsDelivered: sum((s) => s.eventsDelivered),
    lateEventsDelivered: sum((s) => s.lateEventsDelivered),
    duplicatesSkipped: sum((s) => s.duplicatesSkipped),
    resumedBatch: sources.some((s) => s.resumedBatch),
    blobsWritten: sum((s) => s.blobsWritten),
    bytesArchived: sum((s) => s.bytesArchived),
    recordsIngested: sum((s) => s.recordsIngested),
    ingestionCalls: sum((s) => s.ingestionCalls),
    caughtUp: sources.every((s) => s.caughtUp),
    cursor: sources.map((s) => `${s.name} ${s.cursor}`).join(", "),
    batches: sum((s) => s.batches),
    logAnalytics: {
      status: las.every((la) => la.status === "off") ? "off" : behind ? "behind" : "current",
      batchesBehind: sum((s) => s.logAnalytics.batchesBehind),
      eventsBehind: sum((s) => s.logAnalytics.eventsBehind),
      deadLettered: sum((s) => s.logAnalytics.deadLettered),
      deadLetterBlobs: las.flatMap((la) => la.deadLetterBlobs),
      batchesReadBack: sum((s) => s.logAnalytics.batchesReadBack),
      ...(behind?.laggingSince ? { laggingSince: behind.laggingSince } : {}),
      ...(behind?.reason ? { reason: behind.reason, remediation: behind.remediation ?? "" } : {}),
    },
    sources,
  };
}
