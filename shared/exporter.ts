import { createHash, randomUUID } from "node:crypto";
import { setImmediate as yieldToEventLoop } from "node:timers/promises";
import type { EventKey } from "./auditQueries";
import type { AuditFilter, ExportStart, RedactionRule } from "./config";
import { resolveStart } from "./config";
import { ConcurrentRunError, DeliveryError, describeError } from "./errors";
import { compareKeys, initialState, type BatchKind, type ExportState, type PendingBatch } from "./exportState";
import { BatchBuilder, withOwnLine, type PreparedBatch, type PreparedEvent, type Preparation } from "./batching";
import { sentinelRecordFromLine, type SentinelAuditRecord } from "./sentinelRecord";
import { MICROS_PER_HOUR, hourIndexOf, microsToIso, utcDateOf } from "./timestamps";

/**
 * The export engine. No SDK, no environment, no clock of its own: the warehouse, the blob
 * store, Log Analytics and time come in through the ports below, which is what lets tests
 * kill it at any step and run it again.
 *
 * Protocol, per batch of events (in (event_time, event_id) order):
 *  1. write the batch's event_ids (its identity) to `_state/batches/<id>.ids` (done while the
 *     previous batch is being delivered);
 *  2. record the batch as `pending` in the state (conditional write);
 *  3. write the archive blobs (deterministic names: a retry overwrites), then send the Log
 *     Analytics calls, recording each confirmed call in the state as it is confirmed;
 *  4. commit: advance the cursor, count the events per hour and list the batch under each
 *     hour it touched, clear `pending` (conditional write).
 * A run that finds a `pending` batch re-reads exactly those events, rewrites its blobs and
 * sends only the calls not yet confirmed. Late rows (appearing behind the cursor) are found
 * by comparing per-hour counts with what was delivered, then diffing that hour's events with
 * the ids blobs of the batches listed under it: the ids blobs are the ledger, kept while their
 * hours are inside the late-row horizon.
 */

export interface AuditSource {
  /** Events with key > after and event_time < toUs, in key order, in chunks, prepared for the sinks (prepareEvents). */
  scan(filter: AuditFilter, after: EventKey, toUs: number, preparation: Preparation): AsyncIterable<PreparedEvent[]>;
  /** Event counts per hour index in [fromUs, toUs). */
  countByHour(filter: AuditFilter, fromUs: number, toUs: number): Promise<Map<number, number>>;
}

export interface StoredState {
  state: ExportState;
  etag: string;
}

export interface ExportStore {
  readState(): Promise<StoredState | null>;
  /** Conditional write: `etag` null means "create, must not exist". Returns the new ETag; throws StateConflictError on 409/412. */
  writeState(state: ExportState, etag: string | null): Promise<string>;
  /** Writes the lines (UTF-8, each ending in a newline) as one JSONL blob; returns the bytes stored. */
  writeArchive(name: string, lines: readonly Uint8Array[]): Promise<number>;
  writeIds(name: string, ids: readonly string[]): Promise<void>;
  readIds(name: string): Promise<string[] | null>;
  /** The union of several ids blobs. */
  readEventIds(names: readonly string[]): Promise<Set<string>>;
  deletePaths(names: readonly string[]): Promise<void>;
}

export class StateConflictError extends Error {
  override readonly name = "StateConflictError";
}

export interface IngestionSink {
  /** One Logs Ingestion call for records whose JSON sizes sum below 1,000,000 bytes. Throws when the call failed after the client's retries. */
  send(records: SentinelAuditRecord[]): Promise<void>;
}

export interface ExportLog {
  info(message: string): void;
  warn(message: string): void;
}

export interface ExportOptions {
  filter: AuditFilter;
  redaction: readonly RedactionRule[];
  start: ExportStart;
  settleDelayMs: number;
  lateHorizonMs: number;
  timeBudgetMs: number;
  /** At most this many events per batch (bounded memory; each batch is one commit). */
  batchEvents?: number;
  /** Full Log Analytics calls per batch (with Log Analytics on). */
  callsPerBatch?: number;
  lockTtlMs?: number;
  /** Log Analytics calls in flight at once. */
  uploadConcurrency?: number;
  /** Archive blobs written at once. */
  archiveConcurrency?: number;
}

