import type { EventKey } from "../auditQueries";
import type { AuditFilter } from "../config";
import type { SentinelAuditRecord } from "../sentinelRecord";
import type { CallRange, PreparedEvent, Preparation } from "./batching";
import type { ExportState } from "./state";
import type { ClaimsStore } from "./accountEvents";

/**
 * The export engine's ports: the warehouse, the blob store and Log Analytics come in through
 * these narrow interfaces (and time as a function), which is what lets tests kill a run at any
 * step, fail any call, and run it again.
 */

export interface ScanRequest {
  filter: AuditFilter;
  /** Exclusive lower key. */
  after: EventKey;
  /** Exclusive upper bound on event_time. */
  toUs: number;
  preparation: Preparation;
  /** At most this many rows (the warehouse sorts and returns no more). */
  limit?: number;
}

export interface AuditSource {
  /** Events with key > after and event_time < toUs, in key order, in chunks, prepared for the sinks (prepareEvents). */
  scan(request: ScanRequest): AsyncIterable<PreparedEvent[]>;
  /** Event counts per hour index in [fromUs, toUs). */
  countByHour(filter: AuditFilter, fromUs: number, toUs: number): Promise<Map<number, number>>;
}

export interface StoredState {
  state: ExportState;
  etag: string;
}

/** What a batch blob records: the batch's event_ids in order, its archive blobs, and its Log Analytics calls. */
export interface BatchRecord {
  ids: string[];
  /** Null for a batch written by version 1 (ids only). */
  blobs: string[] | null;
  /** Index ranges over `ids`; null when Log Analytics was off, or for a version-1 batch. */
  calls: CallRange[] | null;
}

/** Where Log Analytics finds the archive's batch number `seq` of a source. */
export interface JournalEntry {
  batchId: string;
  count: number;
  firstEventUs: number;
}

export interface DeadLetter {
  reason: string;
  status: number | null;
  eventId: string;
  record: SentinelAuditRecord;
}

export interface ExportStore extends ClaimsStore {
  readState(): Promise<StoredState | null>;
  /** Conditional write: `etag` null means "create, must not exist". Returns the new ETag; throws StateConflictError on 409/412. */
  writeState(state: ExportState, etag: string | null): Promise<string>;
  /** Writes the lines (UTF-8, each ending in a newline) as one JSONL blob; returns the bytes stored. */
  writeArchive(name: string, lines: readonly Uint8Array[]): Promise<number>;
  /** The lines of an archive blob (each ending in a newline); null when the blob is gone. */
  readArchiveLines(name: string): Promise<Uint8Array[] | null>;
  writeBatch(id: string, batch: BatchRecord): Promise<void>;
  readBatch(id: string): Promise<BatchRecord | null>;
  /** The union of several batches' event_ids. */
  readEventIds(batchIds: readonly string[]): Promise<Set<string>>;
  deleteBatches(batchIds: readonly string[]): Promise<void>;
  writeJournal(source: string, seq: number, entry: JournalEntry): Promise<void>;
  readJournal(source: string, seq: number): Promise<JournalEntry | null>;
  deleteJournal(source: string, seq: number): Promise<void>;
  /** Writes records Log Analytics refused as one JSONL blob under dead-letter/; returns its name. */
  writeDeadLetters(name: string, letters: readonly DeadLetter[]): Promise<string>;
}

export class StateConflictError extends Error {
  override readonly name = "StateConflictError";
}

export interface IngestionSink {
  /** One Logs Ingestion call for records whose JSON sizes sum below 1,000,000 bytes. Throws when the call failed after the client's retries. */
  send(records: SentinelAuditRecord[]): Promise<void>;
  /** Posts an empty array: the service checks the token, the role and the stream and ingests nothing. The HTTP status. */
  probe(): Promise<number>;
}

export interface ExportLog {
  info(message: string): void;
  warn(message: string): void;
}
