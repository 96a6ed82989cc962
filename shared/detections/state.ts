import type { AlertLine } from "./alerts";

/**
 * The detections' own state, `_state/detections.json` in the export container, written like the
 * export's: conditionally (ifMatch its ETag, ifNoneMatch "*" when creating), with a lock that a
 * run holds until it ends or the lock expires.
 *
 * Exactly once per sink: an alert is `pending` once it is in Blob and `raised` once Log Analytics
 * has it too (or at once when Log Analytics is off). Raised ids are remembered while their window
 * can still be re-evaluated; a re-evaluation raises only ids it has not raised before.
 */

export const DETECTIONS_STATE_BLOB = "_state/detections.json";

export interface DetectionProgress {
  /** End (exclusive, ISO) of the detection's last successful evaluation. */
  evaluatedUntil?: string;
  lastSuccessAt?: string;
  /** The last failure, cleared by the next success. */
  lastError?: string;
  lastErrorAt?: string;
  /**
   * Source name -> start (ISO) of the earliest range evaluated without that source (it failed
   * while others answered). A run in which it answers again re-evaluates from there, with every
   * source, and clears it; alert ids already raised are not raised again.
   */
  sourcesBehind?: Record<string, string>;
}

/** A source (SQL warehouse) as the last run found it. */
export interface SourceProgress {
  lastSuccessAt?: string;
  /** Why it failed in the last run (cannot connect, refused, a query failed); cleared when it answers every query of a run. */
  lastError?: string;
  lastErrorAt?: string;
}

export interface PendingAlert {
  alert: AlertLine;
  /** When it was first raised (its TimeGenerated in Log Analytics). */
  raisedAt: string;
}

export interface DetectionsState {
  version: 1;
  lock: { runId: string; expiresAtMs: number } | null;
  detections: Record<string, DetectionProgress>;
  /** Alert id -> its window's end (ISO), for windows that can still be re-evaluated. */
  raised: Record<string, string>;
  /** In Blob, not yet confirmed by Log Analytics. */
  pending: PendingAlert[];
  lastRunAt?: string;
  lastSuccessAt?: string;
  lastFailureAt?: string;
  lastError?: string;
  /** Problems of the overrides file at the last run (each names its entry and field). */
  configErrors?: string[];
  /** Each configured source (SQL warehouse, one per region) by name. */
  sources?: Record<string, SourceProgress>;
}

export function initialDetectionsState(): DetectionsState {
  return { version: 1, lock: null, detections: {}, raised: {}, pending: [] };
}

export function parseDetectionsState(text: string): DetectionsState {
  const value = JSON.parse(text) as Partial<DetectionsState>;
  if (!value || typeof value !== "object" || value.version !== 1 || typeof value.detections !== "object" || typeof value.raised !== "object") {
    throw new Error(`${DETECTIONS_STATE_BLOB} is not a detections state (version 1).`);
  }
  return { ...initialDetectionsState(), ...value, pending: Array.isArray(value.pending) ? value.pending : [] };
}

export interface StoredDetectionsState {
  state: DetectionsState;
  etag: string;
}

/** Where the detections keep their state and write their alerts. */
export interface DetectionsStore {
  readState(): Promise<StoredDetectionsState | null>;
  /** Conditional write: `etag` null means "create, must not exist". Returns the new ETag; throws DetectionsStateConflictError on 409/412. */
  writeState(state: DetectionsState, etag: string | null): Promise<string>;
  /** One blob of JSON lines, overwritten when it exists (deterministic names make retries idempotent). */
  writeLines(name: string, lines: readonly string[]): Promise<void>;
}

/** Another writer changed the state since this run read it: this run lost its lock and stops. */
export class DetectionsStateConflictError extends Error {
  override readonly name = "DetectionsStateConflictError";
}
