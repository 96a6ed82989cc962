import { createHash, randomUUID } from "node:crypto";
import { applyRedaction, type KeyedEvent } from "./auditEvent";
import type { EventKey } from "./auditQueries";
import type { AuditFilter, ExportStart, RedactionRule } from "./config";
import { resolveStart } from "./config";
import { ConcurrentRunError, DeliveryError, describeError } from "./errors";
import { compareKeys, initialState, type BatchKind, type ExportState, type PendingBatch } from "./exportState";
import { planChunks, toSentinelRecord, type SentinelAuditRecord } from "./sentinelRecord";
import { MICROS_PER_HOUR, hourIndexOf, microsToIso, utcDateOf } from "./timestamps";

/**
 * The export engine. No SDK, no environment, no clock of its own: the warehouse, the blob
 * store, Log Analytics and time come in through the ports below, which is what lets tests
 * kill it at any step and run it again.
 *
 * Protocol, per batch of events (in (event_time, event_id) order):
 *  1. write the batch's event_ids (its identity) to `_state/batches/<id>.ids`;
 *  2. record the batch as `pending` in the state (conditional write);
 *  3. write the archive blobs (deterministic names: a retry overwrites) and send the Log
 *     Analytics calls, recording each confirmed call in the state as it is confirmed;
 *  4. write the per-hour ledger of delivered event_ids (for late rows);
 *  5. commit: advance the cursor, clear `pending` (conditional write).
 * A run that finds a `pending` batch re-reads exactly those events, rewrites its blobs and
 * sends only the calls not yet confirmed. Late rows (appearing behind the cursor) are found
 * by comparing per-hour counts with what was delivered, then diffing event_ids per hour.
 */

export interface AuditSource {
  /** Events with key > after and event_time < toUs, in key order, in chunks. */
  scan(filter: AuditFilter, after: EventKey, toUs: number): AsyncIterable<KeyedEvent[]>;
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
  writeArchive(name: string, jsonLines: string): Promise<number>;
  writeIds(name: string, ids: readonly string[]): Promise<void>;
  readIds(name: string): Promise<string[] | null>;
  readLedger(hourIndex: number): Promise<Set<string>>;
  deletePaths(names: readonly string[]): Promise<void>;
  pruneLedger(beforeHourIndex: number): Promise<void>;
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
  /** Events per batch (bounded memory; each batch is one commit). */
  batchEvents?: number;
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
const DEFAULT_LOCK_TTL_MS = 5 * 60_000;

export async function runExport(options: ExportOptions, deps: ExportDeps): Promise<ExportSummary> {
  const run = new ExportRun(options, deps);
  return run.execute();
}

interface PreparedBatch {
  pending: PendingBatch;
  events: KeyedEvent[];
}

class ExportRun {
  private readonly runId = randomUUID();
  private readonly startedAt: number;
  private state!: ExportState;
  private etag: string | null = null;
  private writeChain: Promise<unknown> = Promise.resolve();
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
      await this.releaseLock(failure).catch((error: unknown) => this.deps.log.warn(`Could not release the export lock (it expires by itself): ${describeError(error)}`));
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
    if (base.lock) this.deps.log.warn(`Taking over the export lock of run ${base.lock.runId}, which expired without releasing it (that run probably died); its unfinished batch, if any, is finished first.`);
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

