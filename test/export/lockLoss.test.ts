import { RestError } from "@azure/storage-blob";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { SandboxStack } from "../../sandbox/stack";
import { BlobExportStore, STATE_BLOB } from "../../shared/blobStore";
import { LockLostError } from "../../shared/errors";
import type { ExportOptions } from "../../shared/export/engine";
import { StateConflictError, type ExportStore, type IngestionSink } from "../../shared/export/ports";
import type { ExportState } from "../../shared/export/state";
import type { SentinelAuditRecord } from "../../shared/sentinelRecord";
import { auditRow, isoMicros } from "../support/auditRows";
import {
  expectAtMostCallsResent,
  expectBothSinksOnce,
  overriding,
  ALL_ROWS,
  archivedEvents,
  containerFor,
  expectExactlyOnce,
  exportOnce,
  ingestedRecords,
  startStack,
} from "../support/exportHarness";

/**
 * Losing the lock is a failure, not a success: a run whose state write meets a 412 after it
 * held the lock stops every worker at once and sends nothing more; its own write that the
 * storage SDK retried after it had succeeded is recognised; a run that outlives its lock by
 * its own clock stops too.
 */
let stack: SandboxStack;
let scenarioNumber = 0;
const HOUR = 3600_000;

beforeAll(async () => {
  stack = await startStack();
});
afterAll(async () => {
  await stack?.close();
});

async function scenario(rowCount: number) {
  scenarioNumber += 1;
  const t0 = Date.parse("2026-09-01T00:00:00Z") + scenarioNumber * 86_400_000;
  // ~30 KB records: about 32 per Log Analytics call, so a batch of 200 needs several calls.
  const rows = Array.from({ length: rowCount }, (_, i) =>
    auditRow(isoMicros((t0 + i * 1000) * 1000 + 1), { request_params: { blob: "z".repeat(30_000), i: String(i) } }),
  );
  await stack.warehouse.appendRows(rows);
  stack.logsIngestion.reset();
  const options: ExportOptions = {
    filter: ALL_ROWS,
    redaction: [],
    start: { kind: "at", us: t0 * 1000 },
    settleDelayMs: 600_000,
    lateHorizonMs: 24 * HOUR,
    timeBudgetMs: 3600_000,
    batchEvents: 400,
    lockTtlMs: 60_000,
    uploadConcurrency: 4,
  };
  return { t0, ids: rows.map((r) => r.event_id as string), container: containerFor(stack, `lock-${scenarioNumber}`), options };
}

/** Another run takes the lock over: it writes the state blob with its own lock, as a run that found ours expired would. */
async function takeOver(store: BlobExportStore, expiresAtMs: number): Promise<void> {
  for (;;) {
    const current = (await store.readState())!;
    try {
      await store.writeState({ ...current.state, lock: { runId: "the-other-run", expiresAtMs }, writer: { runId: "the-other-run", write: 1 } }, current.etag);
      return;
    } catch (error) {
      // The run under test wrote in between: read again and take over that version.
      if (!(error instanceof StateConflictError)) throw error;
    }
  }
}

function slowSink(sink: IngestionSink, onSend: (records: SentinelAuditRecord[]) => Promise<void> | void): IngestionSink {
  return {
    send: async (records) => {
      await onSend(records);
      await new Promise((resolve) => setTimeout(resolve, 150));
      await sink.send(records);
    },
    probe: () => sink.probe(),
  };
}

