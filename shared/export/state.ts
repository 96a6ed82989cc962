import type { EventKey } from "../auditQueries";
import { SINGLE_SOURCE_NAME } from "../sourcesConfig";

/**
 * What the export remembers between runs, kept as one JSON blob under `_state/` and written
 * only with a conditional write (ETag), so two writers can never both win.
 *
 * Each source (a SQL warehouse; one unless several regions are configured) has its own
 * progress, and inside it each sink has its own: the Blob archive follows the warehouse
 * (cursor, late-row ledger, the batch in progress), and Log Analytics follows the archive
 * (the archive's batches are numbered in commit order, and Log Analytics keeps the number of
 * the next batch to send and the calls of it the service already confirmed). So a Log
 * Analytics that refuses or is unreachable only lags, and later catches up from the archive.
 */
export interface ExportState {
  version: 2;
  /** Who is running now. A lock past its expiry belongs to a run that died. */
  lock: { runId: string; expiresAtMs: number } | null;
  /**
   * The run and its write number that wrote this version: a run whose conditional write came
   * back 412 can tell whether it was its own write, retried by the storage SDK after it had
   * in fact succeeded, or another run's.
   */
  writer: { runId: string; write: number } | null;
  sources: Record<string, SourceState>;
  lastRunAt?: string;
  lastSuccessAt?: string;
  lastFailureAt?: string;
  lastError?: string;
  /** Set on a backfill slice's own state (shared/backfill): which day it is and how far it got. */
  backfillSlice?: BackfillSliceInfo;
}

/** What a backfill slice's state records besides the export's progress. */
export interface BackfillSliceInfo {
  /** The backfill that created the slice. */
  backfill: string;
  source: string;
  day: string;
  from: string;
  to: string;
  sinks: "archive" | "both";
  accountLevel: boolean;
  /** When the slice was finished: every event of the day in the archive (and in Log Analytics with both sinks). */
  doneAt?: string;
  /** The ids of the batches that archived the day, recorded when it was finished: what a later replay to Log Analytics sends. */
  batches?: string[];
  /** A day archived with --sinks archive, sent to Log Analytics from the archive later (backfill/replay.ts). */
  replay?: { lastBlob: string; sentCalls: number; records: number; doneAt?: string };
  /** Set when a delivery failed with no attempt left: the message went to the poison queue. Cleared when the slice runs again. */
  failed?: { at: string; error: string; attempts: number };
}

export interface SourceState {
  /** Where the export began: nothing earlier is read, or re-checked for late rows. */
  startUs: number;
  /** Every event at or before this key (as of its scan) is in the archive. `eventId ""`: all of `timeUs`'s predecessors. */
  cursor: EventKey;
  /**
   * Per UTC hour index inside the late-row horizon: how many events were archived, and the
   * batches that archived them (their batch blobs hold the ledger of archived event_ids).
   */
  deliveredByHour: Record<string, HourLedger>;
  /** A batch that was started and not yet committed to the archive: the next run finishes it first. */
  pending: PendingBatch | null;
  /** Batches committed to the archive, numbered 0, 1, 2, ... in commit order: the next number. */
  archivedBatches: number;
  archivedEvents: number;
  logAnalytics: LogAnalyticsProgress;
  /**
   * A source added next to sources already running: its account-level events before this
   * time are theirs (they archived them), so it skips them.
   */
  accountEventsFromUs?: number;
  /** The journal's folder, when it is not the source's name (a single source that became a named one). */
  journal?: string;
  /** This source's last run: each source fails alone. */
  lastSuccessAt?: string;
  lastFailureAt?: string;
  lastError?: string;
}

export interface HourLedger {
  events: number;
  batches: string[];
}

export type BatchKind = "scan" | "late";

