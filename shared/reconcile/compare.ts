/**
 * The pure side of reconciliation: per UTC hour, the EventIds the Blob archive holds against
 * the rows Log Analytics holds, into missing rows (each with its likely cause), duplicates and
 * rows the archive does not know. No I/O, no clock: evidence and time come in.
 */

export const HOUR_MS = 3_600_000;
/** At most this many EventIds are listed per hour and kind; the counts are always exact. */
export const LISTED_IDS_PER_HOUR = 1000;

export type MissingCause = "not_yet_sent" | "dead_lettered" | "archive_only" | "dcr_transform" | "wrong_stream_or_table";

export const CAUSE_EXPLANATIONS: Readonly<Record<MissingCause, string>> = {
  not_yet_sent: "Log Analytics is behind the archive (see log_analytics_lag): these events are archived but not sent yet; they follow on the next runs.",
  archive_only:
    "These days were backfilled with --sinks archive: they are in the archive only, by choice. 'dbx-audit backfill start --from <day> --to <a later day> --sinks both' sends them from the archive to Log Analytics, once.",
  dead_lettered:
    "Log Analytics refused these records on their own: they are in dead-letter/logs-ingestion/ with the reason; fix it and run 'dbx-audit redrive'.",
  dcr_transform:
    "Some of the hour's events arrived and these did not, although the service accepted them (HTTP 204): a transformKql in the data collection rule that filters rows drops them. Make the rule's transform 'source' (or keep every row), then re-send the hour.",
  wrong_stream_or_table:
    "Log Analytics holds none of the window's events: the rule's stream goes to another table or workspace (outputStream / destinations), LOG_ANALYTICS_WORKSPACE_ID names another workspace than the rule's, or the table's plan keeps the rows out of this query (Auxiliary tables cannot take our dynamic columns). Check the DCR's dataFlows and the table's plan.",
};

export const DUPLICATE_EXPLANATION =
  "The Logs Ingestion API has no idempotency key: a run that stops between the service accepting a call and the state recording it re-sends that call (at most four calls of under 1 MB each, the documented re-send window). Query DatabricksAuditDeduped, or add '| summarize arg_max(TimeGenerated, *) by EventId'. Many more duplicates than that mean two deployments send the same events, or the state was reset.";

export const UNEXPECTED_EXPLANATION =
  "Log Analytics holds EventIds the archive does not: another deployment or tool writes the same table, or archive blobs were deleted.";

/** One hour's evidence: what the archive holds and what Log Analytics holds (rows per EventId). */
export interface HourEvidence {
  hourStartMs: number;
  archived: readonly string[];
  logAnalytics: ReadonlyMap<string, number>;
}

export interface ReconcileContext {
  /** EventIds in dead-letter blobs (refused by the service on their own). */
  deadLettered: ReadonlySet<string>;
  /**
   * The earliest event time Log Analytics has not been sent yet (from the export's state), when
   * it is behind the archive; undefined when it is caught up.
   */
  notSentFromMs?: number;
  /**
   * UTC days (YYYY-MM-DD) a backfill covers: "archive_only" for a day backfilled with --sinks
   * archive, "not_yet_sent" for one whose slice is not finished yet.
   */
  backfillDays?: ReadonlyMap<string, "archive_only" | "not_yet_sent">;
}

export interface MissingGroup {
  cause: MissingCause;
  count: number;
  /** The first LISTED_IDS_PER_HOUR of them, sorted. */
  eventIds: string[];
}

export interface HourReport {
  hour: string;
  archived: number;
  /** Distinct EventIds Log Analytics holds for the hour. */
  inLogAnalytics: number;
  missing: MissingGroup[];
  /** EventIds held more than once, with their row count. */
  duplicates: { eventId: string; rows: number }[];
  /** Extra rows the duplicates add. */
  duplicateRows: number;
  unexpected: { count: number; eventIds: string[] };
}

export interface ReconcileTotals {
  hours: number;
  archived: number;
  missing: number;
  missingByCause: Partial<Record<MissingCause, number>>;
  duplicateEventIds: number;
  duplicateRows: number;
  unexpected: number;
}

export interface ReconciliationReport {
  from: string;
  to: string;
  /** "clean" when every archived event is in Log Analytics exactly once and nothing else is. */
  status: "clean" | "differences";
  totals: ReconcileTotals;
  /** Only the hours with a difference. */
  hours: HourReport[];
  /** What each kind of difference found means and what to do. */
  explanations: string[];
}