export interface ExportDeps {
  source: AuditSource;
  store: ExportStore;
  ingestion?: IngestionSink;
  /** Milliseconds since the epoch. */
  now: () => number;
  log: ExportLog;
  onProgress?: (progress: ExportProgress) => void;
}

export interface ExportProgress {
  cursorUs: number;
  targetUs: number;
  eventsDelivered: number;
}

export interface ExportSummary {
  runId: string;
  /** The window this run read: from the saved cursor to now minus the settle delay. */
  windowStart: string;
  windowEnd: string;
  eventsRead: number;
  eventsDelivered: number;
  lateEventsDelivered: number;
  resumedBatch: boolean;
  blobsWritten: number;
  bytesArchived: number;
  recordsIngested: number;
  ingestionCalls: number;
  /** True when the run reached the window's end; false when it stopped for its time budget. */
  caughtUp: boolean;
  cursor: string;
  batches: number;
}

const DEFAULT_BATCH_EVENTS = 20_000;
const DEFAULT_CALLS_PER_BATCH = 4;
const MAX_ARCHIVE_BYTES_PER_BATCH = 8 * 1024 * 1024;
const DEFAULT_LOCK_TTL_MS = 5 * 60_000;

export async function runExport(options: ExportOptions, deps: ExportDeps): Promise<ExportSummary> {
  const run = new ExportRun(options, deps);
  return run.execute();
}

/** A prepared batch with its identity, its ids blob already written. */
interface ReadyBatch {
  id: string;
  kind: BatchKind;
  from: EventKey;
  prepared: PreparedBatch;
}

interface QueuedSave {
  mutate: (state: ExportState) => void;
  lock: "extend" | "release";
  resolve: () => void;
  reject: (error: unknown) => void;
}

class ExportRun {
  private readonly runId = randomUUID();
  private readonly startedAt: number;
  private state!: ExportState;
  private etag: string | null = null;
  private queuedSaves: QueuedSave[] = [];
  private writing = false;
  private readonly summary: ExportSummary;
  private readonly batchEvents: number;
  private readonly lockTtlMs: number;

  constructor(
    private readonly options: ExportOptions,
    private readonly deps: ExportDeps,
  ) {
    this.startedAt = deps.now();
    this.batchEvents = options.batchEvents ?? DEFAULT_BATCH_EVENTS;
    this.lockTtlMs = options.lockTtlMs ?? DEFAULT_LOCK_TTL_MS;
    this.summary = {
      runId: this.runId,
      windowStart: "",
      windowEnd: "",
      eventsRead: 0,
      eventsDelivered: 0,
      lateEventsDelivered: 0,
      resumedBatch: false,
      blobsWritten: 0,
      bytesArchived: 0,
      recordsIngested: 0,
      ingestionCalls: 0,
      caughtUp: false,
      cursor: "",
      batches: 0,
    };
  }

  async execute(): Promise<ExportSummary> {
    await this.acquireLock();
    const heartbeat = setInterval(() => void this.save(() => undefined).catch(() => undefined), Math.max(1000, this.lockTtlMs / 3));
    heartbeat.unref();
    let failure: unknown;
    try {
      if (this.state.pending) {
        this.summary.resumedBatch = true;
        await this.resumePending(this.state.pending);
      }
      const targetUs = (this.deps.now() - this.options.settleDelayMs) * 1000;
      this.summary.windowStart = microsToIso(this.state.cursor.timeUs);
      this.summary.windowEnd = microsToIso(Math.max(targetUs, this.state.cursor.timeUs));
      const finished = await this.scanTo(targetUs);
      if (finished) await this.deliverLateEvents();
      this.summary.caughtUp = finished;
      return this.summary;
    } catch (error) {
      failure = error;
      throw error;
    } finally {
      clearInterval(heartbeat);
      this.summary.cursor = `${microsToIso(this.state.cursor.timeUs)}${this.state.cursor.eventId ? ` / ${this.state.cursor.eventId}` : ""}`;
      await this.releaseLock(failure).catch((error: unknown) =>
        this.deps.log.warn(`Could not release the export lock (it expires by itself): ${describeError(error)}`),
      );
    }
  }

