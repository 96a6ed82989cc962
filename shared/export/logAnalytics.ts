import { ensureError, describeError, statusOf } from "../errors";
import { sentinelRecordFromLine, type SentinelAuditRecord } from "../sentinelRecord";
import { parseLedgerRef, ledgerRefs, type ArchivedBatch } from "./archiver";
import type { LockedState } from "./lockedState";
import type { DeadLetter, ExportLog, ExportStore, IngestionSink } from "./ports";
import { journalOf, type SourceState } from "./state";
import { DEAD_LETTER_PREFIX } from "./redrive";

/**
 * Log Analytics' side of one source: it follows the archive, batch by batch in the archive's
 * commit order, on its own progress (the next batch's number and the calls of it the service
 * confirmed). A batch the archive just committed is sent from memory; one archived while Log
 * Analytics was behind (refused, unreachable, or slower than the archive) is read back from the
 * archive blobs, so catching up never re-reads the warehouse, and the archive never waits.
 *
 * A call refused for good because of the records in it (400, 413) is split until the records
 * the service refuses alone are found; those go to a dead-letter blob with the reason and the
 * rest are ingested. A failure that is not about records (401, 403, 404, or 429/5xx/socket
 * errors left after the client's retries) stops Log Analytics for this run: it lags, the state
 * says why and how to fix it, and the next run continues from the same call.
 */

export interface FollowerOptions {
  source: string;
  uploadConcurrency: number;
  /** Most archived batches held in memory for Log Analytics while it is behind the archive. */
  heldBatches?: number;
}

export interface FollowerProgress {
  recordsIngested: number;
  ingestionCalls: number;
  deadLettered: number;
  deadLetterBlobs: string[];
  batchesSent: number;
  batchesReadBack: number;
}

/** Why Log Analytics stopped for this run. */
export interface LogAnalyticsFailure {
  message: string;
  remediation: string;
  status: number | null;
}

interface BatchToSend {
  id: string;
  events: readonly ({ line: Uint8Array; eventId: string } | undefined)[];
  calls: readonly { start: number; end: number }[];
}

const DEFAULT_HELD_BATCHES = 2;
/** Longest the archive waits for a slot while Log Analytics follows live: past it, the batch is read back later. */
const MAX_PACING_MS = 30_000;

export class LogAnalyticsFollower {
  readonly progress: FollowerProgress = { recordsIngested: 0, ingestionCalls: 0, deadLettered: 0, deadLetterBlobs: [], batchesSent: 0, batchesReadBack: 0 };
  failure: LogAnalyticsFailure | undefined;
  private readonly held = new Map<number, ArchivedBatch>();
  /** Batches committed to the archive and known to this follower: the ones before this number may be sent. */
  private committed: number;
  /** Batches archived before this run: until it has sent them, it is catching up and the archive never waits for it. */
  private readonly backlogEnd: number;
  private slotFreed: (() => void) | undefined;
  private archiveDone = false;
  private wake: (() => void) | undefined;

  constructor(
    private readonly options: FollowerOptions,
    private readonly sink: IngestionSink,
    private readonly store: ExportStore,
    private readonly locked: LockedState,
    private readonly log: ExportLog,
    private readonly now: () => number,
    private readonly timeLeft: () => boolean,
  ) {
    this.committed = this.sourceState.archivedBatches;
    this.backlogEnd = this.committed;
  }

  private get sourceState(): SourceState {
    return this.locked.state.sources[this.options.source]!;
  }