export function reconcileHours(fromMs: number, toMs: number, evidence: readonly HourEvidence[], context: ReconcileContext): ReconciliationReport {
  const laTotal = evidence.reduce((n, hour) => n + hour.logAnalytics.size, 0);
  const totals: ReconcileTotals = {
    hours: evidence.length,
    archived: 0,
    missing: 0,
    missingByCause: {},
    duplicateEventIds: 0,
    duplicateRows: 0,
    unexpected: 0,
  };
  const hours: HourReport[] = [];
  for (const hour of [...evidence].sort((a, b) => a.hourStartMs - b.hourStartMs)) {
    const archived = new Set(hour.archived);
    totals.archived += archived.size;
    const byCause = new Map<MissingCause, string[]>();
    for (const id of archived) {
      if (hour.logAnalytics.has(id)) continue;
      const cause = causeOf(id, hour, context, laTotal);
      const ids = byCause.get(cause);
      if (ids) ids.push(id);
      else byCause.set(cause, [id]);
    }
    const duplicates = [...hour.logAnalytics].filter(([, rows]) => rows > 1).map(([eventId, rows]) => ({ eventId, rows }));
    duplicates.sort((a, b) => (a.eventId < b.eventId ? -1 : 1));
    const unexpected = [...hour.logAnalytics.keys()].filter((id) => !archived.has(id)).sort();
    const missing = [...byCause].map(([cause, ids]): MissingGroup => ({ cause, count: ids.length, eventIds: ids.sort().slice(0, LISTED_IDS_PER_HOUR) }));
    const duplicateRows = duplicates.reduce((n, d) => n + d.rows - 1, 0);
    for (const group of missing) {
      totals.missing += group.count;
      totals.missingByCause[group.cause] = (totals.missingByCause[group.cause] ?? 0) + group.count;
    }
    totals.duplicateEventIds += duplicates.length;
    totals.duplicateRows += duplicateRows;
    totals.unexpected += unexpected.length;
    if (missing.length > 0 || duplicates.length > 0 || unexpected.length > 0) {
      hours.push({
        hour: new Date(hour.hourStartMs).toISOString(),
        archived: archived.size,
        inLogAnalytics: hour.logAnalytics.size,
        missing,
        duplicates: duplicates.slice(0, LISTED_IDS_PER_HOUR),
        duplicateRows,
        unexpected: { count: unexpected.length, eventIds: unexpected.slice(0, LISTED_IDS_PER_HOUR) },
      });
    }
  }
  const explanations = [
    ...(Object.keys(totals.missingByCause) as MissingCause[]).map((cause) => `${cause}: ${CAUSE_EXPLANATIONS[cause]}`),
    ...(totals.duplicateRows > 0 ? [`duplicates: ${DUPLICATE_EXPLANATION}`] : []),
    ...(totals.unexpected > 0 ? [`unexpected: ${UNEXPECTED_EXPLANATION}`] : []),
  ];
  return {
    from: new Date(fromMs).toISOString(),
    to: new Date(toMs).toISOString(),
    status: hours.length === 0 ? "clean" : "differences",
    totals,
    hours,
    explanations,
  };
}

/** Dead-lettered and not-yet-sent events are known from the export's own records; otherwise the pattern tells. */
function causeOf(id: string, hour: HourEvidence, context: ReconcileContext, laTotal: number): MissingCause {
  if (context.deadLettered.has(id)) return "dead_lettered";
  const backfill = context.backfillDays?.get(new Date(hour.hourStartMs).toISOString().slice(0, 10));
  if (backfill) return backfill;
  if (context.notSentFromMs !== undefined && hour.hourStartMs + HOUR_MS > context.notSentFromMs) return "not_yet_sent";
  return laTotal === 0 ? "wrong_stream_or_table" : "dcr_transform";
}

/** The UTC hours that overlap [fromMs, toMs), as the start of each. */
export function hoursOf(fromMs: number, toMs: number): number[] {
  const hours: number[] = [];
  for (let hour = Math.floor(fromMs / HOUR_MS) * HOUR_MS; hour < toMs; hour += HOUR_MS) hours.push(hour);
  return hours;
}
