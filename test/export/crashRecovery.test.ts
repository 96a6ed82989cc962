import type { ContainerClient } from "@azure/storage-blob";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { SandboxStack } from "../../sandbox/stack";
import { BlobExportStore } from "../../shared/blobStore";
import type { ExportOptions } from "../../shared/export/engine";
import { auditRow, isoMicros } from "../support/auditRows";
import {
  expectAtMostCallsResent,
  overriding,
  ALL_ROWS,
  CrashSwitch,
  archivedEvents,
  containerFor,
  expectExactlyOnce,
  exportOnce,
  ingestedRecords,
  startStack,
} from "../support/exportHarness";

/**
 * The process dies at every step of a run (after each fetch, blob write, Log Analytics call,
 * before and after each state write), then runs again: every event reaches the archive exactly
 * once, and Log Analytics gets every event, with at most the calls that were in flight when
 * the process died sent twice (the one window no client can close: the Logs Ingestion API has
 * no idempotency key). The runs use the production configuration: the reader thread and four
 * Log Analytics calls in flight. Three kinds of run die: a fresh one, one finishing a batch an
 * earlier run left pending, and one delivering late rows.
 */
let stack: SandboxStack;
const T0 = Date.parse("2026-03-01T10:00:00Z");
const NOW = T0 + 3 * 3600_000;
const LOCK_TTL = 60_000;
const CALLS_IN_FLIGHT = 4;
const firstIds: string[] = [];
const lateIds: string[] = [];
let lateRows: Record<string, unknown>[] = [];

const options: ExportOptions = {
  filter: ALL_ROWS,
  redaction: [],
  start: { kind: "at", us: T0 * 1000 },
  settleDelayMs: 10 * 60_000,
  lateHorizonMs: 24 * 3600_000,
  timeBudgetMs: 3600_000,
  batchEvents: 300,
  lockTtlMs: LOCK_TTL,
  uploadConcurrency: CALLS_IN_FLIGHT,
};

function rows(count: number, startMs: number, stepMs: number): Record<string, unknown>[] {
  return Array.from({ length: count }, (_, i) => {
    // Several events per microsecond; most big enough that a batch needs several Log Analytics calls.
    const us = (startMs + Math.floor(i / 3) * stepMs) * 1000 + (i % 3 === 0 ? 1 : 0);
    return auditRow(isoMicros(us), i % 10 === 9 ? {} : { request_params: { blob: "x".repeat(30_000), i: String(i) } });
  });
}

beforeAll(async () => {
  stack = await startStack();
  const first = rows(140, T0, 90_000);
  await stack.warehouse.appendRows(first);
  firstIds.push(...first.map((r) => r.event_id as string));
  // Late rows: in the hours already exported, appended after the first export ran.
  lateRows = rows(70, T0 + 1000, 150_000);
  lateIds.push(...lateRows.map((r) => r.event_id as string));
}, 180_000);

afterAll(async () => {
  await stack?.close();
});

/**
 * The run under test (the one that dies) runs as in production, on the reader thread; the runs
 * that set a scene up or finish after it read on the test's own thread, which spares a thread
 * start per run (the same reads, see warehouseThread.test.ts).
 */
const run = (container: ContainerClient, crash?: CrashSwitch, now = NOW, readerThread = true) =>
  exportOnce({ stack, container, options, now: () => now, readerThread, ...(crash ? { crash } : {}) });

/** Which steps of the reference run to crash at: all of them, or the part of the run under test. */
type StepRange = (steps: readonly string[]) => [first: number, last: number];
const allSteps: StepRange = (steps) => [1, steps.length];

