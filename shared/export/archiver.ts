import { createHash } from "node:crypto";
import { setImmediate as yieldToEventLoop } from "node:timers/promises";
import type { EventKey } from "../auditQueries";
import { SINGLE_SOURCE_NAME, type AuditFilter, type RedactionRule } from "../config";
import { MICROS_PER_HOUR, hourIndexOf, microsToIso, utcDateOf } from "../timestamps";
import { BatchBuilder, cutCalls, withOwnLine, type BatchLimits, type PreparedBatch, type PreparedEvent, type Preparation } from "./batching";
import { boundedScan, type SliceLimits } from "./boundedScan";
import { mapConcurrently } from "../concurrency";
import type { LockedState } from "./lockedState";
import type { AuditSource, BatchRecord, ExportLog, ExportStore } from "./ports";
import { ACCOUNT_WORKSPACE_ID, type AccountEventClaims } from "./accountEvents";
import { batchBlobName, compareKeys, journalOf, type BatchKind, type PendingBatch, type SourceState } from "./state";

/**
 * The Blob archive's side of one source: it follows the warehouse. Per batch of events (in
 * (event_time, event_id) order):
 *  1. write the batch blob: its event_ids (its identity and the late-row ledger), its archive
 *     blob names and its Log Analytics calls (done while the previous batch is archived);
 *  2. record the batch as `pending` in the state, with the number it gets in commit order;
 *  3. write the archive blobs, once each (deterministic names: a retry finds its lines there, see BlobExportStore.writeArchive);
 *  4. with Log Analytics on, write the journal entry that lets it find the batch by number;
 *  5. commit: advance the cursor, count the events per hour and list the batch under each
 *     hour it touched, clear `pending`, count the batch as archived;
 *  6. hand the batch to Log Analytics, which follows on its own progress.
 * A run that finds a `pending` batch re-reads exactly those events and finishes it. Late rows
 * (appearing behind the cursor) are found by comparing per-hour counts with what was archived,
 * then diffing that hour's events with the ledger of the batches listed under it.
 */

export interface ArchiverOptions {
  source: string;
  filter: AuditFilter;
  redaction: readonly RedactionRule[];
  lateHorizonMs: number;
  batch: BatchLimits;
  slices?: SliceLimits;
  archiveConcurrency: number;
  ingestionOn: boolean;
  isRecoverable?: (error: unknown) => boolean;
  /** Account-level events are claimed here before they are archived, so that only one source archives each (accountEvents.ts). */
  claims?: AccountEventClaims;
}

export interface ArchiveProgress {
  eventsRead: number;
  eventsArchived: number;
  lateEventsArchived: number;
  /** Account-level events skipped because another source archived them. */
  duplicatesSkipped: number;
  blobsWritten: number;
  bytesArchived: number;
  batches: number;
  resumedBatch: boolean;
}

/** A batch committed to the archive, handed to Log Analytics while its events are still in memory. */
export interface ArchivedBatch {
  seq: number;
  id: string;
  /** The batch's events by position (undefined: gone from the table before a resumed batch was re-read). */
  events: readonly (PreparedEvent | undefined)[];
  calls: readonly { start: number; end: number }[];
}

/** A prepared batch with its identity, its batch blob already written. */
interface ReadyBatch {
  id: string;
  kind: BatchKind;
  from: EventKey;
  prepared: PreparedBatch;
}

export class SourceArchiver {
  readonly progress: ArchiveProgress = {
    eventsRead: 0,
    eventsArchived: 0,
    lateEventsArchived: 0,
    duplicatesSkipped: 0,
    blobsWritten: 0,
    bytesArchived: 0,
    batches: 0,
    resumedBatch: false,
  };

  constructor(
    private readonly options: ArchiverOptions,
    private readonly reader: AuditSource,
    private readonly store: ExportStore,
    private readonly locked: LockedState,
    private readonly log: ExportLog,
    private readonly timeLeft: () => boolean,
    private readonly onArchived: (batch: ArchivedBatch) => Promise<void> | void,
    private readonly onProgress?: (cursorUs: number) => void,
  ) {}

  private get sourceState(): SourceState {
    return this.locked.state.sources[this.options.source]!;
  }

  // ---- resuming a batch a previous run left pending -------------------------------------