export interface PendingBatch {
  id: string;
  kind: BatchKind;
  /** Exclusive lower key and inclusive upper key of the batch's events. */
  from: EventKey;
  through: EventKey;
  /** Number of events: their event_ids, in order, are in the batch blob. */
  count: number;
  /** The number the batch gets in the archive's commit order. */
  seq: number;
  /** Calls a version-1 state had already confirmed for this batch (indexes into the batch blob's calls). */
  sentCalls?: number[];
}

export interface LogAnalyticsProgress {
  /** The archive batch to send next; equal to the source's archivedBatches when Log Analytics is caught up (or off). */
  nextBatch: number;
  /** Calls of batch `nextBatch` the service confirmed (indexes into its calls). */
  sentCalls: number[];
  /** Events of the batches done (ingested or dead-lettered): archivedEvents minus this is how many wait. */
  doneEvents: number;
  deadLettered: number;
  /** Since when Log Analytics has been behind because of a failure, and the last failure. */
  laggingSince?: string;
  lastError?: { at: string; message: string; remediation: string };
}

export function initialSourceState(startUs: number): SourceState {
  return {
    startUs,
    cursor: { timeUs: startUs, eventId: "" },
    deliveredByHour: {},
    pending: null,
    archivedBatches: 0,
    archivedEvents: 0,
    logAnalytics: { nextBatch: 0, sentCalls: [], doneEvents: 0, deadLettered: 0 },
  };
}

export function initialState(): ExportState {
  return { version: 2, lock: null, writer: null, sources: {} };
}

/** Validates a state blob's content (and upgrades a version-1 one); a hand-edited or foreign blob fails loudly instead of silently restarting. */
export function parseState(text: string): ExportState {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new Error(
      "The export state blob is not valid JSON. Restore it from a blob version or snapshot, or delete it to restart from EXPORT_START (see TROUBLESHOOTING.md).",
    );
  }
  const raw = value as { version?: unknown };
  const problems: string[] = [];
  let state: ExportState | undefined;
  if (raw.version === 1) state = upgradeVersion1(value as StateVersion1, problems);
  else if (raw.version === 2) state = checkVersion2(value as ExportState, problems);
  else problems.push("version must be 1 or 2");
  if (problems.length > 0 || !state) {
    throw new Error(
      `The export state blob is malformed (${problems.join("; ")}). Restore it from a blob version or delete it to restart from EXPORT_START (see TROUBLESHOOTING.md).`,
    );
  }
  return state;
}

function checkVersion2(state: ExportState, problems: string[]): ExportState {
  if (typeof state.sources !== "object" || state.sources === null) {
    problems.push("sources must be an object");
    return state;
  }
  for (const [name, source] of Object.entries(state.sources)) checkSource(name, source, problems);
  return { ...state, lock: state.lock ?? null, writer: state.writer ?? null };
}

function checkSource(name: string, source: SourceState, problems: string[]): void {
  const where = `sources.${name}`;
  if (!Number.isSafeInteger(source.startUs)) problems.push(`${where}.startUs must be an integer`);
  if (!isKey(source.cursor)) problems.push(`${where}.cursor must be {timeUs, eventId}`);
  if (typeof source.deliveredByHour !== "object" || source.deliveredByHour === null) problems.push(`${where}.deliveredByHour must be an object`);
  if (source.pending !== null && !isPending(source.pending)) problems.push(`${where}.pending is malformed`);
  if (!Number.isSafeInteger(source.archivedBatches) || !Number.isSafeInteger(source.archivedEvents))
    problems.push(`${where}.archivedBatches/archivedEvents must be integers`);
  const la = source.logAnalytics as LogAnalyticsProgress | undefined;
  if (!la || !Number.isSafeInteger(la.nextBatch) || !Array.isArray(la.sentCalls) || la.nextBatch > source.archivedBatches) {
    problems.push(`${where}.logAnalytics must be {nextBatch <= archivedBatches, sentCalls, ...}`);
  }
}

