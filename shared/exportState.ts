import type { EventKey } from "./auditQueries";

/**
 * What the export remembers between runs, kept as one JSON blob under `_state/` and written
 * only with a conditional write (ETag), so two writers can never both win.
 */
export interface ExportState {
  version: 1;
  /** Where the export began: nothing earlier is read, or re-checked for late rows. */
  startUs: number;
  /** Every event at or before this key (as of its scan) reached every sink. `eventId ""`: all of `timeUs`'s predecessors. */
  cursor: EventKey;
  /**
   * Per UTC hour index inside the late-row horizon: how many events were delivered, and the
   * batches that delivered them (their ids blobs are the ledger of delivered event_ids).
   */
  deliveredByHour: Record<string, HourLedger>;
  /** A batch that was started and not yet committed: the next run finishes it first. */
  pending: PendingBatch | null;
  /** Who is running now. A lock past its expiry belongs to a run that died. */
  lock: { runId: string; expiresAtMs: number } | null;
  lastRunAt?: string;
  lastSuccessAt?: string;
  lastFailureAt?: string;
  lastError?: string;
  totalDelivered: number;
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
  /** Number of events: their event_ids, in order, are in the batch's ids blob. */
  count: number;
  /** Log Analytics calls as index ranges over the ids; `sent` once the service confirmed the call. Null when Log Analytics is off. */
  calls: { start: number; end: number; sent: boolean }[] | null;
}

export function initialState(startUs: number): ExportState {
  return {
    version: 1,
    startUs,
    cursor: { timeUs: startUs, eventId: "" },
    deliveredByHour: {},
    pending: null,
    lock: null,
    totalDelivered: 0,
  };
}

/** Validates a state blob's content; a hand-edited or foreign blob fails loudly instead of silently restarting. */
export function parseState(text: string): ExportState {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new Error(
      "The export state blob is not valid JSON. Restore it from a blob version or snapshot, or delete it to restart from EXPORT_START (see TROUBLESHOOTING.md).",
    );
  }
  const state = value as Partial<ExportState>;
  const problems: string[] = [];
  if (state.version !== 1) problems.push("version must be 1");
  if (!Number.isSafeInteger(state.startUs)) problems.push("startUs must be an integer");
  if (!isKey(state.cursor)) problems.push("cursor must be {timeUs, eventId}");
  if (typeof state.deliveredByHour !== "object" || state.deliveredByHour === null) problems.push("deliveredByHour must be an object");
  if (state.pending !== null && state.pending !== undefined && !isPending(state.pending)) problems.push("pending is malformed");
  if (problems.length > 0) {
    throw new Error(
      `The export state blob is malformed (${problems.join("; ")}). Restore it from a blob version or delete it to restart from EXPORT_START (see TROUBLESHOOTING.md).`,
    );
  }
  return { lock: null, totalDelivered: 0, ...state, pending: state.pending ?? null } as ExportState;
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
    (batch.calls === null || Array.isArray(batch.calls))
  );
}

export function compareKeys(a: EventKey, b: EventKey): number {
  if (a.timeUs !== b.timeUs) return a.timeUs < b.timeUs ? -1 : 1;
  return a.eventId < b.eventId ? -1 : a.eventId > b.eventId ? 1 : 0;
}