  async resumePending(): Promise<void> {
    const pending = this.sourceState.pending;
    if (!pending) return;
    this.progress.resumedBatch = true;
    const record = await this.store.readBatch(pending.id);
    if (!record) {
      throw new Error(
        `The pending batch ${pending.id} has no batch blob (${batchBlobName(pending.id)}); the state and the container disagree. See TROUBLESHOOTING.md, "stuck or stale state".`,
      );
    }
    const wanted = new Map(record.ids.map((id, index) => [id, index]));
    // Positions matter: the batch's Log Analytics calls are index ranges over its ids.
    const found = new Array<PreparedEvent | undefined>(record.ids.length);
    const scan = boundedScan(this.reader, {
      filter: this.options.filter,
      after: pending.from,
      toUs: pending.through.timeUs + 1,
      preparation: this.preparation(),
      ...this.scanTuning(),
    });
    for await (const chunk of scan) {
      for (const event of chunk) {
        const index = wanted.get(event.eventId);
        if (index !== undefined && compareKeys(event, pending.through) <= 0) found[index] = withOwnLine(event);
      }
    }
    const missing = found.filter((e) => e === undefined).length;
    if (missing > 0)
      this.log.warn(
        `Resuming batch ${pending.id}: ${missing} of its ${record.ids.length} events are no longer in the table (retention, or the service/workspace filter changed); archiving the rest.`,
      );
    this.log.info(`Resuming batch ${pending.id} (${pending.kind}, ${record.ids.length} events) left pending by an earlier run.`);
    // A version-1 batch blob has no calls: cut them now, as the client would.
    const calls = record.calls ?? (this.options.ingestionOn ? cutCalls(found.map((e) => e?.recordBytes ?? 0)) : []);
    const present = found.filter((e): e is PreparedEvent => e !== undefined);
    const duplicates = await this.duplicatesOf(present);
    // Another source may have claimed some of its account-level events since: list only the blobs it writes.
    const blobs = blobNamesOf(withoutDuplicates(present, duplicates), pending.id);
    if (record.blobs && (blobs.length !== record.blobs.length || blobs.some((name, i) => name !== record.blobs![i]))) {
      await this.locked.confirmHeld();
      await this.store.writeBatch(pending.id, { ...record, blobs });
    }
    await this.archive(pending, found, calls, duplicates);
  }

  // ---- scanning ---------------------------------------------------------------------------

  /** Archives every event from the cursor to targetUs. False when the time budget ran out first. */
  async scanTo(targetUs: number): Promise<boolean> {
    const from = this.sourceState.cursor;
    if (targetUs <= from.timeUs) return true;
    const chunks = boundedScan(this.reader, {
      filter: this.options.filter,
      after: from,
      toUs: targetUs,
      preparation: this.preparation(),
      ...this.scanTuning(),
    });
    const batches = this.batchesOf(chunks)[Symbol.asyncIterator]();
    let next = batches.next();
    try {
      for (;;) {
        const result = await next;
        if (result.done) break;
        if (!this.timeLeft()) return false;
        next = batches.next(); // fetch and prepare the next batch while this one is archived
        next.catch(() => undefined);
        await this.deliverNew(result.value);
        const last = result.value.prepared.events[result.value.prepared.events.length - 1]!;
        this.onProgress?.(last.timeUs);
      }
    } finally {
      await Promise.race([batches.return?.(undefined), sleep(5000)]).catch(() => undefined);
    }
    if (compareKeys(this.sourceState.cursor, { timeUs: targetUs, eventId: "" }) < 0) {
      await this.locked.confirmHeld();
      await this.locked.save((state) => {
        state.sources[this.options.source]!.cursor = { timeUs: targetUs, eventId: "" };
      });
    }
    this.onProgress?.(targetUs);
    return true;
  }

  /** How the reader prepares events for this run's sinks. */
  private preparation(): Preparation {
    return { redaction: this.options.redaction, ingestionOn: this.options.ingestionOn };
  }

  private scanTuning(): { limits?: SliceLimits; isRecoverable?: (error: unknown) => boolean; onRecovered: (error: unknown) => void } {
    return {
      ...(this.options.slices ? { limits: this.options.slices } : {}),
      ...(this.options.isRecoverable ? { isRecoverable: this.options.isRecoverable } : {}),
      onRecovered: (error) =>
        this.log.warn(`A query of the audit table failed and is issued again from the last event read: ${String((error as Error)?.message ?? error)}`),
    };
  }