  private timeLeft(): boolean {
    return this.deps.now() - this.startedAt < this.options.timeBudgetMs;
  }

  // ---- state and lock -------------------------------------------------------------------

  private async acquireLock(): Promise<void> {
    const stored = await this.deps.store.readState();
    const now = this.deps.now();
    const base = stored?.state ?? initialState(resolveStart(this.options.start, now));
    if (base.lock && base.lock.expiresAtMs > now) {
      throw new ConcurrentRunError(
        `Another export run (${base.lock.runId}) holds the lock until ${new Date(base.lock.expiresAtMs).toISOString()}; this run did nothing. If no run is active, the lock expires by itself.`,
      );
    }
    if (base.lock)
      this.deps.log.warn(
        `Taking over the export lock of run ${base.lock.runId}, which expired without releasing it (that run probably died); its unfinished batch, if any, is finished first.`,
      );
    this.state = { ...base, lock: { runId: this.runId, expiresAtMs: now + this.lockTtlMs }, lastRunAt: new Date(now).toISOString() };
    try {
      this.etag = await this.deps.store.writeState(this.state, stored?.etag ?? null);
    } catch (error) {
      if (error instanceof StateConflictError) {
        throw new ConcurrentRunError("Another export run started at the same moment and won the state lock (HTTP 412/409); this run did nothing.");
      }
      throw error;
    }
  }

