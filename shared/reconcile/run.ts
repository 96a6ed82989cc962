import { type BlobExportStore } from "../blobStore";
import { journalOf, logAnalyticsBacklog, type ExportState } from "../export/state";
import type { LogAnalyticsRows } from "../logAnalyticsQuery";
import { parseTimestampMicros } from "../timestamps";
import { HOUR_MS, hoursOf, reconcileHours, type HourEvidence, type ReconciliationReport } from "./compare";

/**
 * Reconciliation: what Log Analytics holds against the Blob archive (the record of truth), hour
 * by hour over a window, through the export's own store and the Logs Query API. The last
 * result's summary is kept next to the export state for the quick health check.
 */

export type ReconcileStore = Pick<
  BlobExportStore,
  "listPrefixes" | "listNames" | "readArchiveLines" | "listDeadLetters" | "readDeadLetters" | "readState" | "readJournal" | "writeReconciliation"
>;

/** The default window: the last day. */
export const DEFAULT_RECONCILE_WINDOW_MS = 24 * HOUR_MS;
/**
 * Log Analytics makes accepted rows queryable after a few minutes (usually 2-5): the default
 * window ends this long before now, so rows still being ingested are not reported missing.
 */
export const INGESTION_LATENCY_MS = 15 * 60_000;

/** Pending journal entries read to find the earliest event Log Analytics still waits for. */
const MAX_PENDING_JOURNALS = 200;
/** EventIds kept per hour and kind in the stored summary (the report itself lists more). */
const SUMMARY_IDS = 20;

export interface ReconcileWindow {
  fromMs: number;
  toMs: number;
  nowMs: number;
  /** The backfill's days in the window (BackfillStore.daysOf): their missing rows are explained by it. */
  backfillDays?: ReadonlyMap<string, "archive_only" | "not_yet_sent">;
}

export async function reconcile(store: ReconcileStore, logAnalytics: LogAnalyticsRows, window: ReconcileWindow): Promise<ReconciliationReport> {
  if (!(window.toMs > window.fromMs)) throw new RangeError("The reconciliation window is empty: its end must come after its start.");
  const workspaces = await store.listPrefixes("audit/");
  const evidence: HourEvidence[] = [];
  for (const hourStartMs of hoursOf(window.fromMs, window.toMs)) {
    const fromMs = Math.max(hourStartMs, window.fromMs);
    const toMs = Math.min(hourStartMs + HOUR_MS, window.toMs);
    const archived = await archivedEventIds(store, workspaces, hourStartMs, fromMs, toMs);
    const rows = await logAnalytics.eventIdRows(fromMs, toMs, window.nowMs);
    evidence.push({ hourStartMs, archived, logAnalytics: rows });
  }
  const deadLettered = new Set<string>();
  for (const name of await store.listDeadLetters()) for (const letter of await store.readDeadLetters(name)) deadLettered.add(letter.eventId);
  const notSentFromMs = await earliestNotSent(store, (await store.readState())?.state ?? null);
  const report = reconcileHours(window.fromMs, window.toMs, evidence, {
    deadLettered,
    ...(notSentFromMs !== undefined ? { notSentFromMs } : {}),
    ...(window.backfillDays ? { backfillDays: window.backfillDays } : {}),
  });
  await store.writeReconciliation(summaryOf(report, window.nowMs));
  return report;
}

/** The EventIds of the archive blobs of one hour, across workspaces, whose event_time is in [fromMs, toMs). */
async function archivedEventIds(store: ReconcileStore, workspaces: readonly string[], hourStartMs: number, fromMs: number, toMs: number): Promise<string[]> {
  const ids: string[] = [];
  for await (const event of archivedLines(store, workspaces, hourStartMs)) if (event.us >= fromMs * 1000 && event.us < toMs * 1000) ids.push(event.eventId);
  return ids;
}

/** Every line of the archive blobs of one hour, across workspaces, with its event_id and event_time (microseconds). */
export async function* archivedLines(
  store: Pick<ReconcileStore, "listNames" | "readArchiveLines">,
  workspaces: readonly string[],
  hourStartMs: number,
): AsyncGenerator<{ eventId: string; us: number; line: Uint8Array }> {
  const iso = new Date(hourStartMs).toISOString();
  const decoder = new TextDecoder();
  for (const workspace of workspaces) {
    for (const name of await store.listNames(`${workspace}date=${iso.slice(0, 10)}/hour=${iso.slice(11, 13)}/`)) {
      for (const line of (await store.readArchiveLines(name)) ?? []) {
        const event = JSON.parse(decoder.decode(line)) as { event_id?: unknown; event_time?: unknown };
        const us = parseTimestampMicros(String(event.event_time));
        if (typeof event.event_id !== "string" || us === undefined) throw new Error(`${name} holds a line without a valid event_id and event_time.`);
        yield { eventId: event.event_id, us, line };
      }
    }
  }
}

/** The earliest event time of the archive batches Log Analytics has not been sent yet, over every source. */
async function earliestNotSent(store: ReconcileStore, state: ExportState | null): Promise<number | undefined> {
  let earliestUs: number | undefined;
  for (const [name, source] of Object.entries(state?.sources ?? {})) {
    const backlog = logAnalyticsBacklog(source).batches;
    for (let seq = source.logAnalytics.nextBatch; seq < source.logAnalytics.nextBatch + Math.min(backlog, MAX_PENDING_JOURNALS); seq++) {
      const entry = await store.readJournal(journalOf(source, name), seq);
      if (entry && (earliestUs === undefined || entry.firstEventUs < earliestUs)) earliestUs = entry.firstEventUs;
    }
  }
  return earliestUs === undefined ? undefined : Math.floor(earliestUs / 1000);
}

/** The stored form of a result: the totals and, per hour with a difference, counts and a few EventIds. */
export interface ReconciliationSummary {
  version: 1;
  checkedAt: string;
  from: string;
  to: string;
  status: ReconciliationReport["status"];
  totals: ReconciliationReport["totals"];
  hours: {
    hour: string;
    missing: { cause: string; count: number; eventIds: string[] }[];
    duplicateRows: number;
    unexpected: number;
  }[];
  explanations: string[];
}

export function summaryOf(report: ReconciliationReport, nowMs: number): ReconciliationSummary {
  return {
    version: 1,
    checkedAt: new Date(nowMs).toISOString(),
    from: report.from,
    to: report.to,
    status: report.status,
    totals: report.totals,
    hours: report.hours.map((hour) => ({
      hour: hour.hour,
      missing: hour.missing.map((group) => ({ cause: group.cause, count: group.count, eventIds: group.eventIds.slice(0, SUMMARY_IDS) })),
      duplicateRows: hour.duplicateRows,
      unexpected: hour.unexpected.count,
    })),
    explanations: report.explanations,
  };
}

/**
 * The last reconciliation's summary (from `dbx-audit reconcile` or the full health check), read
 * from Blob without querying Log Analytics; null when none ran yet. A blob that is not such a
 * summary is an error, not a silent "clean".
 */
export async function readLastReconciliation(store: Pick<BlobExportStore, "readReconciliation">): Promise<ReconciliationSummary | null> {
  const stored = await store.readReconciliation();
  if (stored === null) return null;
  const summary = stored as Partial<ReconciliationSummary>;
  if (summary.version !== 1 || typeof summary.checkedAt !== "string" || (summary.status !== "clean" && summary.status !== "differences") || !summary.totals) {
    throw new Error("The reconciliation summary blob (_state/reconciliation.json) is malformed: delete it; the next reconciliation writes it again.");
  }
  return summary as ReconciliationSummary;
}