  /**
   * The archive committed a batch: keep its events for sending. While Log Analytics follows
   * live and healthy, the archive is paced by it (waiting at most MAX_PACING_MS for a free
   * slot, so memory stays bounded); while it catches up, has failed, or is slower than that,
   * the batch is left to be read back from the archive later and the archive goes on.
   */
  async offer(batch: ArchivedBatch): Promise<void> {
    this.committed = Math.max(this.committed, batch.seq + 1);
    this.notify();
    const capacity = this.options.heldBatches ?? DEFAULT_HELD_BATCHES;
    const live = (): boolean => !this.failure && !this.locked.isLost && this.sourceState.logAnalytics.nextBatch >= this.backlogEnd;
    if (!live() || batch.seq < this.sourceState.logAnalytics.nextBatch) return;
    const deadline = Date.now() + MAX_PACING_MS;
    while (this.held.size >= capacity && live() && Date.now() < deadline) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.max(1, deadline - Date.now()));
        timer.unref();
        this.slotFreed = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.slotFreed = undefined;
    }
    if (this.held.size < capacity && live() && batch.seq >= this.sourceState.logAnalytics.nextBatch) this.held.set(batch.seq, batch);
    this.notify();
  }

  /** The archive will commit nothing more in this run. */
  archiveFinished(): void {
    this.archiveDone = true;
    this.notify();
  }

  /** Sends archived batches in order until it has caught up with an archive that finished, runs out of time, or fails. */
  async run(): Promise<void> {
    for (;;) {
      if (this.failure || this.locked.isLost) return;
      const next = this.sourceState.logAnalytics.nextBatch;
      for (const seq of this.held.keys()) if (seq < next) this.held.delete(seq);
      if (next >= this.committed) {
        if (this.archiveDone) return;
        await new Promise<void>((resolve) => (this.wake = resolve));
        continue;
      }
      if (!this.timeLeft()) return;
      const held = this.held.get(next);
      this.held.delete(next);
      this.slotFreed?.();
      const batch = held ?? (await this.readBack(next));
      if (!batch) return;
      await this.sendBatch(next, batch);
    }
  }

  private notify(): void {
    this.wake?.();
    this.wake = undefined;
  }

  /** A batch archived while Log Analytics was behind, read back from the archive in the batch's own order. */
  private async readBack(seq: number): Promise<BatchToSend | undefined> {
    const entry = await this.store.readJournal(journalOf(this.sourceState, this.options.source), seq);
    if (!entry) {
      this.stop(
        {
          message: `The archive's journal entry ${seq} of source ${this.options.source} is missing.`,
          remediation: "See TROUBLESHOOTING.md, 'Log Analytics behind'.",
          status: null,
        },
        null,
      );
      return undefined;
    }
    const record = await this.store.readBatch(entry.batchId);
    if (!record?.blobs || !record.calls) {
      this.log.warn(`Batch ${entry.batchId} has no record of its archive blobs or calls; Log Analytics skips it (its events are in the archive).`);
      return { id: entry.batchId, events: [], calls: [] };
    }
    const byId = new Map<string, Uint8Array>();
    let gone = 0;
    for (const name of record.blobs) {
      const lines = await this.store.readArchiveLines(name);
      if (!lines) {
        gone += 1;
        continue;
      }
      for (const line of lines) byId.set(eventIdOf(line), line);
    }
    if (gone > 0) this.log.warn(`${gone} archive blob(s) of batch ${entry.batchId} are gone (retention?); Log Analytics sends what is left.`);
    this.progress.batchesReadBack += 1;
    return {
      id: entry.batchId,
      events: record.ids.map((eventId) => {
        const line = byId.get(eventId);
        return line ? { line, eventId } : undefined;
      }),
      calls: record.calls,
    };
  }

  private async sendBatch(seq: number, batch: BatchToSend): Promise<void> {
    const sent = new Set(this.sourceState.logAnalytics.sentCalls);
    const queue = batch.calls.map((call, index) => ({ call, index })).filter(({ index }) => !sent.has(index));
    let deadLettered = 0;
    const worker = async (): Promise<void> => {
      for (let item = queue.shift(); item && !this.failure; item = queue.shift()) {
        const { call, index } = item;
        const records: SentinelAuditRecord[] = [];
        for (let i = call.start; i < call.end; i++) {
          const event = batch.events[i];
          if (event) records.push(sentinelRecordFromLine(event.line));
        }
        await this.locked.confirmHeld();
        let letters: DeadLetter[];
        try {
          letters = records.length > 0 ? await this.sendOrSplit(records, true) : [];
        } catch (error) {
          this.stop(classify(error), error);
          return;
        }
        await this.locked.confirmHeld();
        if (letters.length > 0) {
          const name = await this.store.writeDeadLetters(deadLetterBlobName(this.options.source, batch.id, index), letters);
          this.progress.deadLetterBlobs.push(name);
          this.log.warn(`Log Analytics refused ${letters.length} record(s) of batch ${batch.id} on their own (${letters[0]!.reason}); they are in ${name}.`);
        }
        deadLettered += letters.length;
        this.progress.ingestionCalls += records.length > letters.length ? 1 : 0;
        this.progress.recordsIngested += records.length - letters.length;
        this.progress.deadLettered += letters.length;
        await this.locked.save((state) => {
          const la = state.sources[this.options.source]!.logAnalytics;
          if (la.nextBatch === seq && !la.sentCalls.includes(index)) la.sentCalls.push(index);
          la.deadLettered += letters.length;
        });
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.options.uploadConcurrency, queue.length) }, worker));
    if (this.failure) {
      await this.recordFailure();
      return;
    }
    const events = batch.events.filter((e) => e !== undefined).length;
    await this.locked.confirmHeld();
    await this.locked.save((state) => {
      const source = state.sources[this.options.source]!;
      const la = source.logAnalytics;
      la.nextBatch = seq + 1;
      la.sentCalls = [];
      la.doneEvents += events;
      if (la.nextBatch >= source.archivedBatches) {
        delete la.laggingSince;
        delete la.lastError;
      }
    });
    this.progress.batchesSent += 1;
    // The journal entry is done with; the batch blob too, once the late-row ledger no longer lists it.
    await this.store.deleteJournal(journalOf(this.sourceState, this.options.source), seq).catch(() => undefined);
    const listed = [...ledgerRefs(this.sourceState)].some((ref) => parseLedgerRef(ref).id === batch.id);
    if (!listed) await this.store.deleteBatches([batch.id]).catch(() => undefined);
    if (deadLettered > 0) this.log.warn(`Batch ${batch.id}: ${deadLettered} record(s) dead-lettered, the rest ingested.`);
  }

  /**
   * Sends one call; when the service refuses it because of its records (400, 413), and an empty
   * post shows the rule and stream are fine, splits it in halves until each refused record is
   * alone. Returns the records refused alone, with the reason.
   */
  private async sendOrSplit(records: SentinelAuditRecord[], first: boolean): Promise<DeadLetter[]> {
    try {
      await this.sink.send(records);
      return [];
    } catch (error) {
      const status = statusOf(error);
      if (status !== 400 && status !== 413) throw error;
      if (first) {
        const probe = await this.sink.probe().catch(() => 0);
        if (probe !== 204) throw error;
      }
      if (records.length === 1) return [{ reason: describeError(error), status, eventId: records[0]!.EventId, record: records[0]! }];
      const half = Math.ceil(records.length / 2);
      await this.locked.confirmHeld();
      const left = await this.sendOrSplit(records.slice(0, half), false);
      await this.locked.confirmHeld();
      return [...left, ...(await this.sendOrSplit(records.slice(half), false))];
    }
  }

  private stop(failure: LogAnalyticsFailure, error: unknown): void {
    if (this.failure) return;
    if (error !== null && this.locked.isLost) throw ensureError(error);
    this.failure = failure;
    this.held.clear();
    this.slotFreed?.();
    this.log.warn(`Log Analytics stopped for this run and is behind the archive: ${failure.message} ${failure.remediation}`);
  }

  private async recordFailure(): Promise<void> {
    const failure = this.failure!;
    if (this.locked.isLost) return;
    await this.locked.save((state) => {
      const la = state.sources[this.options.source]!.logAnalytics;
      const at = new Date(this.now()).toISOString();
      la.laggingSince ??= at;
      la.lastError = { at, message: failure.message, remediation: failure.remediation };
    });
  }
}