  /** Cuts the stream of prepared events into batches that fill whole Log Analytics calls. */
  private async *batchesOf(chunks: AsyncIterable<PreparedEvent[]>): AsyncGenerator<ReadyBatch> {
    const builder = new BatchBuilder(this.options.batch, this.options.ingestionOn);
    // Scan batches are contiguous: each starts (exclusive) where the previous one ended.
    let from = this.sourceState.cursor;
    const ready = async (prepared: PreparedBatch): Promise<ReadyBatch> => {
      const batch = await this.ready("scan", from, prepared);
      const last = prepared.events[prepared.events.length - 1]!;
      from = { timeUs: last.timeUs, eventId: last.eventId };
      return batch;
    };
    for await (const chunk of chunks) {
      this.progress.eventsRead += chunk.length;
      for (const event of chunk) {
        const full = builder.add(event);
        if (full) yield await ready(full);
      }
      // Let the sinks' network answers in between chunks: a chunk is a long stretch of CPU work.
      await yieldToEventLoop();
    }
    const last = builder.flush();
    if (last) yield await ready(last);
  }

  /** Names the batch and writes its batch blob: harmless if the run dies before recording it (a retry overwrites it). */
  private async ready(kind: BatchKind, from: EventKey, prepared: PreparedBatch): Promise<ReadyBatch> {
    const id = batchId(this.options.source, kind, from, prepared.events);
    await this.locked.confirmHeld();
    await this.store.writeBatch(id, this.recordOf(id, prepared, new Set()));
    return { id, kind, from, prepared };
  }

  /** The batch blob: every event_id (the ledger, duplicates included), the archive blobs it writes, its calls. */
  private recordOf(id: string, prepared: PreparedBatch, duplicates: ReadonlySet<string>): BatchRecord {
    return {
      ids: prepared.events.map((e) => e.eventId),
      blobs: blobNamesOf(withoutDuplicates(prepared.events, duplicates), id),
      calls: prepared.calls,
    };
  }

  /**
   * The account-level events among `events` this source must not archive: the ones another
   * source claimed, and, for a source added next to others that were already running, the
   * ones before it joined (those sources archived them already).
   */
  private async duplicatesOf(events: readonly PreparedEvent[]): Promise<Set<string>> {
    const claims = this.options.claims;
    if (!claims) return new Set();
    const joinedUs = this.sourceState.accountEventsFromUs;
    const skipped = new Set<string>();
    const toClaim: PreparedEvent[] = [];
    for (const event of events) {
      if (event.workspaceId !== ACCOUNT_WORKSPACE_ID) continue;
      if (joinedUs !== undefined && event.timeUs < joinedUs) skipped.add(event.eventId);
      else toClaim.push(event);
    }
    if (toClaim.length > 0) for (const id of await claims.claim(this.options.source, toClaim)) skipped.add(id);
    return skipped;
  }

  private async deliverNew({ id, kind, from, prepared }: ReadyBatch): Promise<void> {
    const { events } = prepared;
    // Claimed only now, just before the batch is recorded: a batch prepared ahead and never
    // delivered (the time budget ran out) holds no claim another source would wait for.
    const duplicates = await this.duplicatesOf(events);
    if (duplicates.size > 0) {
      await this.locked.confirmHeld();
      await this.store.writeBatch(id, this.recordOf(id, prepared, duplicates));
    }
    const last = events[events.length - 1]!;
    const source = this.options.source;
    const pending: PendingBatch = {
      id,
      kind,
      from,
      through: { timeUs: last.timeUs, eventId: last.eventId },
      count: events.length,
      seq: this.sourceState.archivedBatches,
    };
    await this.locked.confirmHeld();
    await this.locked.save((state) => {
      state.sources[source]!.pending = pending;
    });
    await this.archive(pending, events, prepared.calls ?? [], duplicates);
  }

  // ---- archiving one batch --------------------------------------------------------------