  /** Serialized conditional writes; each also extends the lock. */
  private save(mutate: (state: ExportState) => void): Promise<void> {
    const next = this.writeChain.then(async () => {
      mutate(this.state);
      this.state.lock = { runId: this.runId, expiresAtMs: this.deps.now() + this.lockTtlMs };
      try {
        this.etag = await this.deps.store.writeState(this.state, this.etag);
      } catch (error) {
        if (error instanceof StateConflictError) {
          throw new ConcurrentRunError("The export state was changed by another run while this one held the lock (it must have expired); stopping without further writes.");
        }
        throw error;
      }
    });
    this.writeChain = next.catch(() => undefined);
    return next;
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
    });
    this.state.lock = null;
    this.etag = await this.deps.store.writeState(this.state, this.etag);
  }

  // ---- scanning ---------------------------------------------------------------------------

  /** Delivers every event from the cursor to targetUs. False when the time budget ran out first. */
  private async scanTo(targetUs: number): Promise<boolean> {
    const from = this.state.cursor;
    if (targetUs <= from.timeUs) return true;
    const batches = this.batchesOf(this.deps.source.scan(this.options.filter, from, targetUs))[Symbol.asyncIterator]();
    let next = batches.next();
    try {
      for (;;) {
        const result = await next;
        if (result.done) break;
        if (!this.timeLeft()) return false;
        next = batches.next(); // fetch the next batch while this one is delivered
        next.catch(() => undefined);
        await this.deliverNew("scan", result.value, targetUs);
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

  private async *batchesOf(chunks: AsyncIterable<KeyedEvent[]>): AsyncGenerator<KeyedEvent[]> {
    let batch: KeyedEvent[] = [];
    for await (const chunk of chunks) {
      this.summary.eventsRead += chunk.length;
      for (const event of chunk) {
        batch.push(event);
        if (batch.length >= this.batchEvents) {
          yield batch;
          batch = [];
        }
      }
    }
    if (batch.length > 0) yield batch;
  }

  private async deliverNew(kind: BatchKind, events: KeyedEvent[], targetUs: number): Promise<void> {
    const first = events[0]!;
    const last = events[events.length - 1]!;
    const from = kind === "scan" ? this.state.cursor : { timeUs: first.timeUs, eventId: "" };
    const id = batchId(kind, from, events);
    const redacted = events.map((e) => ({ ...e, event: applyRedaction(e.event, this.options.redaction) }));
    const prepared = prepareRecords(redacted, this.deps.ingestion !== undefined);
    const pending: PendingBatch = {
      id,
      kind,
      from,
      through: { timeUs: last.timeUs, eventId: last.eventId },
      count: events.length,
      calls: prepared.calls,
    };
    await this.deps.store.writeIds(idsBlobName(id), events.map((e) => e.eventId));
    await this.save((state) => {
      state.pending = pending;
    });
    await this.deliverPending({ pending, events: redacted }, prepared.records);
    if (kind === "scan") this.deps.onProgress?.({ cursorUs: last.timeUs, targetUs, eventsDelivered: this.summary.eventsDelivered });
  }

  // ---- resuming a batch a previous run left pending -------------------------------------

  private async resumePending(pending: PendingBatch): Promise<void> {
    const ids = await this.deps.store.readIds(idsBlobName(pending.id));
    if (!ids) {
      throw new Error(`The pending batch ${pending.id} has no ids blob (${idsBlobName(pending.id)}); the state and the container disagree. See TROUBLESHOOTING.md, "stuck or stale state".`);
    }
    const wanted = new Map(ids.map((id, index) => [id, index]));
    const found = new Array<KeyedEvent | undefined>(ids.length);
    const filter: AuditFilter = { ...this.options.filter, services: "all", workspaceIds: [], includeAccountLevel: true };
    for await (const chunk of this.deps.source.scan(filter, pending.from, pending.through.timeUs + 1)) {
      for (const event of chunk) {
        const index = wanted.get(event.eventId);
        if (index !== undefined && compareKeys(event, pending.through) <= 0) found[index] = event;
      }
    }
    const missing = found.filter((e) => e === undefined).length;
    if (missing > 0) this.deps.log.warn(`Resuming batch ${pending.id}: ${missing} of its ${ids.length} events are no longer in the table (retention?); delivering the rest.`);
    this.deps.log.info(`Resuming batch ${pending.id} (${pending.kind}, ${ids.length} events) left pending by an earlier run.`);
    // Keep index positions: the recorded Log Analytics calls are index ranges over the ids.
    const events = found.map((e) => (e ? { ...e, event: applyRedaction(e.event, this.options.redaction) } : undefined));
    const present = events.filter((e): e is KeyedEvent => e !== undefined);
    const records = this.deps.ingestion ? events.map((e) => (e ? toSentinelRecord(e.event) : undefined)) : [];
    await this.deliverPending({ pending, events: present }, records, events);
  }

  // ---- delivering one batch -------------------------------------------------------------

  /**
   * @param records Log Analytics records by position in the batch (undefined: event gone).
   * @param byPosition events by position when some are missing (resume); defaults to `batch.events`.
   */
  private async deliverPending(batch: PreparedBatch, records: (SentinelAuditRecord | undefined)[], byPosition?: (KeyedEvent | undefined)[]): Promise<void> {
    const { pending, events } = batch;
    // Archive first, then Log Analytics: while the archive is written no call is in flight, so
    // a crash there can never leave an accepted-but-unrecorded call behind.
    await this.writeArchive(pending, events);
    await this.sendCalls(pending, records);

    const byHour = new Map<number, string[]>();
    for (const event of byPosition ?? events) {
      if (!event) continue;
      const hour = hourIndexOf(event.timeUs);
      let ids = byHour.get(hour);
      if (!ids) byHour.set(hour, (ids = []));
      ids.push(event.eventId);
    }
    await Promise.all([...byHour].map(([hour, ids]) => this.deps.store.writeIds(ledgerBlobName(hour, pending.id), ids)));

    const horizonStartHour = hourIndexOf(this.state.cursor.timeUs - this.options.lateHorizonMs * 1000) - 1;
    await this.save((state) => {
      for (const [hour, ids] of byHour) state.deliveredByHour[hour] = (state.deliveredByHour[hour] ?? 0) + ids.length;
      for (const hour of Object.keys(state.deliveredByHour)) if (Number(hour) < horizonStartHour) delete state.deliveredByHour[hour];
      if (pending.kind === "scan" && compareKeys(pending.through, state.cursor) > 0) state.cursor = pending.through;
      state.pending = null;
      state.totalDelivered += events.length;
    });
    await this.deps.store.deletePaths([idsBlobName(pending.id)]).catch(() => undefined);
    this.summary.batches += 1;
    this.summary.eventsDelivered += events.length;
    if (pending.kind === "late") this.summary.lateEventsDelivered += events.length;
  }

  private async writeArchive(pending: PendingBatch, events: KeyedEvent[]): Promise<void> {
    const partitions = new Map<string, string[]>();
    for (const { event, timeUs } of events) {
      const name = archiveBlobName(event.workspace_id, timeUs, pending.id);
      let lines = partitions.get(name);
      if (!lines) partitions.set(name, (lines = []));
      lines.push(JSON.stringify(event));
    }
    const queue = [...partitions];
    const worker = async (): Promise<void> => {
      for (let item = queue.shift(); item; item = queue.shift()) {
        const [name, lines] = item;
        this.summary.bytesArchived += await this.deps.store.writeArchive(name, lines.join("\n") + "\n");
        this.summary.blobsWritten += 1;
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.options.archiveConcurrency ?? 4, queue.length) }, worker));
  }

  private async sendCalls(pending: PendingBatch, records: (SentinelAuditRecord | undefined)[]): Promise<void> {
    const ingestion = this.deps.ingestion;
    if (!ingestion || !pending.calls) return;
    const calls = pending.calls;
    const queue = calls.map((call, index) => ({ call, index })).filter(({ call }) => !call.sent);
    const failures: string[] = [];
    const worker = async (): Promise<void> => {
      for (let item = queue.shift(); item; item = queue.shift()) {
        const { call, index } = item;
        const chunk = records.slice(call.start, call.end).filter((r): r is SentinelAuditRecord => r !== undefined);
        try {
          if (chunk.length > 0) await ingestion.send(chunk);
        } catch (error) {
          failures.push(`call ${index + 1} (${chunk.length} records): ${describeError(error)}`);
          continue;
        }
        this.summary.ingestionCalls += chunk.length > 0 ? 1 : 0;
        this.summary.recordsIngested += chunk.length;
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
      const delivered = this.state.deliveredByHour[hour] ?? 0;
      if (inTable < delivered) {
        this.deps.log.warn(`Hour ${microsToIso(hour * MICROS_PER_HOUR)} has ${inTable} events in the table but ${delivered} were delivered (rows removed, or the service/workspace filter changed).`);
      }
      if (inTable <= delivered) continue;
      if (!this.timeLeft()) return;
      const ledger = await this.deps.store.readLedger(hour);
      const hourStart = Math.max(hour * MICROS_PER_HOUR, fromUs);
      const hourEnd = Math.min((hour + 1) * MICROS_PER_HOUR, cursorUs);
      let late: KeyedEvent[] = [];
      for await (const chunk of this.deps.source.scan(this.options.filter, { timeUs: hourStart, eventId: "" }, hourEnd)) {
        this.summary.eventsRead += chunk.length;
        for (const event of chunk) if (!ledger.has(event.eventId)) late.push(event);
        if (late.length >= this.batchEvents) {
          await this.deliverNew("late", late, cursorUs);
          late = [];
        }
      }
      if (late.length > 0) await this.deliverNew("late", late, cursorUs);
    }
    await this.deps.store.pruneLedger(hourIndexOf(horizonStart) - 1).catch((error: unknown) => this.deps.log.warn(`Could not prune the late-row ledger: ${describeError(error)}`));
  }
}

// ---- pure helpers ---------------------------------------------------------------------------

function prepareRecords(events: KeyedEvent[], ingestionOn: boolean): { records: SentinelAuditRecord[]; calls: PendingBatch["calls"] } {
  if (!ingestionOn) return { records: [], calls: null };
  const records = events.map((e) => toSentinelRecord(e.event));
  const sizes = records.map((r) => Buffer.byteLength(JSON.stringify(r), "utf8"));
  return { records, calls: planChunks(sizes).map(({ start, end }) => ({ start, end, sent: false })) };
}

export function batchId(kind: BatchKind, from: EventKey, events: readonly KeyedEvent[]): string {
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

export function ledgerBlobName(hourIndex: number, id: string): string {
  return `_state/ledger/${hourIndex}/${id}.ids`;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}