/** What a failed call means for an operator, and what to do about it. */
export function classify(error: unknown): LogAnalyticsFailure {
  const status = statusOf(error);
  const detail = describeError(error);
  switch (status) {
    case 401:
      return {
        status,
        message: `Log Analytics refused the token (HTTP 401: ${detail}).`,
        remediation: "Check that the app's identity gets tokens for https://monitor.azure.com and that AZURE_CLIENT_ID names the identity that has the role.",
      };
    case 403:
      return {
        status,
        message: `Log Analytics refused the upload (HTTP 403: ${detail}).`,
        remediation:
          "Give the app's identity the Monitoring Metrics Publisher role on the data collection rule named by LOGS_INGESTION_RULE_ID (role assignments can take up to 30 minutes to apply); the next run catches up from the archive.",
      };
    case 404:
      return {
        status,
        message: `Log Analytics does not know the rule or stream (HTTP 404: ${detail}).`,
        remediation:
          "Check LOGS_INGESTION_ENDPOINT, LOGS_INGESTION_RULE_ID (the DCR's immutableId, which changes when the DCR is replaced) and LOGS_INGESTION_STREAM (declared in the DCR, e.g. Custom-DatabricksAudit); the next run catches up from the archive.",
      };
    case 400:
    case 413:
      return {
        status,
        message: `Log Analytics refused a call and an empty post to the rule failed too (HTTP ${status}: ${detail}).`,
        remediation:
          "Check that LOGS_INGESTION_STREAM is declared in the DCR with the DatabricksAudit_CL columns (infra/tables.json) and that the rule's transformation is valid; the next run catches up from the archive.",
      };
    default:
      return {
        status: status ?? null,
        message: `Log Analytics did not answer successfully after the client's retries (${detail}).`,
        remediation:
          status === 429
            ? "The rule is throttled (12,000 requests or 2 GB per minute per DCR): it clears by itself; the next run catches up from the archive."
            : "Usually transient (service or network): the next run catches up from the archive. If it persists, check the endpoint's network access (private link, firewall).",
      };
  }
}

/** The event_id of an archive line (the JSON of one event, event_id a plain string). */
function eventIdOf(line: Uint8Array): string {
  const event = JSON.parse(Buffer.from(line.buffer, line.byteOffset, line.byteLength).toString("utf8")) as { event_id: string };
  return event.event_id;
}

export function deadLetterBlobName(source: string, batchId: string, call: number): string {
  return `${DEAD_LETTER_PREFIX}source=${source}/${batchId}-call${call}.jsonl`;
}
