import { applyRedaction, type KeyedEvent } from "./auditEvent";
import type { RedactionRule } from "./config";
import { MAX_CALL_BYTES, sentinelRecordBytes, toSentinelRecord } from "./sentinelRecord";

/**
 * An event turned, once, into what the sinks take: the archive's JSON line (redacted) and,
 * when Log Analytics is on, the JSON size of its DatabricksAudit_CL record, which cuts the
 * calls. The record itself is built from the line when its call is sent
 * (sentinelRecordFromLine), so a batch waiting for delivery holds one string per event, not
 * object trees. Pure.
 */
export interface PreparedEvent {
  timeUs: number;
  eventId: string;
  workspaceId: string | null;
  line: string;
  /** 0 when Log Analytics is off. */
  recordBytes: number;
}

/** How events are prepared: redaction before any sink, and whether Log Analytics is on. */
export interface Preparation {
  redaction: readonly RedactionRule[];
  ingestionOn: boolean;
}

/** A Log Analytics call as an index range over a batch's events. */
export interface CallRange {
  start: number;
  end: number;
}

export interface PreparedBatch {
  events: PreparedEvent[];
  /** Null when Log Analytics is off. */
  calls: CallRange[] | null;
}

export function prepareEvent(keyed: KeyedEvent, { redaction, ingestionOn }: Preparation): PreparedEvent {
  const event = applyRedaction(keyed.event, redaction);
  const line = JSON.stringify(event);
  return {
    timeUs: keyed.timeUs,
    eventId: keyed.eventId,
    workspaceId: event.workspace_id,
    line,
    recordBytes: ingestionOn ? sentinelRecordBytes(event, toSentinelRecord(event), Buffer.byteLength(line, "utf8")) : 0,
  };
}

export interface BatchLimits {
  /** At most this many events. */
  maxEvents: number;
  /** With Log Analytics on: close a batch when one more event would need another call beyond this many (full calls). */
  callsPerBatch: number;
  /** With Log Analytics off: close a batch at this many bytes of archive lines. */
  maxArchiveBytes: number;
}

/**
 * Cuts the event stream into batches that fill whole Log Analytics calls: calls are cut the
 * way the Logs Ingestion client cuts them (record sizes summing below 1,000,000 bytes), and a
 * batch holds `callsPerBatch` of them, so only the run's very last call is partly empty.
 */
export class BatchBuilder {
  private events: PreparedEvent[] = [];
  private calls: CallRange[] = [];
  private callBytes = 0;
  private archiveBytes = 0;

  constructor(
    private readonly limits: BatchLimits,
    private readonly ingestionOn: boolean,
  ) {}

  /** Adds an event; returns the finished batch when the event did not fit (it then starts the next one). */
  add(event: PreparedEvent): PreparedBatch | undefined {
    let finished: PreparedBatch | undefined;
    if (this.events.length > 0 && !this.fits(event)) finished = this.flush();
    const index = this.events.length;
    this.events.push(event);
    this.archiveBytes += event.line.length;
    if (this.ingestionOn) {
      const current = this.calls[this.calls.length - 1];
      if (!current || (index > current.start && this.callBytes + event.recordBytes >= MAX_CALL_BYTES)) {
        this.calls.push({ start: index, end: index + 1 });
        this.callBytes = event.recordBytes;
      } else {
        current.end = index + 1;
        this.callBytes += event.recordBytes;
      }
    }
    return finished;
  }

  flush(): PreparedBatch | undefined {
    if (this.events.length === 0) return undefined;
    const batch: PreparedBatch = { events: this.events, calls: this.ingestionOn ? this.calls : null };
    this.events = [];
    this.calls = [];
    this.callBytes = 0;
    this.archiveBytes = 0;
    return batch;
  }

  private fits(event: PreparedEvent): boolean {
    if (this.events.length >= this.limits.maxEvents) return false;
    if (!this.ingestionOn) return this.archiveBytes + event.line.length <= this.limits.maxArchiveBytes;
    const opensCall = this.callBytes + event.recordBytes >= MAX_CALL_BYTES;
    return !(opensCall && this.calls.length >= this.limits.callsPerBatch);
  }
}