/** The state as version 1 kept it: one source, and a pending batch that carried its Log Analytics calls. */
interface StateVersion1 {
  version: 1;
  startUs: number;
  cursor: EventKey;
  deliveredByHour: Record<string, HourLedger>;
  pending: (Omit<PendingBatch, "seq" | "sentCalls"> & { calls: { start: number; end: number; sent: boolean }[] | null }) | null;
  lock: ExportState["lock"];
  lastRunAt?: string;
  lastSuccessAt?: string;
  lastFailureAt?: string;
  lastError?: string;
  totalDelivered?: number;
}

/**
 * Version 1 kept one progress for both sinks: everything before its cursor is in both. Its
 * pending batch becomes the archive's batch number 0, and the calls it had confirmed are
 * remembered so Log Analytics sends only the others.
 */
function upgradeVersion1(old: StateVersion1, problems: string[]): ExportState | undefined {
  if (!Number.isSafeInteger(old.startUs)) problems.push("startUs must be an integer");
  if (!isKey(old.cursor)) problems.push("cursor must be {timeUs, eventId}");
  if (typeof old.deliveredByHour !== "object" || old.deliveredByHour === null) problems.push("deliveredByHour must be an object");
  if (old.pending && !isPending({ ...old.pending, seq: 0 })) problems.push("pending is malformed");
  if (problems.length > 0) return undefined;
  const total = old.totalDelivered ?? 0;
  const source: SourceState = {
    ...initialSourceState(old.startUs),
    cursor: old.cursor,
    deliveredByHour: old.deliveredByHour,
    archivedEvents: total,
    logAnalytics: { nextBatch: 0, sentCalls: [], doneEvents: total, deadLettered: 0 },
  };
  if (old.pending) {
    const { calls, ...batch } = old.pending;
    source.pending = { ...batch, seq: 0, ...(calls ? { sentCalls: calls.flatMap((call, index) => (call.sent ? [index] : [])) } : {}) };
  }
  return {
    version: 2,
    lock: old.lock ?? null,
    writer: null,
    sources: { [SINGLE_SOURCE_NAME]: source },
    ...(old.lastRunAt ? { lastRunAt: old.lastRunAt } : {}),
    ...(old.lastSuccessAt ? { lastSuccessAt: old.lastSuccessAt } : {}),
    ...(old.lastFailureAt ? { lastFailureAt: old.lastFailureAt } : {}),
    ...(old.lastError ? { lastError: old.lastError } : {}),
  };
}

function isKey(value: unknown): value is EventKey {
  const key = value as EventKey | undefined;
  return !!key && Number.isSafeInteger(key.timeUs) && typeof key.eventId === "string";
}

function isPending(value: unknown): value is PendingBatch {
  const batch = value as PendingBatch;
  return (
    typeof batch.id === "string" &&
    (batch.kind === "scan" || batch.kind === "late") &&
    isKey(batch.from) &&
    isKey(batch.through) &&
    Number.isInteger(batch.count) &&
    Number.isInteger(batch.seq)
  );
}

export function compareKeys(a: EventKey, b: EventKey): number {
  if (a.timeUs !== b.timeUs) return a.timeUs < b.timeUs ? -1 : 1;
  return a.eventId < b.eventId ? -1 : a.eventId > b.eventId ? 1 : 0;
}

/** How far Log Analytics is behind the archive for one source. */
export function logAnalyticsBacklog(source: SourceState): { batches: number; events: number } {
  return {
    batches: source.archivedBatches - source.logAnalytics.nextBatch,
    events: Math.max(0, source.archivedEvents - source.logAnalytics.doneEvents),
  };
}

/** A batch's blob: its event_ids (the late-row ledger), archive blobs and Log Analytics calls. */
export function batchBlobName(id: string): string {
  return `_state/batches/${id}.ids`;
}

/** The journal folder of a source. */
export function journalOf(source: SourceState, name: string): string {
  return source.journal ?? name;
}

/** Where Log Analytics finds the archive's batch number `seq` of a source. */
export function journalBlobName(source: string, seq: number): string {
  return `_state/journal/${source}/${String(seq).padStart(12, "0")}.json`;
}