describe("a 412 on a state write after the run held the lock", () => {
  it("stops every worker at once with four calls in flight, sends nothing more, and fails the run", async () => {
    const s = await scenario(300);
    const store = new BlobExportStore(s.container);
    let sends = 0;
    let lostAtSend = -1;
    const sendsAfterLoss: number[] = [];
    const wrapStore = (inner: ExportStore): ExportStore =>
      overriding(inner, {
        writeState: async (state, etag) => {
          try {
            return await inner.writeState(state, etag);
          } catch (error) {
            if (error instanceof StateConflictError && lostAtSend < 0) lostAtSend = sends;
            throw error;
          }
        },
      });
    const wrapSink = (sink: IngestionSink) =>
      slowSink(sink, async () => {
        sends += 1;
        if (lostAtSend >= 0) sendsAfterLoss.push(sends);
        // The second call: another run takes over while this call and three others are in flight.
        if (sends === 2) await takeOver(store, s.t0 + 10 * HOUR);
      });
    const run = exportOnce({ stack, container: s.container, options: s.options, now: () => s.t0 + 2 * HOUR, wrapStore, wrapSink });
    await expect(run).rejects.toBeInstanceOf(LockLostError);
    await expect(run).rejects.toThrow(/another run .*sent nothing more/is);
    expect(lostAtSend).toBeGreaterThan(0);
    expect(sendsAfterLoss).toEqual([]);
    // Nothing this run did after the loss: the other run's lock is still there, untouched.
    const after = (await store.readState())!.state;
    expect(after.lock?.runId).toBe("the-other-run");

    // The run that took over (here: the next run once that lock expired) finishes exactly once
    // in the archive; Log Analytics may get the in-flight calls again (at most four calls).
    await store.writeState({ ...after, lock: null }, (await store.readState())!.etag);
    await exportOnce({ stack, container: s.container, options: s.options, now: () => s.t0 + 2 * HOUR });
    expectExactlyOnce(
      (await archivedEvents(s.container)).map((e) => e.event_id),
      s.ids,
      "blob",
    );
    expectAtMostCallsResent(ingestedRecords(stack), s.ids, 4);
  });

  it("recognises its own write that the storage SDK retried after it had succeeded, and goes on", async () => {
    const s = await scenario(150);
    let writes = 0;
    const wrapStore = (inner: ExportStore): ExportStore =>
      overriding(inner, {
        writeState: async (state, etag) => {
          writes += 1;
          const written = await inner.writeState(state, etag);
          // The 4th write succeeded, but its answer was lost; the SDK's retry met its own new ETag: 412.
          if (writes === 4) throw new StateConflictError("The export state blob changed underneath this run (HTTP 412).");
          return written;
        },
      });
    const summary = await exportOnce({ stack, container: s.container, options: s.options, now: () => s.t0 + 2 * HOUR, wrapStore });
    expect(writes).toBeGreaterThan(4);
    expect(summary.caughtUp).toBe(true);
    await expectBothSinksOnce(stack, s.container, s.ids);
  });
});

describe("a run that outlives its lock", () => {
  it("stops when its own clock says the lock expired; the run that takes over finishes the work exactly once", async () => {
    const s = await scenario(300);
    let clock = s.t0 + 2 * HOUR;
    let sends = 0;
    const wrapSink = (sink: IngestionSink) =>
      slowSink(sink, () => {
        sends += 1;
        // The process stalls (or the clock moves) past the lock's expiry in the middle of the run.
        if (sends === 2) clock += 10 * 60_000;
      });
    const warnings: string[] = [];
    await expect(
      exportOnce({
        stack,
        container: s.container,
        options: s.options,
        now: () => clock,
        wrapSink,
        log: { info: () => undefined, warn: (m) => warnings.push(m) },
      }),
    ).rejects.toThrow(/could not extend its lock before it expired/);
    // Only the calls already on their way when the clock moved (at most the three others in
    // flight with call 2) went out; none was started after.
    expect(sends).toBeLessThanOrEqual(2 + s.options.uploadConcurrency! - 1);

    const summary = await exportOnce({ stack, container: s.container, options: s.options, now: () => clock + 60_000 });
    expect(summary.caughtUp).toBe(true);
    expectExactlyOnce(
      (await archivedEvents(s.container)).map((e) => e.event_id),
      s.ids,
      "blob",
    );
    expectAtMostCallsResent(ingestedRecords(stack), s.ids, 4);
  });

  it("logs a heartbeat that could not write, and goes on while the lock still holds", async () => {
    const s = await scenario(120);
    stack.warehouse.setFaults({ fetchDelayMs: 300 });
    let lastContent = "";
    let failed = 0;
    const wrapStore = (inner: ExportStore): ExportStore =>
      overriding(inner, {
        writeState: async (state: ExportState, etag) => {
          const content = JSON.stringify({ ...state, lock: null, writer: null, lastRunAt: null });
          // A heartbeat changes nothing but the lock: fail the first one, as a storage blip would.
          if (content === lastContent && failed === 0) {
            failed += 1;
            throw new RestError("Server busy (simulated)", { statusCode: 503 });
          }
          lastContent = content;
          return inner.writeState(state, etag);
        },
      });
    const warnings: string[] = [];
    try {
      await exportOnce({
        stack,
        container: s.container,
        options: { ...s.options, lockTtlMs: 3000, batchEvents: 20 },
        now: Date.now,
        wrapStore,
        warehouseOptions: { fetchRows: 10 },
        readerThread: false,
        log: { info: () => undefined, warn: (m) => warnings.push(m) },
      });
    } finally {
      stack.warehouse.setFaults({});
    }
    expect(failed).toBe(1);
    expect(warnings.some((w) => /heartbeat could not write the state: Server busy/.test(w))).toBe(true);
    expectExactlyOnce(
      (await archivedEvents(s.container)).map((e) => e.event_id),
      s.ids,
      "blob",
    );
    expect(STATE_BLOB).toBe("_state/export.json");
  });
});
