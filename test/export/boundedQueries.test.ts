import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { SandboxStack } from "../../sandbox/stack";
import type { ExportOptions } from "../../shared/export/engine";
import type { AuditSource, ScanRequest } from "../../shared/export/ports";
import { isExpiredResultLinkError } from "../../shared/databricks";
import { auditRow, isoMicros } from "../support/auditRows";
import { expectBothSinksOnce, overriding, ALL_ROWS, archivedEvents, containerFor, expectExactlyOnce, exportOnce, startStack } from "../support/exportHarness";

/**
 * Bounded work per query: every query reads a slice bounded by time and by rows, a resumed
 * batch is re-read with the run's own filter, and a query that times out or hangs fails the
 * run cleanly (the next run delivers everything exactly once).
 */
let stack: SandboxStack;
let scenarioNumber = 0;
const HOUR = 3600_000;
const DAY = 24 * HOUR;

beforeAll(async () => {
  stack = await startStack();
});
afterAll(async () => {
  await stack?.close();
});

async function scenario(times: number[]) {
  scenarioNumber += 1;
  const t0 = Date.parse("2025-01-01T00:00:00Z") + scenarioNumber * 60 * DAY;
  const rows = times.map((offsetMs) => auditRow(isoMicros((t0 + offsetMs) * 1000 + 5)));
  await stack.warehouse.appendRows(rows);
  stack.logsIngestion.reset();
  const last = Math.max(...times);
  const options: ExportOptions = {
    filter: ALL_ROWS,
    redaction: [],
    start: { kind: "at", us: t0 * 1000 },
    settleDelayMs: 600_000,
    lateHorizonMs: DAY,
    timeBudgetMs: 3600_000,
    batchEvents: 100,
    lockTtlMs: 60_000,
    slices: { rows: 60, initialSpanMs: HOUR, minSpanMs: 60_000, maxSpanMs: 7 * DAY },
  };
  return { t0, now: t0 + last + 2 * HOUR, ids: rows.map((r) => r.event_id as string), container: containerFor(stack, `bounded-${scenarioNumber}`), options };
}

function recording(requests: ScanRequest[]): (source: AuditSource) => AuditSource {
  return (source) => ({
    countByHour: (filter, from, to) => source.countByHour(filter, from, to),
    scan: (request) => {
      requests.push(request);
      return source.scan(request);
    },
  });
}

describe("bounded slices", () => {
  it("reads a backfill in queries bounded by rows and by time, crossing quiet weeks in few queries", async () => {
    // 300 events in one busy day, then 5 events spread over the next 40 days.
    const busy = Array.from({ length: 300 }, (_, i) => i * 4 * 60_000);
    const quiet = Array.from({ length: 5 }, (_, i) => 2 * DAY + i * 8 * DAY);
    const s = await scenario([...busy, ...quiet]);
    const requests: ScanRequest[] = [];
    const summary = await exportOnce({ stack, container: s.container, options: s.options, now: () => s.now, wrapSource: recording(requests) });
    expect(summary.caughtUp).toBe(true);
    expect(requests.length).toBeGreaterThan(5);
    for (const request of requests) {
      expect(request.limit).toBe(60);
      expect(request.toUs - request.after.timeUs).toBeLessThanOrEqual(7 * DAY * 1000);
    }
    // The quiet 40 days took a handful of queries, not one per hour.
    const quietQueries = requests.filter((r) => r.after.timeUs >= (s.t0 + 2 * DAY) * 1000);
    expect(quietQueries.length).toBeLessThan(12);
    await expectBothSinksOnce(stack, s.container, s.ids);
  });

  it("re-reads a resumed batch with the run's own filter, in bounded queries", async () => {
    const s = await scenario(Array.from({ length: 150 }, (_, i) => i * 10_000));
    const filter = { services: ["clusters"], workspaceIds: ["1234567890123456"], includeAccountLevel: false } as const;
    const options = { ...s.options, filter };
    let archiveWrites = 0;
    await exportOnce({
      stack,
      container: s.container,
      options,
      now: () => s.now,
      wrapStore: (store) =>
        overriding(store, {
          writeArchive: async (name, lines) => {
            archiveWrites += 1;
            if (archiveWrites === 2) throw new Error("the process died (simulated)");
            return store.writeArchive(name, lines);
          },
        }),
    }).catch(() => undefined);
    const requests: ScanRequest[] = [];
    const summary = await exportOnce({ stack, container: s.container, options, now: () => s.now + 2 * 60_000, wrapSource: recording(requests) });
    expect(summary.resumedBatch).toBe(true);
    expect(requests[0]!.filter).toEqual(filter);
    expect(requests[0]!.limit).toBe(60);
    expectExactlyOnce(
      (await archivedEvents(s.container)).map((e) => e.event_id),
      s.ids,
      "blob",
    );
  });
});