  /**
   * Conditional writes, one at a time; each also extends the lock, or releases it. Changes
   * asked for while a write is in flight go out together in the next write (a batch's
   * confirmed calls often land at once), and each caller's promise settles with the write
   * that carried its change.
   */
  private save(mutate: (state: ExportState) => void, lock: "extend" | "release" = "extend"): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.queuedSaves.push({ mutate, lock, resolve, reject });
      if (!this.writing) void this.writeQueuedSaves();
    });
  }

  private async writeQueuedSaves(): Promise<void> {
    this.writing = true;
    while (this.queuedSaves.length > 0) {
      const group = this.queuedSaves.splice(0);
      for (const { mutate } of group) mutate(this.state);
      const release = group.some((s) => s.lock === "release");
      this.state.lock = release ? null : { runId: this.runId, expiresAtMs: this.deps.now() + this.lockTtlMs };
      try {
        this.etag = await this.deps.store.writeState(this.state, this.etag);
        for (const { resolve } of group) resolve();
      } catch (error) {
        const failure =
          error instanceof StateConflictError
            ? new ConcurrentRunError(
                "The export state was changed by another run while this one held the lock (it must have expired); stopping without further writes.",
              )
            : error;
        for (const { reject } of group) reject(failure);
      }
    }
    this.writing = false;
  }

  private async releaseLock(failure: unknown): Promise<void> {
    if (failure instanceof ConcurrentRunError || this.etag === null) return;
    await this.save((state) => {
      const now = new Date(this.deps.now()).toISOString();
      if (failure === undefined) {
        state.lastSuccessAt = now;
        delete state.lastError;
      } else {
        state.lastFailureAt = now;
        state.lastError = describeError(failure);
      }
    }, "release");
  }

  // ---- scanning ---------------------------------------------------------------------------

  /** Delivers every event from the cursor to targetUs. False when the time budget ran out first. */
  private async scanTo(targetUs: number): Promise<boolean> {
    const from = this.state.cursor;
    if (targetUs <= from.timeUs) return true;
    const batches = this.batchesOf(this.deps.source.scan(this.options.filter, from, targetUs, this.preparation()))[Symbol.asyncIterator]();
    let next = batches.next();
    try {
      for (;;) {
        const result = await next;
        if (result.done) break;
        if (!this.timeLeft()) return false;
        next = batches.next(); // fetch and prepare the next batch while this one is delivered
        next.catch(() => undefined);
        await this.deliverNew(result.value);
        const last = result.value.prepared.events[result.value.prepared.events.length - 1]!;
        this.deps.onProgress?.({ cursorUs: last.timeUs, targetUs, eventsDelivered: this.summary.eventsDelivered });
      }
    } finally {
      await Promise.race([batches.return?.(undefined), sleep(5000)]).catch(() => undefined);
    }
    if (compareKeys(this.state.cursor, { timeUs: targetUs, eventId: "" }) < 0) {
      await this.save((state) => {
        state.cursor = { timeUs: targetUs, eventId: "" };
      });
    }
    this.deps.onProgress?.({ cursorUs: targetUs, targetUs, eventsDelivered: this.summary.eventsDelivered });
    return true;
  }

  /** How the source prepares events for this run's sinks. */
  private preparation(ingestionOn = this.deps.ingestion !== undefined): Preparation {
    return { redaction: this.options.redaction, ingestionOn };
  }

  /** Cuts the stream of prepared events into batches that fill whole Log Analytics calls. */
  private async *batchesOf(chunks: AsyncIterable<PreparedEvent[]>): AsyncGenerator<ReadyBatch> {
    const builder = this.batchBuilder();
    // Scan batches are contiguous: each starts (exclusive) where the previous one ended.
    let from = this.state.cursor;
    const ready = async (prepared: PreparedBatch): Promise<ReadyBatch> => {
      const batch = await this.ready("scan", from, prepared);
      const last = prepared.events[prepared.events.length - 1]!;
      from = { timeUs: last.timeUs, eventId: last.eventId };
      return batch;
    };
    for await (const chunk of chunks) {
      this.summary.eventsRead += chunk.length;
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

  private batchBuilder(): BatchBuilder {
    const limits = {
      maxEvents: this.batchEvents,
      callsPerBatch: this.options.callsPerBatch ?? DEFAULT_CALLS_PER_BATCH,
      maxArchiveBytes: MAX_ARCHIVE_BYTES_PER_BATCH,
    };
    return new BatchBuilder(limits, this.deps.ingestion !== undefined);
  }

  /** Names the batch and writes its ids blob: harmless if the run dies before recording it (a retry overwrites it). */
  private async ready(kind: BatchKind, from: EventKey, prepared: PreparedBatch): Promise<ReadyBatch> {
    const id = batchId(kind, from, prepared.events);
    await this.deps.store.writeIds(
      idsBlobName(id),
      prepared.events.map((e) => e.eventId),
    );
    return { id, kind, from, prepared };
  }

  private async deliverNew({ id, kind, from, prepared }: ReadyBatch): Promise<void> {
    const { events } = prepared;
    const last = events[events.length - 1]!;
    const pending: PendingBatch = {
      id,
      kind,
      from,
      through: { timeUs: last.timeUs, eventId: last.eventId },
      count: events.length,
      calls: prepared.calls ? prepared.calls.map(({ start, end }) => ({ start, end, sent: false })) : null,
    };
    await this.save((state) => {
      state.pending = pending;
    });
    await this.deliverPending(pending, events);
  }

  // ---- resuming a batch a previous run left pending -------------------------------------

  private async resumePending(pending: PendingBatch): Promise<void> {
    const ids = await this.deps.store.readIds(idsBlobName(pending.id));
    if (!ids) {
      throw new Error(
        `The pending batch ${pending.id} has no ids blob (${idsBlobName(pending.id)}); the state and the container disagree. See TROUBLESHOOTING.md, "stuck or stale state".`,
      );
    }
    const wanted = new Map(ids.map((id, index) => [id, index]));
    // Positions matter: the recorded Log Analytics calls are index ranges over the ids.
    const found = new Array<PreparedEvent | undefined>(ids.length);
    const filter: AuditFilter = { ...this.options.filter, services: "all", workspaceIds: [], includeAccountLevel: true };
    const preparation = this.preparation(this.deps.ingestion !== undefined && pending.calls !== null);
    for await (const chunk of this.deps.source.scan(filter, pending.from, pending.through.timeUs + 1, preparation)) {
      for (const event of chunk) {
        const index = wanted.get(event.eventId);
        if (index !== undefined && compareKeys(event, pending.through) <= 0) found[index] = withOwnLine(event);
      }
    }
    const missing = found.filter((e) => e === undefined).length;
    if (missing > 0)
      this.deps.log.warn(`Resuming batch ${pending.id}: ${missing} of its ${ids.length} events are no longer in the table (retention?); delivering the rest.`);
    this.deps.log.info(`Resuming batch ${pending.id} (${pending.kind}, ${ids.length} events) left pending by an earlier run.`);
    await this.deliverPending(pending, found);
  }

  // ---- delivering one batch -------------------------------------------------------------

  /** Delivers a recorded batch; `events` by position in the batch (undefined: gone from the table). */
  private async deliverPending(pending: PendingBatch, events: readonly (PreparedEvent | undefined)[]): Promise<void> {
    const present = events.filter((e): e is PreparedEvent => e !== undefined);
    // Archive first, then Log Analytics: while the archive is written no call is in flight, so
    // a crash there can never leave an accepted-but-unrecorded call behind.
    await this.writeArchive(pending, present);
    await this.sendCalls(pending, events);

    const perHour = new Map<number, number>();
    for (const event of present) {
      const hour = hourIndexOf(event.timeUs);
      perHour.set(hour, (perHour.get(hour) ?? 0) + 1);
    }
    const horizonStartHour = hourIndexOf(this.state.cursor.timeUs - this.options.lateHorizonMs * 1000) - 1;
    const unreferenced = new Set<string>();
    await this.save((state) => {
      for (const [hour, events] of perHour) {
        if (hour < horizonStartHour) continue;
        const entry = (state.deliveredByHour[hour] ??= { events: 0, batches: [] });
        entry.events += events;
        if (!entry.batches.includes(pending.id)) entry.batches.push(pending.id);
      }
      for (const [hour, entry] of Object.entries(state.deliveredByHour)) {
        if (Number(hour) >= horizonStartHour) continue;
        entry.batches.forEach((b) => unreferenced.add(b));
        delete state.deliveredByHour[hour];
      }
      const referenced = new Set(Object.values(state.deliveredByHour).flatMap((entry) => entry.batches));
      if (!referenced.has(pending.id)) unreferenced.add(pending.id);
      for (const b of referenced) unreferenced.delete(b);
      if (pending.kind === "scan" && compareKeys(pending.through, state.cursor) > 0) state.cursor = pending.through;
      state.pending = null;
      state.totalDelivered += present.length;
    });
    // Ids blobs of hours that left the late-row horizon are no longer needed.
    await this.deps.store.deletePaths([...unreferenced].map(idsBlobName)).catch(() => undefined);
    this.summary.batches += 1;
    this.summary.eventsDelivered += present.length;
    if (pending.kind === "late") this.summary.lateEventsDelivered += present.length;
  }

  private async writeArchive(pending: PendingBatch, events: readonly PreparedEvent[]): Promise<void> {
    const partitions = new Map<string, Uint8Array[]>();
    for (const event of events) {
      const name = archiveBlobName(event.workspaceId, event.timeUs, pending.id);
      let lines = partitions.get(name);
      if (!lines) partitions.set(name, (lines = []));
      lines.push(event.line);
    }
    const queue = [...partitions];
    const worker = async (): Promise<void> => {
      for (let item = queue.shift(); item; item = queue.shift()) {
        const [name, lines] = item;
        this.summary.bytesArchived += await this.deps.store.writeArchive(name, lines);
        this.summary.blobsWritten += 1;
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.options.archiveConcurrency ?? 4, queue.length) }, worker));
  }

  private async sendCalls(pending: PendingBatch, events: readonly (PreparedEvent | undefined)[]): Promise<void> {
    const ingestion = this.deps.ingestion;
    if (!ingestion || !pending.calls) return;
    const calls = pending.calls;
    const queue = calls.map((call, index) => ({ call, index })).filter(({ call }) => !call.sent);
    const failures: string[] = [];
    const worker = async (): Promise<void> => {
      for (let item = queue.shift(); item; item = queue.shift()) {
        const { call, index } = item;
        const records: SentinelAuditRecord[] = [];
        for (let i = call.start; i < call.end; i++) {
          const event = events[i];
          if (event) records.push(sentinelRecordFromLine(event.line));
        }
        try {
          if (records.length > 0) await ingestion.send(records);
        } catch (error) {
          failures.push(`call ${index + 1} (${records.length} records): ${describeError(error)}`);
          continue;
        }
        this.summary.ingestionCalls += records.length > 0 ? 1 : 0;
        this.summary.recordsIngested += records.length;
        await this.save(() => {
          calls[index] = { ...call, sent: true };
        });
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.options.uploadConcurrency ?? 4, queue.length) }, worker));
    if (failures.length > 0) {
      const sent = calls.filter((c) => c.sent).length;
      throw new DeliveryError(
        `Log Analytics did not accept ${failures.length} of ${calls.length} calls of batch ${pending.id} (${sent} confirmed and recorded; only the failed ones are re-sent by the next run): ${failures.slice(0, 3).join("; ")}${failures.length > 3 ? "; ..." : ""}`,
      );
    }
  }

  // ---- late rows --------------------------------------------------------------------------

  private async deliverLateEvents(): Promise<void> {
    const cursorUs = this.state.cursor.timeUs;
    const horizonStart = Math.floor((cursorUs - this.options.lateHorizonMs * 1000) / MICROS_PER_HOUR) * MICROS_PER_HOUR;
    const fromUs = Math.max(this.state.startUs, horizonStart);
    if (fromUs >= cursorUs) return;
    const counts = await this.deps.source.countByHour(this.options.filter, fromUs, cursorUs);
    const hours = [...counts.keys()].sort((a, b) => a - b);
    for (const hour of hours) {
      const inTable = counts.get(hour) ?? 0;
      const delivered = this.state.deliveredByHour[hour]?.events ?? 0;
      if (inTable < delivered) {
        this.deps.log.warn(
          `Hour ${microsToIso(hour * MICROS_PER_HOUR)} has ${inTable} events in the table but ${delivered} were delivered (rows removed, or the service/workspace filter changed).`,
        );
      }
      if (inTable <= delivered) continue;
      if (!this.timeLeft()) return;
      const ledger = await this.deps.store.readEventIds((this.state.deliveredByHour[hour]?.batches ?? []).map(idsBlobName));
      const hourStart = Math.max(hour * MICROS_PER_HOUR, fromUs);
      const hourEnd = Math.min((hour + 1) * MICROS_PER_HOUR, cursorUs);
      const builder = this.batchBuilder();
      for await (const chunk of this.deps.source.scan(this.options.filter, { timeUs: hourStart, eventId: "" }, hourEnd, this.preparation())) {
        this.summary.eventsRead += chunk.length;
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

export function batchId(kind: BatchKind, from: EventKey, events: readonly { eventId: string }[]): string {
  const hash = createHash("sha256").update(`${from.timeUs}|${from.eventId}`);
  if (kind === "late") for (const e of events) hash.update(`|${e.eventId}`);
  return `${kind}-${from.timeUs}-${hash.digest("hex").slice(0, 12)}`;
}

export function archiveBlobName(workspaceId: string | null, timeUs: number, id: string): string {
  const iso = microsToIso(timeUs);
  const workspace = workspaceId && /^[0-9A-Za-z_-]{1,64}$/.test(workspaceId) ? workspaceId : "unknown";
  return `audit/workspace=${workspace}/date=${utcDateOf(timeUs)}/hour=${iso.slice(11, 13)}/${id}.jsonl.gz`;
}

export function idsBlobName(id: string): string {
  return `_state/batches/${id}.ids`;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}