async function everyCrash(
  name: string,
  prepare: (container: ContainerClient) => Promise<void>,
  expected: () => string[],
  minCalls: number,
  range: StepRange = allSteps,
): Promise<number> {
  // For every step of the run that `prepare` leads up to: a fresh container, `prepare`, the run
  // dying at that step, a run after the lock expired; then both sinks are checked.
  const referenceContainer = containerFor(stack, `${name}-reference`);
  await prepare(referenceContainer);
  const reference = new CrashSwitch();
  await run(referenceContainer, reference).catch(() => undefined);
  await referenceContainer.delete();
  const [first, last] = range(reference.steps);
  expect(reference.steps.slice(first - 1, last).filter((s) => s === "before logsIngestionCall").length).toBeGreaterThanOrEqual(minCalls);
  for (let crashAt = first; crashAt <= last; crashAt++) {
    const container = containerFor(stack, `${name}-at-${crashAt}`);
    await prepare(container);
    stack.logsIngestion.reset();
    const sw = new CrashSwitch(crashAt);
    // Usually the run fails; a death in a best-effort last step (releasing the lock, cleaning
    // up) does not fail it. Either way nothing ran after that step.
    await run(container, sw).catch(() => undefined);
    if (!sw.dead) continue; // this run took fewer steps than the reference
    const summary = await run(container, undefined, NOW + LOCK_TTL + 1000, false);
    if (process.env.CRASH_TEST_TRACE) process.stderr.write(`${name} ${crashAt}/${last} ${sw.steps[crashAt - 1]}\n`);
    expect(summary.caughtUp).toBe(true);
    const where = `${name}: crash at step ${crashAt} (${sw.steps[crashAt - 1]})`;
    expectExactlyOnce(
      (await archivedEvents(container)).map((e) => e.event_id),
      expected(),
      `blob, ${where}`,
    );
    expectAtMostCallsResent(ingestedRecords(stack), idsOfThisRun(expected()), CALLS_IN_FLIGHT, where);
    await container.delete();
  }
  return last - first + 1;
}

/** The events Log Analytics gets in the run under test: what `prepare` delivered was reset away. */
let preparedIds = new Set<string>();
const idsOfThisRun = (all: string[]) => all.filter((id) => !preparedIds.has(id));

describe("a run that dies at any step, then runs again (reader thread, four calls in flight)", () => {
  it("delivers every event exactly once to the archive, and to Log Analytics with only in-flight calls resent, whatever step a fresh run died at", async () => {
    preparedIds = new Set();
    const steps = await everyCrash(
      "fresh",
      () => Promise.resolve(),
      () => firstIds,
      4,
    );
    expect(steps).toBeGreaterThan(30);
  }, 900_000);

  it("does so whatever step a run finishing a batch left pending died at", async () => {
    // An earlier run died after it recorded a batch as pending and wrote part of its blobs.
    const prepare = async (container: ContainerClient): Promise<void> => {
      stack.logsIngestion.reset();
      let archiveWrites = 0;
      await exportOnce({
        stack,
        container,
        options,
        now: () => NOW,
        readerThread: false,
        wrapStore: (store) =>
          overriding(store, {
            writeArchive: async (blobName, lines) => {
              archiveWrites += 1;
              if (archiveWrites === 2) throw new Error("the process died (simulated)");
              return store.writeArchive(blobName, lines);
            },
          }),
      }).catch(() => undefined);
      const state = (await new BlobExportStore(container).readState())!.state;
      expect(state.sources.default?.pending).not.toBeNull();
      // The next run comes after that run's lock expired.
      const store = new BlobExportStore(container);
      const stored = (await store.readState())!;
      await store.writeState({ ...stored.state, lock: null }, stored.etag);
      preparedIds = new Set(ingestedRecords(stack).map((r) => r.EventId));
    };
    // The resumed batch: from the start to its commit (the first state write after its journal entry).
    const resumePart: StepRange = (steps) => {
      const journal = steps.indexOf("after writeJournal");
      return [1, steps.indexOf("after writeState", journal) + 1];
    };
    const steps = await everyCrash("resume", prepare, () => firstIds, 0, resumePart);
    expect(steps).toBeGreaterThan(8);
  }, 900_000);

  it("does so whatever step a run delivering late rows died at", async () => {
    const base = containerFor(stack, "late-base");
    await run(base);
    await base.delete();
    await stack.warehouse.appendRows(lateRows);
    const prepare = async (container: ContainerClient): Promise<void> => {
      // The first export ran before the late rows arrived: replay its state and archive by
      // running it with the late rows filtered out of what the warehouse returns.
      await exportOnce({
        stack,
        container,
        options,
        now: () => NOW,
        readerThread: false,
        wrapSource: (source) => ({
          countByHour: async (filter, from, to) => {
            const counts = await source.countByHour(filter, from, to);
            for (const id of lateRows.map((r) => r.event_time as string)) {
              const hour = Math.floor(Date.parse(id) / 3600_000);
              counts.set(hour, (counts.get(hour) ?? 1) - 1);
            }
            return counts;
          },
          async *scan(request) {
            for await (const chunk of source.scan(request)) yield chunk.filter((e) => !lateIds.includes(e.eventId));
          },
        }),
      });
      preparedIds = new Set(firstIds);
    };
    // The late-row part: from the per-hour counts to the end.
    const latePart: StepRange = (steps) => [steps.indexOf("before countByHour") + 1, steps.length];
    const steps = await everyCrash("late", prepare, () => [...firstIds, ...lateIds], 2, latePart);
    expect(steps).toBeGreaterThan(10);
  }, 900_000);
});
