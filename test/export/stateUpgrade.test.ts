import { gzipSync } from "node:zlib";
import { afterAll, beforeAll, expect, it } from "vitest";
import type { SandboxStack } from "../../sandbox/stack";
import { BlobExportStore, STATE_BLOB } from "../../shared/blobStore";
import { batchBlobName } from "../../shared/export/state";
import { auditRow, isoMicros } from "../support/auditRows";
import { ALL_ROWS, containerFor, expectBothSinksOnce, exportOnce, startStack } from "../support/exportHarness";

/**
 * A state written by version 1 (one progress for both sinks, a batch blob of bare event_ids)
 * with a batch left pending: the first run of this version converts the state in place,
 * finishes the batch (cutting its Log Analytics calls, which version 1 did not record) and
 * goes on; each event reaches each sink once.
 */
let stack: SandboxStack;
const HOUR = 3600_000;

beforeAll(async () => {
  stack = await startStack();
});
afterAll(async () => {
  await stack?.close();
});

it("finishes a version-1 pending batch, converts the state and delivers every event once", async () => {
  const t0 = Date.parse("2026-02-01T00:00:00Z");
  const rows = Array.from({ length: 30 }, (_, i) => auditRow(isoMicros((t0 + i * 60_000) * 1000 + 5), { request_params: { pad: "p".repeat(3000) } }));
  await stack.warehouse.appendRows(rows);
  stack.logsIngestion.reset();
  const container = containerFor(stack, "state-upgrade");
  await container.createIfNotExists();
  const key = (i: number) => ({ timeUs: (t0 + i * 60_000) * 1000 + 5, eventId: rows[i]!.event_id as string });
  // Version 1 recorded the first ten events as a pending batch, and had sent nothing of it.
  const pendingId = "scan-v1-pending";
  const ids = rows.slice(0, 10).map((r) => r.event_id as string);
  const batch = gzipSync(ids.join("\n"));
  await container.getBlockBlobClient(batchBlobName(pendingId)).upload(batch, batch.length);
  const v1 = {
    version: 1,
    startUs: t0 * 1000,
    cursor: { timeUs: t0 * 1000, eventId: "" },
    deliveredByHour: {},
    pending: { id: pendingId, kind: "scan", from: { timeUs: t0 * 1000, eventId: "" }, through: key(9), count: 10, calls: null },
    lock: null,
    totalDelivered: 0,
  };
  const body = JSON.stringify(v1);
  await container.getBlockBlobClient(STATE_BLOB).upload(body, body.length);

  const summary = await exportOnce({
    stack,
    container,
    now: () => t0 + HOUR + 15 * 60_000,
    options: {
      filter: ALL_ROWS,
      redaction: [],
      start: { kind: "at", us: t0 * 1000 },
      settleDelayMs: 600_000,
      lateHorizonMs: 24 * HOUR,
      timeBudgetMs: 3600_000,
      batchEvents: 8,
      lockTtlMs: 60_000,
    },
  });
  expect(summary).toMatchObject({ resumedBatch: true, eventsDelivered: 30, logAnalytics: { status: "current" } });
  const state = (await new BlobExportStore(container).readState())!.state;
  expect(state.version).toBe(2);
  expect(Object.keys(state.sources)).toEqual(["default"]);
  expect(state.sources.default).toMatchObject({ pending: null, archivedEvents: 30 });
  await expectBothSinksOnce(
    stack,
    container,
    rows.map((r) => r.event_id as string),
  );
});
