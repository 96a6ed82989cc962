import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { SandboxStack } from "../../sandbox/stack";
import { ConcurrentRunError, DeliveryError } from "../../shared/errors";
import type { ExportOptions, ExportSummary } from "../../shared/export/engine";
import { auditRow, isoMicros } from "../support/auditRows";
import {
  expectBothSinksOnce,
  ALL_ROWS,
  archivedEvents,
  containerFor,
  expectExactlyOnce,
  exportOnce,
  ingestedRecords,
  startStack,
} from "../support/exportHarness";

/** Overlapping runs and failing sinks: partial failures re-send only what failed. */
let stack: SandboxStack;
let testNumber = 0;

beforeAll(async () => {
  stack = await startStack();
});
afterAll(async () => {
  await stack?.close();
});

/** Each test gets its own day of rows and its own container. */
async function scenario(rowCount: number, bigEvery = 0) {
  testNumber += 1;
  const t0 = Date.parse("2026-04-01T00:00:00Z") + testNumber * 86_400_000;
  const rows = Array.from({ length: rowCount }, (_, i) =>
    auditRow(isoMicros((t0 + i * 1000) * 1000 + 7), bigEvery && i % bigEvery === 0 ? { request_params: { big: "y".repeat(30_000) } } : {}),
  );
  await stack.warehouse.appendRows(rows);
  stack.logsIngestion.reset();
  const options: ExportOptions = {
    filter: ALL_ROWS,
    redaction: [],
    start: { kind: "at", us: t0 * 1000 },
    settleDelayMs: 600_000,
    lateHorizonMs: 86_400_000,
    timeBudgetMs: 3600_000,
    batchEvents: 40,
    lockTtlMs: 60_000,
  };
  return { container: containerFor(stack, `faults-${testNumber}`), options, now: t0 + 3 * 3600_000, ids: rows.map((r) => r.event_id as string) };
}

async function expectDelivered(s: Awaited<ReturnType<typeof scenario>>): Promise<void> {
  await expectBothSinksOnce(stack, s.container, s.ids);
}

describe("overlapping runs", () => {
  it("lets one of two simultaneous runs win and the other lose cleanly, with nothing duplicated", async () => {
    const s = await scenario(150);
    const results = await Promise.allSettled([
      exportOnce({ stack, container: s.container, options: s.options, now: () => s.now }),
      exportOnce({ stack, container: s.container, options: s.options, now: () => s.now }),
    ]);
    expect(results.some((r) => r.status === "fulfilled")).toBe(true);
    for (const r of results) if (r.status === "rejected") expect(r.reason).toBeInstanceOf(ConcurrentRunError);
    // Whatever the interleaving, a later run finds nothing left to do.
    const after = await exportOnce({ stack, container: s.container, options: s.options, now: () => s.now });
    expect(after.eventsDelivered).toBe(0);
    await expectDelivered(s);
  });

  it("refuses to start while another run's lock is live", async () => {
    const s = await scenario(300);
    stack.warehouse.setFaults({ fetchDelayMs: 150 });
    const slow = exportOnce({ stack, container: s.container, options: s.options, now: () => s.now, warehouseOptions: { fetchRows: 20 } });
    await new Promise((r) => setTimeout(r, 400));
    await expect(exportOnce({ stack, container: s.container, options: s.options, now: () => s.now })).rejects.toBeInstanceOf(ConcurrentRunError);
    await slow;
    stack.warehouse.setFaults({});
    await expectDelivered(s);
  });
});