  /**
   * Archives a recorded batch and commits it; `events` by position in the batch (undefined:
   * gone from the table). `duplicates` are archived by another source: counted as covered by
   * this source's ledger, and neither archived nor sent here.
   */
  private async archive(
    pending: PendingBatch,
    events: readonly (PreparedEvent | undefined)[],
    calls: readonly { start: number; end: number }[],
    duplicates: ReadonlySet<string>,
  ): Promise<void> {
    const present = events.filter((e): e is PreparedEvent => e !== undefined);
    const delivered = withoutDuplicates(present, duplicates);
    await this.writeBlobs(pending, delivered);
    if (this.options.ingestionOn) {
      await this.locked.confirmHeld();
      await this.store.writeJournal(journalOf(this.sourceState, this.options.source), pending.seq, {
        batchId: pending.id,
        count: delivered.length,
        firstEventUs: delivered[0]?.timeUs ?? pending.from.timeUs,
      });
    }

    const perHour = new Map<number, number>();
    for (const event of present) {
      const hour = hourIndexOf(event.timeUs);
      perHour.set(hour, (perHour.get(hour) ?? 0) + 1);
    }
    const horizonStartHour = hourIndexOf(this.sourceState.cursor.timeUs - this.options.lateHorizonMs * 1000) - 1;
    const ref = ledgerRef(pending.id, pending.seq);
    const dropped = new Set<string>();
    const ingestionOn = this.options.ingestionOn;
    await this.locked.confirmHeld();
    await this.locked.save((state) => {
      const source = state.sources[this.options.source]!;
      for (const [hour, count] of perHour) {
        if (hour < horizonStartHour) continue;
        const entry = (source.deliveredByHour[hour] ??= { events: 0, batches: [] });
        entry.events += count;
        if (!entry.batches.includes(ref)) entry.batches.push(ref);
      }
      for (const [hour, entry] of Object.entries(source.deliveredByHour)) {
        if (Number(hour) >= horizonStartHour) continue;
        entry.batches.forEach((b) => dropped.add(b));
        delete source.deliveredByHour[hour];
      }
      if (![...perHour.keys()].some((hour) => hour >= horizonStartHour)) dropped.add(ref);
      for (const b of ledgerRefs(source)) dropped.delete(b);
      if (pending.kind === "scan" && compareKeys(pending.through, source.cursor) > 0) source.cursor = pending.through;
      source.pending = null;
      source.archivedBatches = pending.seq + 1;
      source.archivedEvents += delivered.length;
      const la = source.logAnalytics;
      if (!ingestionOn) {
        // Log Analytics off: nothing waits for it (if it is turned on later it starts from here).
        la.nextBatch = source.archivedBatches;
        la.sentCalls = [];
        la.doneEvents = source.archivedEvents;
      } else if (pending.sentCalls && la.nextBatch === pending.seq) {
        la.sentCalls = [...pending.sentCalls];
      }
    });
    // Batch blobs of hours that left the late-row horizon are no longer needed, unless Log
    // Analytics has yet to send them (it deletes those itself once it has).
    const nextToSend = this.sourceState.logAnalytics.nextBatch;
    const done = [...dropped].map(parseLedgerRef).filter((b) => b.seq === undefined || b.seq < nextToSend);
    await this.store.deleteBatches(done.map((b) => b.id)).catch(() => undefined);
    this.progress.batches += 1;
    this.progress.eventsArchived += delivered.length;
    this.progress.duplicatesSkipped += present.length - delivered.length;
    if (pending.kind === "late") this.progress.lateEventsArchived += delivered.length;
    const toSend = duplicates.size > 0 ? events.map((e) => (e && duplicates.has(e.eventId) ? undefined : e)) : events;
    await this.onArchived({ seq: pending.seq, id: pending.id, events: toSend, calls });
  }

  private async writeBlobs(pending: PendingBatch, events: readonly PreparedEvent[]): Promise<void> {
    const partitions = new Map<string, Uint8Array[]>();
    for (const event of events) {
      const name = archiveBlobName(event.workspaceId, event.timeUs, pending.id);
      let lines = partitions.get(name);
      if (!lines) partitions.set(name, (lines = []));
      lines.push(event.line);
    }
    await mapConcurrently([...partitions], this.options.archiveConcurrency, async ([name, lines]) => {
      await this.locked.confirmHeld();
      this.progress.bytesArchived += await this.store.writeArchive(name, lines);
      this.progress.blobsWritten += 1;
    });
  }

  // ---- late rows --------------------------------------------------------------------------

