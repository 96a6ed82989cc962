import type { BlobExportStore } from "../blobStore";
import { DEAD_LETTER_PREFIX, redriveDeadLetters, type RedriveResult } from "../export/redrive";
import type { DeadLetter, IngestionSink } from "../export/ports";
import { sentinelRecordFromLine } from "../sentinelRecord";
import { HOUR_MS, type MissingCause, type ReconciliationReport } from "./compare";
import { archivedLines } from "./run";

/**
 * Re-sends, from the archive, the events Log Analytics lost after accepting them (the causes the
 * export cannot see: a filtering DCR transform, a stream that went elsewhere), once, through the
 * export's own machinery: the records are written as dead-letter blobs under
 * dead-letter/logs-ingestion/reconcile/ and re-driven, so a blob is deleted only after the service
 * accepted its records, a record refused again stays there with its reason for `dbx-audit
 * redrive`, and a run that stops half-way leaves the rest for the next. Events re-sent within
 * RESEND_QUIET_MS are not sent again: they may still be on their way into the table.
 * Missing events the export still sends (not_yet_sent) or that are dead-lettered already are
 * left to the export and to `dbx-audit redrive`.
 */

export const RESEND_PREFIX = `${DEAD_LETTER_PREFIX}reconcile/`;
/** An event re-sent this recently is not sent again (ingestion takes minutes; a DCR fix takes effect within about half an hour). */
export const RESEND_QUIET_MS = 2 * HOUR_MS;
/** Entries of the re-sent ledger older than this are forgotten. */
const RESENT_MEMORY_MS = 7 * 24 * HOUR_MS;
// archive_only days are the backfill's to send (backfill start --sinks both, from its own record of the day's batches).
const RESENDABLE: ReadonlySet<MissingCause> = new Set<MissingCause>(["dcr_transform", "wrong_stream_or_table"]);

export type ResendStore = Pick<
  BlobExportStore,
  "listPrefixes" | "listNames" | "readArchiveLines" | "listDeadLetters" | "readDeadLetters" | "writeDeadLetters" | "deletePaths" | "readResent" | "writeResent"
>;

export interface ResendResult extends RedriveResult {
  /** Missing events left alone because they were re-sent less than RESEND_QUIET_MS ago. */
  recentlyResent: number;
}

export async function resendMissing(store: ResendStore, sink: IngestionSink, report: ReconciliationReport, nowMs: number): Promise<ResendResult> {
  const resent = await store.readResent();
  for (const [id, at] of Object.entries(resent)) if (!(nowMs - Date.parse(at) < RESENT_MEMORY_MS)) delete resent[id];
  let recentlyResent = 0;
  const workspaces = await store.listPrefixes("audit/");
  const nowIso = new Date(nowMs).toISOString();
  for (const hour of report.hours) {
    const wanted = new Set<string>();
    for (const group of hour.missing) {
      if (!RESENDABLE.has(group.cause)) continue;
      if (group.eventIds.length < group.count) {
        throw new Error(`Hour ${hour.hour} misses ${group.count} events, more than one report lists: re-send shorter windows (--since/--until).`);
      }
      for (const id of group.eventIds) {
        if (resent[id] !== undefined && nowMs - Date.parse(resent[id]) < RESEND_QUIET_MS) recentlyResent += 1;
        else wanted.add(id);
      }
    }
    if (wanted.size === 0) continue;
    const letters: DeadLetter[] = [];
    for await (const event of archivedLines(store, workspaces, Date.parse(hour.hour))) {
      if (!wanted.delete(event.eventId)) continue;
      letters.push({
        reason: "missing from Log Analytics (dbx-audit reconcile --resend)",
        status: null,
        eventId: event.eventId,
        record: sentinelRecordFromLine(event.line),
      });
    }
    // Recorded before the blob is written: a run that stops in between never sends these twice.
    for (const letter of letters) resent[letter.eventId] = nowIso;
    await store.writeResent(resent);
    await store.writeDeadLetters(`${RESEND_PREFIX}hour=${hour.hour.slice(0, 13)}-${nowMs}.jsonl`, letters);
  }
  // Only this command's blobs (and any a stopped run left): the export's own dead letters wait for `dbx-audit redrive`.
  const result = await redriveDeadLetters(
    {
      listDeadLetters: async () => (await store.listDeadLetters()).filter((name) => name.startsWith(RESEND_PREFIX)),
      readDeadLetters: (name) => store.readDeadLetters(name),
      writeDeadLetters: (name, letters) => store.writeDeadLetters(name, letters),
      deletePaths: (names) => store.deletePaths(names),
    },
    sink,
  );
  return { ...result, recentlyResent };
}
