import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { SandboxStack } from "../../sandbox/stack";
import type { ExportOptions } from "../../shared/exporter";
import { auditRow, isoMicros } from "../support/auditRows";
import { ALL_ROWS, CrashSwitch, SimulatedCrash, archivedEvents, containerFor, expectExactlyOnce, exportOnce, ingestedRecords, startStack } from "../support/exportHarness";

/**
 * The process dies at every step of a run (after each fetch, blob write, Log Analytics call,
 * before and after each state write), then runs again: every event reaches each sink exactly once.
 */
let stack: SandboxStack;
const T0 = Date.parse("2026-03-01T10:00:00Z");
const NOW = T0 + 3 * 3600_000;
const LOCK_TTL = 60_000;
const expectedIds: string[] = [];

const options: ExportOptions = {
  filter: ALL_ROWS,
  redaction: [],
  start: { kind: "at", us: T0 * 1000 },
  settleDelayMs: 10 * 60_000,
  lateHorizonMs: 24 * 3600_000,
  timeBudgetMs: 3600_000,
  batchEvents: 25,
  lockTtlMs: LOCK_TTL,
  // One call at a time: with several in flight, a crash would leave the others' fate unknown.
  uploadConcurrency: 1,
};

beforeAll(async () => {
  stack = await startStack();
  const rows = [];
  for (let i = 0; i < 70; i++) {
    // Several events per microsecond, across two hours, some big enough that a batch needs several Log Analytics calls.
    const us = (T0 + Math.floor(i / 3) * 150_000) * 1000 + (i % 3 === 0 ? 1 : 0);
    rows.push(auditRow(isoMicros(us), i % 5 === 0 ? { request_params: { blob: "x".repeat(30_000), i: String(i) } } : {}));
  }
  await stack.warehouse.appendRows(rows);
  expectedIds.push(...rows.map((r) => r.event_id as string));
});

afterAll(async () => {
  await stack?.close();
});

describe("a run that dies at any step, then runs again", () => {
  it("delivers every event exactly once to Blob and Log Analytics whatever step it died at", async () => {
    const reference = new CrashSwitch();
    stack.logsIngestion.reset();
    await exportOnce({ stack, container: containerFor(stack, "crash-reference"), options, now: () => NOW, crash: reference });
    const stepCount = reference.steps.length;
    expect(stepCount).toBeGreaterThan(30);
    expect(reference.steps.filter((s) => s === "before logsIngestionCall").length).toBeGreaterThan(3);

    for (let crashAt = 1; crashAt <= stepCount; crashAt++) {
      stack.logsIngestion.reset();
      const container = containerFor(stack, `crash-at-${crashAt}`);
      const sw = new CrashSwitch(crashAt);
      await expect(exportOnce({ stack, container, options, now: () => NOW, crash: sw })).rejects.toBeInstanceOf(SimulatedCrash);
      // The next run comes after the dead run's lock expired.
      const summary = await exportOnce({ stack, container, options, now: () => NOW + LOCK_TTL + 1000 });
      expect(summary.caughtUp).toBe(true);
      const where = `crash at step ${crashAt} (${sw.steps[crashAt - 1]})`;
      expectExactlyOnce((await archivedEvents(container)).map((e) => e.event_id), expectedIds, `blob, ${where}`);
      expectExactlyOnce(ingestedRecords(stack).map((r) => r.EventId), expectedIds, `Log Analytics, ${where}`);
      await container.delete();
    }
  });
});
