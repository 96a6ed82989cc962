import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { SandboxStack } from "../../sandbox/stack";
import { BlobExportStore } from "../../shared/blobStore";
import { assessLogAnalyticsLag } from "../../shared/checks/logAnalyticsLag";
import { DeliveryError } from "../../shared/errors";
import type { ExportOptions, ExportSummary } from "../../shared/export/engine";
import type { DeadLetter } from "../../shared/export/ports";
import { redriveDeadLetters } from "../../shared/export/redrive";
import { auditRow, isoMicros } from "../support/auditRows";
import { ALL_ROWS, archivedEvents, containerFor, expectExactlyOnce, exportOnce, ingestedRecords, ingestionSink, startStack } from "../support/exportHarness";

/**
 * The archive never waits for Log Analytics: a Log Analytics that refuses for good or is
 * unreachable lags for as many runs as it takes, says why, and then catches up from the
 * archive (not the warehouse) without loss or duplicates. A record refused alone goes to a
 * dead-letter blob and never holds back the others.
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

async function scenario(hours: number, perHour: number) {
  scenarioNumber += 1;
  const t0 = Date.parse("2026-06-01T00:00:00Z") + scenarioNumber * 20 * 86_400_000;
  const rows = [];
  for (let h = 0; h < hours; h++) {
    for (let i = 0; i < perHour; i++)
      rows.push(auditRow(isoMicros((t0 + h * HOUR + i * 1000) * 1000 + 3), { request_params: { i: String(i), pad: "p".repeat(2000) } }));
  }
  await stack.warehouse.appendRows(rows);
  stack.logsIngestion.reset();
  const options: ExportOptions = {
    filter: ALL_ROWS,
    redaction: [],
    start: { kind: "at", us: t0 * 1000 },
    settleDelayMs: 600_000,
    lateHorizonMs: 24 * HOUR,
    timeBudgetMs: 3600_000,
    batchEvents: 50,
    lockTtlMs: 60_000,
  };
  return { t0, rows, ids: rows.map((r) => r.event_id as string), container: containerFor(stack, `sinks-${scenarioNumber}`), options };
}

async function failedSummary(run: Promise<unknown>): Promise<ExportSummary> {
  const error = await run.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(DeliveryError);
  return (error as DeliveryError).summary as ExportSummary;
}

describe("Log Analytics refusing for good", () => {
  it("keeps archiving through runs of 403 and 404, says how far behind and why, then catches up from the archive exactly once", async () => {
    const s = await scenario(6, 60);
    // A run at hour h + 5 min reads up to hour h - 5 min (the settle delay is 10 min).
    const hourOf = (h: number) => s.t0 + h * HOUR + 5 * 60_000;

    // Run 1 (2 hours of events): the identity lost its role on the DCR.
    stack.logsIngestion.setFaults({ forbidden: true });
    const first = await failedSummary(exportOnce({ stack, container: s.container, options: s.options, now: () => hourOf(2) }));
    expect(first.eventsDelivered).toBe(120);
    expect(first.logAnalytics).toMatchObject({ status: "behind", eventsBehind: 120, reason: expect.stringMatching(/HTTP 403/) });
    expect(first.logAnalytics.remediation).toMatch(/Monitoring Metrics Publisher role on the data collection rule/);
    expect(ingestedRecords(stack)).toHaveLength(0);

    // Run 2 (2 more hours): the DCR was replaced, so its immutable ID changed (404).
    stack.logsIngestion.setFaults({});
    const second = await failedSummary(
      exportOnce({ stack, container: s.container, options: s.options, now: () => hourOf(4), ruleId: "dcr-00000000000000000000000000000000" }),
    );
    expect(second.eventsDelivered).toBe(120);
    expect(second.logAnalytics).toMatchObject({ status: "behind", eventsBehind: 240, reason: expect.stringMatching(/HTTP 404/) });
    expect(second.logAnalytics.remediation).toMatch(/LOGS_INGESTION_RULE_ID/);
    expect(second.logAnalytics.laggingSince).toBe(new Date(hourOf(2)).toISOString());

    // The health check says the same, from the state alone.
    const state = (await new BlobExportStore(s.container).readState())!.state;
    const lag = assessLogAnalyticsLag(state, true);
    expect(lag.status).toBe("FAIL");
    expect(lag.detail).toMatch(/240 events\) behind the archive since/);
    expect(lag.remediation).toMatch(/LOGS_INGESTION_RULE_ID/);
    expectExactlyOnce(
      (await archivedEvents(s.container)).map((e) => e.event_id),
      s.ids.slice(0, 240),
      "blob while Log Analytics refuses",
    );

    // Run 3, fixed: the backlog goes from the archive, the new hours too; the warehouse is not re-read.
    const fetchesBefore = stack.warehouse.stats().rowsSent;
    const third = await exportOnce({ stack, container: s.container, options: s.options, now: () => hourOf(6) });
    expect(third.eventsDelivered).toBe(120);
    expect(third.logAnalytics).toMatchObject({ status: "current", batchesBehind: 0, eventsBehind: 0 });
    expect(third.logAnalytics.batchesReadBack).toBeGreaterThan(0);
    expect(third.recordsIngested).toBe(360);
    expect(stack.warehouse.stats().rowsSent - fetchesBefore).toBeLessThan(200);
    expect(assessLogAnalyticsLag((await new BlobExportStore(s.container).readState())!.state, true).status).toBe("PASS");
    expectExactlyOnce(
      ingestedRecords(stack).map((r) => r.EventId),
      s.ids,
      "Log Analytics after catching up",
    );
    // Caught up: the journal is emptied behind it.
    const leftover = [];
    for await (const blob of s.container.listBlobsFlat({ prefix: "_state/journal/" })) leftover.push(blob.name);
    expect(leftover).toEqual([]);
  });
});

describe("a record Log Analytics refuses on its own", () => {
  it("goes to a dead-letter blob with the reason; every other record is ingested and the run succeeds", async () => {
    const s = await scenario(1, 80);
    const refused = [s.ids[7]!, s.ids[61]!];
    stack.logsIngestion.setFaults({ rejectEventIds: refused });
    const summary = await exportOnce({ stack, container: s.container, options: { ...s.options, batchEvents: 200 }, now: () => s.t0 + 2 * HOUR });
    stack.logsIngestion.setFaults({});
    expect(summary.logAnalytics).toMatchObject({ status: "current", deadLettered: 2 });
    expectExactlyOnce(
      ingestedRecords(stack).map((r) => r.EventId),
      s.ids.filter((id) => !refused.includes(id)),
      "Log Analytics without the refused records",
    );
    expectExactlyOnce(
      (await archivedEvents(s.container)).map((e) => e.event_id),
      s.ids,
      "blob",
    );
    const letters: DeadLetter[] = [];
    for (const name of summary.logAnalytics.deadLetterBlobs) {
      const text = (await s.container.getBlobClient(name).downloadToBuffer()).toString("utf8");
      letters.push(
        ...text
          .trim()
          .split("\n")
          .map((line) => JSON.parse(line) as DeadLetter),
      );
    }
    expect(letters.map((l) => l.eventId).sort()).toEqual([...refused].sort());
    expect(letters[0]).toMatchObject({ status: 400, reason: expect.stringMatching(/cannot be ingested/) });
    expect(letters[0]!.record.EventId).toBe(letters[0]!.eventId);
    const store = new BlobExportStore(s.container);
    const check = assessLogAnalyticsLag((await store.readState())!.state, true, await store.listDeadLetters());
    expect(check.status).toBe("WARN");
    expect(check.detail).toMatch(/refused by Log Analytics on their own \(2 record\(s\) dead-lettered so far\)/);
    expect(check.remediation).toMatch(/dbx-audit redrive/);

    // Once the cause is fixed, a re-drive sends them and clears the dead-letter blobs.
    const result = await redriveDeadLetters(store, ingestionSink(stack));
    expect(result).toMatchObject({ accepted: 2, stillRefused: 0, remaining: [] });
    expectExactlyOnce(
      ingestedRecords(stack).map((r) => r.EventId),
      s.ids,
      "Log Analytics after the re-drive",
    );
    expect(assessLogAnalyticsLag((await store.readState())!.state, true, await store.listDeadLetters()).status).toBe("PASS");
  });
});
