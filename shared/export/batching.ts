import { applyRedaction, type KeyedEvent } from "../auditEvent";
import type { RedactionRule } from "../config";
import { MAX_CALL_BYTES, sentinelRecordBytes } from "../sentinelRecord";

/**
 * An event turned, once, into what the sinks take: the archive's JSON line (redacted) and,
 * when Log Analytics is on, the JSON size of its DatabricksAudit_CL record, which cuts the
 * calls. The record itself is built from the line when its call is sent
 * (sentinelRecordFromLine), so a batch waiting for delivery holds no object trees. Pure.
 */
export interface PreparedEvent {
  timeUs: number;
  eventId: string;
  workspaceId: string | null;
  /**
   * The archive's line: the redacted event's JSON in UTF-8, newline included. Bytes, not a
   * string: the lines of a handoff are views of one buffer (prepareEvents), which moves from
   * the reader thread to the export without a copy and stays off the JS heap while its batch
   * waits for delivery.
   */
  line: Uint8Array;
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

/**
 * Prepares events together: their lines are written one by one, as each is serialized, into
 * one buffer of the exact size (so a line's string is garbage at once instead of living on
 * until the handoff), and each event's line is a view of it. With `toEvent`, each item (a
 * driver's row) becomes its event only when its turn comes, so an event's object tree is
 * garbage as soon as its line is written, instead of a whole handoff's trees living (and being
 * copied by the garbage collector) until the last line is written.
 */
export function prepareEvents(events: readonly KeyedEvent[], preparation: Preparation): PreparedEvent[];
export function prepareEvents<T>(items: readonly T[], preparation: Preparation, toEvent: (item: T) => KeyedEvent): PreparedEvent[];
export function prepareEvents(items: readonly unknown[], { redaction, ingestionOn }: Preparation, toEvent?: (item: unknown) => KeyedEvent): PreparedEvent[] {
  const prepared = new Array<PreparedEvent>(items.length);
  const ends = new Array<number>(items.length);
  let used = 0;
  scratch ??= Buffer.allocUnsafeSlow(SCRATCH_BYTES);
  for (let i = 0; i < items.length; i++) {
    const keyed = toEvent ? toEvent(items[i]) : (items[i] as KeyedEvent);
    const event = applyRedaction(keyed.event, redaction);
    const json = JSON.stringify(event);
    // Room for the most UTF-8 the line can take (3 bytes per UTF-16 unit), so it is measured
    // by writing it, not counted first.
    const room = used + json.length * 3 + 1;
    if (room > scratch.length) scratch = grown(scratch, used, room);
    const jsonBytes = scratch.write(json, used, "utf8");
    scratch[used + jsonBytes] = NEWLINE;
    used += jsonBytes + 1;
    ends[i] = used;
    prepared[i] = {
      timeUs: keyed.timeUs,
      eventId: keyed.eventId,
      workspaceId: event.workspace_id,
      line: EMPTY_LINE,
      recordBytes: ingestionOn ? sentinelRecordBytes(event, jsonBytes) : 0,
    };
  }
  // A buffer of its own, not a slice of Node's shared pool: it can be moved to another thread.
  const lines = Buffer.allocUnsafeSlow(used);
  scratch.copy(lines, 0, 0, used);
  let start = 0;
  for (let i = 0; i < prepared.length; i++) {
    prepared[i]!.line = new Uint8Array(lines.buffer, start, ends[i]! - start);
    start = ends[i]!;
  }
  return prepared;
}

/**
 * The event with a copy of its line, for events picked out of a scan one here and one there
 * (late rows, a resumed batch): a view would keep its whole handoff buffer alive for one line.
 */
export function withOwnLine(event: PreparedEvent): PreparedEvent {
  return { ...event, line: event.line.slice() };
}

/** The buffers the events' lines are views of: what to hand over when passing them to another thread. */
export function lineBuffers(events: readonly PreparedEvent[]): ArrayBuffer[] {
  const buffers = new Set<ArrayBuffer>();
  for (const event of events) buffers.add(event.line.buffer as ArrayBuffer);
  return [...buffers];
}

const NEWLINE = 0x0a;
const EMPTY_LINE = new Uint8Array(0);
/** Where prepareEvents writes lines before copying them out; reused, and grown as needed. */
let scratch: Buffer<ArrayBuffer> | undefined;
const SCRATCH_BYTES = 1024 * 1024;

function grown(buffer: Buffer, used: number, needed: number): Buffer<ArrayBuffer> {
  const next = Buffer.allocUnsafeSlow(Math.max(needed, buffer.length * 2));
  buffer.copy(next, 0, 0, used);
  return next;
}

export interface BatchLimits {
  /** At most this many events. */
  maxEvents: number;
  /** With Log Analytics on: close a batch when one more event would need another call beyond this many (full calls). */
  callsPerBatch: number;
  /** With Log Analytics off: close a batch at this many bytes of archive lines. */
  maxArchiveBytes: number;
}

/** Cuts consecutive records into Log Analytics calls the way the Logs Ingestion client does: record sizes summing below MAX_CALL_BYTES. */
export class CallCutter {
  readonly calls: CallRange[] = [];
  private bytes = 0;

  /** Whether a record of this size would start a new call. */
  opensCall(recordBytes: number): boolean {
    return this.calls.length === 0 || this.bytes + recordBytes >= MAX_CALL_BYTES;
  }

  /** Adds the record at `index` (the next after the last one added). */
  add(index: number, recordBytes: number): void {
    const current = this.calls[this.calls.length - 1];
    if (!current || (index > current.start && this.bytes + recordBytes >= MAX_CALL_BYTES)) {
      this.calls.push({ start: index, end: index + 1 });
      this.bytes = recordBytes;
    } else {
      current.end = index + 1;
      this.bytes += recordBytes;
    }
  }
}

/** The calls for records of these sizes, in order. */
export function cutCalls(recordSizes: readonly number[]): CallRange[] {
  const cutter = new CallCutter();
  recordSizes.forEach((bytes, index) => cutter.add(index, bytes));
  return cutter.calls;
}

/**
 * Cuts the event stream into batches that fill whole Log Analytics calls: calls are cut the
 * way the Logs Ingestion client cuts them (record sizes summing below 1,000,000 bytes), and a
 * batch holds `callsPerBatch` of them, so only the run's very last call is partly empty.
 */
export class BatchBuilder {
  private events: PreparedEvent[] = [];
  private calls = new CallCutter();
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
    this.archiveBytes += event.line.byteLength;
    if (this.ingestionOn) this.calls.add(index, event.recordBytes);
    return finished;
  }

  flush(): PreparedBatch | undefined {
    if (this.events.length === 0) return undefined;
    const batch: PreparedBatch = { events: this.events, calls: this.ingestionOn ? this.calls.calls : null };
    this.events = [];
    this.calls = new CallCutter();
    this.archiveBytes = 0;
    return batch;
  }

  private fits(event: PreparedEvent): boolean {
    if (this.events.length >= this.limits.maxEvents) return false;
    if (!this.ingestionOn) return this.archiveBytes + event.line.byteLength <= this.limits.maxArchiveBytes;
    return !(this.calls.opensCall(event.recordBytes) && this.calls.calls.length >= this.limits.callsPerBatch);
  }
}