describe("query timeouts", () => {
  it("fails the run cleanly when the warehouse times a statement out, and the next run delivers everything", async () => {
    const s = await scenario(Array.from({ length: 40 }, (_, i) => i * 60_000));
    stack.warehouse.setFaults({ coldStartMs: 20_000 });
    try {
      await expect(
        exportOnce({ stack, container: s.container, options: s.options, now: () => s.now, warehouseOptions: { queryTimeoutMs: 1000, hangGraceMs: 5000 } }),
      ).rejects.toThrow(/timed out|did not answer/i);
    } finally {
      stack.warehouse.setFaults({});
    }
    expect(await archivedEvents(s.container)).toEqual([]);
    await exportOnce({ stack, container: s.container, options: s.options, now: () => s.now });
    expectExactlyOnce(
      (await archivedEvents(s.container)).map((e) => e.event_id),
      s.ids,
      "blob",
    );
  });

  it("fails the run cleanly when the warehouse stops answering (a hung query), instead of waiting for the function timeout", async () => {
    const s = await scenario(Array.from({ length: 40 }, (_, i) => i * 60_000));
    stack.warehouse.setFaults({ fetchDelayMs: 30_000 });
    const started = Date.now();
    try {
      await expect(
        exportOnce({ stack, container: s.container, options: s.options, now: () => s.now, warehouseOptions: { queryTimeoutMs: 1000, hangGraceMs: 1000 } }),
      ).rejects.toThrow(/did not answer within 2 s \(EXPORT_QUERY_TIMEOUT 1 s plus a grace period\)/);
    } finally {
      stack.warehouse.setFaults({});
    }
    expect(Date.now() - started).toBeLessThan(25_000);
    await exportOnce({ stack, container: s.container, options: s.options, now: () => s.now });
    expectExactlyOnce(
      (await archivedEvents(s.container)).map((e) => e.event_id),
      s.ids,
      "blob",
    );
  });
});

describe("a query that fails in a way a new query fixes", () => {
  it("issues the query again from the last event read when a CloudFetch link expired, and delivers everything once", async () => {
    const s = await scenario(Array.from({ length: 120 }, (_, i) => i * 30_000));
    let failed = false;
    const expiring = (source: AuditSource): AuditSource => ({
      countByHour: (filter, from, to) => source.countByHour(filter, from, to),
      async *scan(request) {
        let chunks = 0;
        for await (const chunk of source.scan(request)) {
          yield chunk;
          chunks += 1;
          if (!failed && chunks === 2) {
            failed = true;
            throw new Error("CloudFetch link has expired");
          }
        }
      },
    });
    const warnings: string[] = [];
    const summary = await exportOnce({
      stack,
      container: s.container,
      options: { ...s.options, isRecoverable: isExpiredResultLinkError },
      now: () => s.now,
      wrapSource: expiring,
      warehouseOptions: { fetchRows: 20 },
      readerThread: false,
      log: { info: () => undefined, warn: (m) => warnings.push(m) },
    });
    expect(failed).toBe(true);
    expect(summary.caughtUp).toBe(true);
    expect(warnings.some((w) => /issued again from the last event read: CloudFetch link has expired/.test(w))).toBe(true);
    await expectBothSinksOnce(stack, s.container, s.ids);
  });
});