describe("Log Analytics failing some calls", () => {
  it("archives everything anyway, and the next run sends from the archive only the records of the calls that failed", async () => {
    const s = await scenario(120, 1);
    s.options.batchEvents = 100; // ~31 KB records: about four calls per batch
    stack.logsIngestion.setFaults({ failCallNumbers: [2, 3] });
    const failed = await exportOnce({ stack, container: s.container, options: s.options, now: () => s.now, ingestionOptions: { maxRetries: 0 } }).catch(
      (error: unknown) => error,
    );
    expect(failed).toBeInstanceOf(DeliveryError);
    const lagging = (failed as DeliveryError).summary as ExportSummary;
    expect(lagging.eventsDelivered).toBe(s.ids.length);
    expect(lagging.logAnalytics).toMatchObject({ status: "behind", remediation: expect.stringMatching(/next run catches up from the archive/) });
    expect(lagging.logAnalytics.eventsBehind).toBeGreaterThan(0);
    expectExactlyOnce(
      (await archivedEvents(s.container)).map((e) => e.event_id),
      s.ids,
      "blob, while Log Analytics lags",
    );
    const firstRun = stack.logsIngestion.stats();
    const received = ingestedRecords(stack).length;
    expect(received).toBeGreaterThan(0);
    expect(received).toBeLessThan(s.ids.length);

    stack.logsIngestion.setFaults({});
    const queriesBefore = stack.warehouse.stats().statements;
    const summary = await exportOnce({ stack, container: s.container, options: s.options, now: () => s.now });
    expect(summary.eventsDelivered).toBe(0);
    expect(summary.logAnalytics).toMatchObject({ status: "current", batchesBehind: 0 });
    expect(summary.logAnalytics.batchesReadBack).toBeGreaterThan(0);
    const secondRun = stack.logsIngestion.stats();
    // Only the failed calls' records were sent again, read back from the archive: the
    // warehouse was asked only for what is new (nothing) and the late-row counts.
    expect(secondRun.records - firstRun.records).toBe(s.ids.length - received);
    expect(stack.warehouse.stats().statements - queriesBefore).toBeLessThanOrEqual(3);
    await expectDelivered(s);
  });

  it("rides out a 429 storm (Retry-After honoured) within one run", async () => {
    const s = await scenario(60);
    stack.logsIngestion.setFaults({ throttle: { calls: 3, retryAfterSeconds: 1 } });
    const summary = await exportOnce({ stack, container: s.container, options: s.options, now: () => s.now, ingestionOptions: { maxRetries: 5 } });
    stack.logsIngestion.setFaults({});
    expect(summary.caughtUp).toBe(true);
    await expectDelivered(s);
  });

  it("rides out 5xx answers within one run", async () => {
    const s = await scenario(60);
    stack.logsIngestion.setFaults({ serverError: { calls: 2, status: 503 } });
    await exportOnce({ stack, container: s.container, options: s.options, now: () => s.now, ingestionOptions: { maxRetries: 4 } });
    stack.logsIngestion.setFaults({});
    await expectDelivered(s);
  });
});

describe("the warehouse misbehaving", () => {
  it("recovers from a socket dropped mid-fetch on the next run", async () => {
    const s = await scenario(200);
    stack.warehouse.setFaults({ dropSocketOnFetch: 3 });
    await expect(exportOnce({ stack, container: s.container, options: s.options, now: () => s.now, warehouseOptions: { fetchRows: 30 } })).rejects.toThrow();
    stack.warehouse.setFaults({});
    await exportOnce({ stack, container: s.container, options: s.options, now: () => s.now, warehouseOptions: { fetchRows: 30 } });
    await expectDelivered(s);
  });

  it("waits for a cold warehouse instead of failing", async () => {
    const s = await scenario(30);
    stack.warehouse.setFaults({ coldStartMs: 2500 });
    const summary = await exportOnce({ stack, container: s.container, options: s.options, now: () => s.now });
    stack.warehouse.setFaults({});
    expect(summary.eventsDelivered).toBe(30);
    await expectDelivered(s);
  });

  it("refreshes a managed identity token that expires mid-run", async () => {
    const s = await scenario(120);
    const before = stack.identity.requests().filter((r) => r.resource.startsWith("2ff814a6")).length;
    // The driver and the credential both renew a token 5 minutes before it expires: a 302-second
    // token enters that window 2 seconds after it is issued, and the run lasts longer than that.
    stack.identity.setTtlSeconds(302);
    stack.warehouse.setFaults({ fetchDelayMs: 400 });
    try {
      await exportOnce({ stack, container: s.container, options: s.options, now: () => s.now, warehouseAuth: "identity", warehouseOptions: { fetchRows: 12 } });
    } finally {
      stack.warehouse.setFaults({});
      stack.identity.setTtlSeconds(3600);
    }
    const tokensIssued = stack.identity.requests().filter((r) => r.resource.startsWith("2ff814a6")).length - before;
    expect(tokensIssued).toBeGreaterThan(1);
    await expectDelivered(s);
  });

  it("survives 503 answers to status polls", async () => {
    const s = await scenario(30);
    stack.warehouse.setFaults({ statusPoll503: 2 });
    await exportOnce({ stack, container: s.container, options: s.options, now: () => s.now });
    stack.warehouse.setFaults({});
    await expectDelivered(s);
  });
});
