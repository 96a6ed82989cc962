import type { BoundQuery } from "../auditQueries";
import { alertFromRow, type AlertLine } from "./alerts";
import { detectionQuery, type DetectionRow, type QueryRange } from "./sql";
import type { Detection } from "./types";

/** What the detections need from the warehouse: one query's rows (the app passes Warehouse, one session for a run). */
export interface QuerySource {
  all(query: BoundQuery): Promise<Record<string, unknown>[]>;
}

export interface Evaluation {
  detection: string;
  alerts: AlertLine[];
  warehouseMs: number;
}

/** Runs one detection over a range; the warehouse's error (a failing filter, a refused grant) is thrown to the caller. */
export async function evaluateDetection(
  source: QuerySource,
  detection: Detection,
  range: QueryRange,
  workspaceIds: readonly string[],
  clock: () => number,
): Promise<Evaluation> {
  const started = clock();
  const rows = await source.all(detectionQuery(detection, range, workspaceIds));
  const warehouseMs = Math.max(0, clock() - started);
  const alerts = rows.map((row) => alertFromRow(detection, row as unknown as DetectionRow));
  alerts.sort((a, b) => a.window_start.localeCompare(b.window_start) || a.alert_id.localeCompare(b.alert_id));
  return { detection: detection.name, alerts, warehouseMs };
}