  async deliverLateEvents(): Promise<void> {
    const source = this.sourceState;
    const cursorUs = source.cursor.timeUs;
    const horizonStart = Math.floor((cursorUs - this.options.lateHorizonMs * 1000) / MICROS_PER_HOUR) * MICROS_PER_HOUR;
    const fromUs = Math.max(source.startUs, horizonStart);
    if (fromUs >= cursorUs) return;
    const counts = await this.reader.countByHour(this.options.filter, fromUs, cursorUs);
    const hours = [...counts.keys()].sort((a, b) => a - b);
    for (const hour of hours) {
      const inTable = counts.get(hour) ?? 0;
      const archived = this.sourceState.deliveredByHour[hour]?.events ?? 0;
      if (inTable < archived) {
        this.log.warn(
          `Hour ${microsToIso(hour * MICROS_PER_HOUR)} has ${inTable} events in the table but ${archived} were archived (rows removed, or the service/workspace filter changed).`,
        );
      }
      if (inTable <= archived) continue;
      if (!this.timeLeft()) return;
      const ledger = await this.store.readEventIds((this.sourceState.deliveredByHour[hour]?.batches ?? []).map((ref) => parseLedgerRef(ref).id));
      const hourStart = Math.max(hour * MICROS_PER_HOUR, fromUs);
      const hourEnd = Math.min((hour + 1) * MICROS_PER_HOUR, cursorUs);
      const builder = new BatchBuilder(this.options.batch, this.options.ingestionOn);
      const scan = boundedScan(this.reader, {
        filter: this.options.filter,
        after: { timeUs: hourStart, eventId: "" },
        toUs: hourEnd,
        preparation: this.preparation(),
        ...this.scanTuning(),
      });
      for await (const chunk of scan) {
        this.progress.eventsRead += chunk.length;
        for (const event of chunk) {
          if (ledger.has(event.eventId)) continue;
          const full = builder.add(withOwnLine(event));
          if (full) await this.deliverLate(full);
        }
      }
      const rest = builder.flush();
      if (rest) await this.deliverLate(rest);
    }
  }

  private async deliverLate(prepared: PreparedBatch): Promise<void> {
    await this.deliverNew(await this.ready("late", { timeUs: prepared.events[0]!.timeUs, eventId: "" }, prepared));
  }
}

// ---- pure helpers ---------------------------------------------------------------------------

/** The events this source archives: all but the account-level ones another source archives. */
function withoutDuplicates(events: readonly PreparedEvent[], duplicates: ReadonlySet<string>): readonly PreparedEvent[] {
  return duplicates.size > 0 ? events.filter((e) => !duplicates.has(e.eventId)) : events;
}

/** A batch's name: deterministic for a scan batch (its start key), and for a late batch its events too. Other sources than the first add their name. */
export function batchId(source: string, kind: BatchKind, from: EventKey, events: readonly { eventId: string }[]): string {
  const hash = createHash("sha256").update(`${from.timeUs}|${from.eventId}`);
  if (source !== SINGLE_SOURCE_NAME) hash.update(`|source=${source}`);
  if (kind === "late") for (const e of events) hash.update(`|${e.eventId}`);
  return `${kind}-${from.timeUs}-${hash.digest("hex").slice(0, 12)}`;
}

export function archiveBlobName(workspaceId: string | null, timeUs: number, id: string): string {
  const iso = microsToIso(timeUs);
  const workspace = workspaceId && /^[0-9A-Za-z_-]{1,64}$/.test(workspaceId) ? workspaceId : "unknown";
  return `audit/workspace=${workspace}/date=${utcDateOf(timeUs)}/hour=${iso.slice(11, 13)}/${id}.jsonl.gz`;
}

/** How the ledger lists a batch: its id and its number in commit order (version-1 entries have no number). */
export function ledgerRef(id: string, seq: number): string {
  return `${id}@${seq}`;
}

export function parseLedgerRef(ref: string): { id: string; seq?: number } {
  const at = ref.lastIndexOf("@");
  return at < 0 ? { id: ref } : { id: ref.slice(0, at), seq: Number(ref.slice(at + 1)) };
}

/** Every batch the source's late-row ledger still lists. */
export function ledgerRefs(source: SourceState): Set<string> {
  return new Set(Object.values(source.deliveredByHour).flatMap((entry) => entry.batches));
}

/** The archive blobs a batch's events go to, in the order they first appear. */
export function blobNamesOf(events: readonly PreparedEvent[], id: string): string[] {
  const names = new Set<string>();
  for (const event of events) names.add(archiveBlobName(event.workspaceId, event.timeUs, id));
  return [...names];
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}
