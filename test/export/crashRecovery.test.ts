import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { SandboxStack } from "../../sandbox/stack";
import type { ExportOptions } from "../../shared/export/engine";
import { MAX_CALL_BYTES, type SentinelAuditRecord } from "../../shared/sentinelRecord";
import { auditRow, isoMicros } from "../support/auditRows";
import { ALL_ROWS, CrashSwitch, archivedEvents, containerFor, expectExactlyOnce, exportOnce, ingestedRecords, startStack } from "../support/exportHarness";

/**
 * The process dies at every step of a run (after each fetch, blob write, Log Analytics call,
 * before and after each state write), then runs again: every event reaches each sink exactly once.
 */
let stack: SandboxStack;
const T0 = Date.parse("2026-03-01T10:00:00Z");
const NOW = T0 + 3 * 3600_000;
const LOCK_TTL = 60_000;
const expectedIds: string[] = [];
// Over a hundred runs: the driver stays on this thread rather than starting a reader thread per run.
const readerThread = false;

const options: ExportOptions = {
  filter: ALL_ROWS,
  redaction: [],
  start: { kind: "at", us: T0 * 1000 },
  settleDelayMs: 10 * 60_000,
  lateHorizonMs: 24 * 3600_000,
  timeBudgetMs: 3600_000,
  batchEvents: 40,
  lockTtlMs: LOCK_TTL,
  // One call at a time: with several in flight, a crash would leave the others' fate unknown.
  uploadConcurrency: 1,
};

beforeAll(async () => {
  stack = await startStack();
  const rows = [];
  for (let i = 0; i < 100; i++) {
    // Several events per microsecond, across two hours, some big enough that a batch needs several Log Analytics calls.
    const us = (T0 + Math.floor(i / 3) * 150_000) * 1000 + (i % 3 === 0 ? 1 : 0);
    rows.push(auditRow(isoMicros(us), i % 10 === 9 ? {} : { request_params: { blob: "x".repeat(30_000), i: String(i) } }));
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
    await exportOnce({ stack, container: containerFor(stack, "crash-reference"), options, now: () => NOW, crash: reference, readerThread });
    const stepCount = reference.steps.length;
    expect(stepCount).toBeGreaterThan(30);
    expect(reference.steps.filter((s) => s === "before logsIngestionCall").length).toBeGreaterThan(3);

    // Which Log Analytics call (1-based) each crash inside an unrecorded-call window hit.
    const windowCalls = new Set<number>();
    for (let crashAt = 1; crashAt <= stepCount; crashAt++) {
      stack.logsIngestion.reset();
      const container = containerFor(stack, `crash-at-${crashAt}`);
      const sw = new CrashSwitch(crashAt);
      // Usually the run fails; a death in a best-effort last step (releasing the lock, cleaning
      // up) does not fail it. Either way nothing ran after that step.
      await exportOnce({ stack, container, options, now: () => NOW, crash: sw, readerThread }).catch(() => undefined);
      expect(sw.dead).toBe(true);
      // The next run comes after the dead run's lock expired.
      const summary = await exportOnce({ stack, container, options, now: () => NOW + LOCK_TTL + 1000, readerThread });
      expect(summary.caughtUp).toBe(true);
      const where = `crash at step ${crashAt} (${sw.steps[crashAt - 1]})`;
      expectExactlyOnce(
        (await archivedEvents(container)).map((e) => e.event_id),
        expectedIds,
        `blob, ${where}`,
      );
      const ingestedIds = ingestedRecords(stack).map((r) => r.EventId);
      if (isUnrecordedCallWindow(sw.steps, crashAt)) {
        // Died after Log Analytics accepted a call and before the state recorded it: the one window
        // the API leaves open (no idempotency key). Nothing is lost; that one call is sent again.
        windowCalls.add(sw.steps.slice(0, crashAt - 1).filter((s) => s === "before logsIngestionCall").length);
        expectAtMostOneCallResent(ingestedRecords(stack), expectedIds, where);
      } else {
        expectExactlyOnce(ingestedIds, expectedIds, `Log Analytics, ${where}`);
      }
      await container.delete();
    }
    // Every call's window was hit. Steps run concurrently (the next batch's ids blob is written
    // while this one is delivered), so one window can hold more than one step, in some runs.
    const calls = reference.steps.filter((s) => s === "before logsIngestionCall").length;
    expect([...windowCalls].sort((a, b) => a - b)).toEqual(Array.from({ length: calls }, (_, i) => i + 1));
  });
});

/** Died after a Log Analytics call was made and before the state write that records it completed. */
function isUnrecordedCallWindow(steps: string[], crashAt: number): boolean {
  const call = steps.lastIndexOf("before logsIngestionCall", crashAt - 2);
  return call >= 0 && !steps.slice(call + 1, crashAt).includes("after writeState");
}

function expectAtMostOneCallResent(records: SentinelAuditRecord[], expected: string[], where: string): void {
  const counts = new Map<string, number>();
  const sizes = new Map<string, number>();
  for (const record of records) {
    counts.set(record.EventId, (counts.get(record.EventId) ?? 0) + 1);
    sizes.set(record.EventId, Buffer.byteLength(JSON.stringify(record)));
  }
  const missing = expected.filter((id) => !counts.has(id)).length;
  const duplicated = [...counts].filter(([, n]) => n > 1);
  expect({ where, missing, tripled: duplicated.filter(([, n]) => n > 2).length }).toEqual({ where, missing: 0, tripled: 0 });
  // What was sent twice fits in one call (under 1,000,000 bytes of JSON): that one call, no more.
  expect(duplicated.length).toBeGreaterThan(0);
  expect(duplicated.reduce((bytes, [id]) => bytes + sizes.get(id)!, 0)).toBeLessThan(MAX_CALL_BYTES);
}
