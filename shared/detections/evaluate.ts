import type { BoundQuery } from "../auditQueries";
import { warehouseErrorKind } from "../databricks";
import { describeError } from "../errors";
import { explainWarehouseError } from "../remediation";
import type { AlertLine } from "./alerts";
import { combineSourceRows, type SourceRows } from "./combine";
import { detectionQuery, type DetectionRow, type QueryRange } from "./sql";
import type { Detection } from "./types";

/** What the detections need from the warehouse: one query's rows (the app passes Warehouse, one session for a run). */
export interface QuerySource {
  all(query: BoundQuery): Promise<Record<string, unknown>[]>;
}

/** A configured source (SQL warehouse, one per region) with its open session. */
export interface NamedSource {
  name: string;
  source: QuerySource;
}

export interface Evaluation {
  detection: string;
  alerts: AlertLine[];
  warehouseMs: number;
}

/** How one source answered one detection's query. */
export interface SourceAttempt {
  source: string;
  warehouseMs: number;
  /** Set when the source failed this query. */
  error?: string;
  /**
   * The failure is the warehouse's, not the detection's (unreachable, refused credentials or
   * grant, no answer in time): the source cannot answer the run's other detections either.
   */
  sourceDown?: boolean;
}

export interface SourcesEvaluation extends Evaluation {
  /** One per source asked, in the order asked. */
  attempts: SourceAttempt[];
}

/**
 * Runs one detection over a range on every given source, one after the other in configured
 * order, and puts their rows together (combine.ts): the first source that answers reads the
 * account-level events, the others leave them out (a per-region detection reads them on each:
 * combination.ts). A source that fails is recorded in `attempts` and the others go on; the
 * alerts are those of the sources that answered.
 */
export async function evaluateOverSources(
  sources: readonly NamedSource[],
  detection: Detection,
  range: QueryRange,
  workspaceIds: readonly string[],
  clock: () => number,
): Promise<SourcesEvaluation> {
  const parts: SourceRows[] = [];
  const attempts: SourceAttempt[] = [];
  for (const { name, source } of sources) {
    const started = clock();
    const query = detectionQuery(detection, range, workspaceIds, { sourceCount: sources.length, anEarlierSourceAnswered: parts.length > 0 });
    try {
      const rows = await source.all(query);
      parts.push({ source: name, rows: rows as unknown as DetectionRow[] });
      attempts.push({ source: name, warehouseMs: Math.max(0, clock() - started) });
    } catch (error) {
      const sourceDown = isSourceDown(error);
      // A warehouse that is down gets its remediation; a detection's SQL error stays as the warehouse said it.
      attempts.push({
        source: name,
        warehouseMs: Math.max(0, clock() - started),
        error: sourceDown ? explainWarehouseError(error) : describeError(error),
        sourceDown,
      });
    }
  }
  const warehouseMs = attempts.reduce((total, a) => total + a.warehouseMs, 0);
  return { detection: detection.name, alerts: combineSourceRows(detection, parts), warehouseMs, attempts };
}

/** Runs one detection over a range on one source; the warehouse's error (a failing filter, a refused grant) is thrown to the caller. */
export async function evaluateDetection(
  source: QuerySource,
  detection: Detection,
  range: QueryRange,
  workspaceIds: readonly string[],
  clock: () => number,
  sourceName = "default",
): Promise<Evaluation> {
  const started = clock();
  const rows = await source.all(detectionQuery(detection, range, workspaceIds));
  const warehouseMs = Math.max(0, clock() - started);
  return { detection: detection.name, alerts: combineSourceRows(detection, [{ source: sourceName, rows: rows as unknown as DetectionRow[] }]), warehouseMs };
}

/** A failure that says the warehouse cannot answer (any query), rather than that this detection's SQL is wrong. */
export function isSourceDown(error: unknown): boolean {
  return warehouseErrorKind(error) !== "sql";
}
