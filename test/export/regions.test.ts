import { createServer } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { SandboxStack } from "../../sandbox/stack";
import { startSandboxStack } from "../../sandbox/stack";
import { BlobExportStore } from "../../shared/blobStore";
import { loadConfig } from "../../shared/config";
import { Warehouse } from "../../shared/databricks";
import { DeliveryError } from "../../shared/errors";
import { runExportCycle } from "../../shared/export/cycle";
import { runExport, type ExportOptions, type ExportSummary, type NamedSource } from "../../shared/export/engine";
import type { AuditSource } from "../../shared/export/ports";
import { auditRow, isoMicros, type AuditRow } from "../support/auditRows";
import {
  ALL_ROWS,
  CrashSwitch,
  archivedEvents,
  containerFor,
  expectBothSinksOnce,
  warehouseSettings,
  crashingSink,
  crashingSource,
  crashingStore,
  expectAtMostCallsResent,
  expectExactlyOnce,
  ingestedRecords,
  ingestionSink,
} from "../support/exportHarness";

/**
 * Several regions in one app: a warehouse per region, every event once. Account-level events
 * (workspace "0") are in every region's table; whichever region returns one first archives
 * it, and a copy arriving in another region later (inside the late-row horizon) is skipped.
 * A region whose warehouse is down fails alone; a crash in the middle of a run over both
 * loses and duplicates nothing.
 */
let stack: SandboxStack;
let scenarioNumber = 0;
const HOUR = 3600_000;

beforeAll(async () => {
  stack = await startSandboxStack({ synthetic: 0, regions: 2 });
  process.env.IDENTITY_ENDPOINT = stack.contract.env.IDENTITY_ENDPOINT;
  process.env.IDENTITY_HEADER = stack.contract.env.IDENTITY_HEADER;
});
afterAll(async () => {
  await stack?.close();
});

interface Scenario {
  t0: number;
  container: string;
  options: ExportOptions;
}

function scenario(): Scenario {
  scenarioNumber += 1;
  const t0 = Date.parse("2026-03-01T00:00:00Z") + scenarioNumber * 20 * 86_400_000;
  return {
    t0,
    container: `regions-${scenarioNumber}`,
    options: {
      filter: ALL_ROWS,
      redaction: [],
      start: { kind: "at", us: t0 * 1000 },
      settleDelayMs: 600_000,
      lateHorizonMs: 24 * HOUR,
      timeBudgetMs: 3600_000,
      batchEvents: 25,
      lockTtlMs: 60_000,
    },
  };
}

/** Workspace events of one region's workspace, `perHour` an hour from t0 for `hours` hours. */
function workspaceRows(t0: number, hours: number, perHour: number, workspaceId: string): AuditRow[] {
  const rows: AuditRow[] = [];
  for (let h = 0; h < hours; h++)
    for (let i = 0; i < perHour; i++) rows.push(auditRow(isoMicros((t0 + h * HOUR + i * 60_000) * 1000 + 7), { workspace_id: workspaceId }));
  return rows;
}

/** Account-level events: the same rows (same event_id) are what every region's table holds. */
function accountRows(t0: number, n: number, spanHours: number): AuditRow[] {
  return Array.from({ length: n }, (_, i) =>
    auditRow(isoMicros((t0 + Math.floor((i * spanHours * HOUR) / n)) * 1000 + 11), {
      workspace_id: "0",
      audit_level: "ACCOUNT_LEVEL",
      service_name: "accounts",
      action_name: "tokenLogin",
    }),
  );
}

const ids = (rows: readonly AuditRow[]): string[] => rows.map((r) => r.event_id as string);

/** Both regions (or the first alone, as the single-source settings name it) through the real driver, Azurite and the Logs Ingestion client. */
async function exportRegions(
  s: Scenario,
  nowMs: number | (() => number),
  crash?: CrashSwitch,
  only?: "single",
  warnings: string[] = [],
  wrap: (name: string, reader: AuditSource) => AuditSource = (_name, reader) => reader,
): Promise<ExportSummary> {
  const container = containerFor(stack, s.container);
  const store = new BlobExportStore(container);
  await store.ensureContainer();
  const warehouses = await Promise.all(
    stack.contract.databricksSources.slice(0, only ? 1 : undefined).map(async (source) => {
      const reader = await Warehouse.connect(warehouseSettings(source), undefined);
      return { name: source.name, reader };
    }),
  );
  const sources: NamedSource[] = warehouses.map(({ name, reader }) => ({
    name,
    reader: wrap(name, crash ? crashingSource(reader, crash) : reader),
    filter: ALL_ROWS,
  }));
  const sink = ingestionSink(stack);
  try {
    return await runExport(s.options, {
      ...(only ? { source: sources[0]!.reader } : { sources }),
      store: crash ? crashingStore(store, crash) : store,
      ingestion: crash ? crashingSink(sink, crash) : sink,
      now: typeof nowMs === "number" ? () => nowMs : nowMs,
      log: { info: () => undefined, warn: (message) => warnings.push(message) },
    });
  } finally {
    await Promise.all(warehouses.map((w) => w.reader.close()));
  }
}

function expectEachOnce(s: Scenario, expected: readonly string[], where: string): Promise<void> {
  return expectBothSinksOnce(stack, containerFor(stack, s.container), expected, ` ${where}`);
}

describe("account-level events in every region", () => {
  it("reach each sink once, whichever region returns them first and however late the other copy arrives", async () => {
    const s = scenario();
    stack.logsIngestion.reset();
    const [west, east] = stack.warehouses;
    const westWork = workspaceRows(s.t0, 3, 30, "1111");
    const eastWork = workspaceRows(s.t0, 3, 30, "2222");
    // The same content as a west event, another event_id: a different event, kept by both.
    const lookalike = { ...westWork[5]!, event_id: "lookalike-0001", workspace_id: "2222" };
    const account = accountRows(s.t0, 40, 3);
    // West has account events 0-29 now; east has 0-14 now and 30-39 (which only reach west later).
    await west!.appendRows([...westWork, ...account.slice(0, 30)]);
    await east!.appendRows([...eastWork, lookalike, ...account.slice(0, 15), ...account.slice(30)]);

    const first = await exportRegions(s, s.t0 + 3 * HOUR + 15 * 60_000);
    expect(first.sources.map((r) => [r.name, r.status])).toEqual([
      ["region1", "ok"],
      ["region2", "ok"],
    ]);
    expect(first.duplicatesSkipped).toBe(15);
    expect(first.eventsDelivered).toBe(westWork.length + eastWork.length + 1 + account.length);
    await expectEachOnce(s, [...ids(westWork), ...ids(eastWork), "lookalike-0001", ...ids(account)], "after run 1");

    // Hours later: east's copies of 15-29 arrive (west delivered them), and west's of 30-39
    // (east delivered them); a late workspace event in east, and an hour of new events in both.
    const lateEast = auditRow(isoMicros((s.t0 + HOUR + 30_000) * 1000), { workspace_id: "2222" });
    // New events after run 1's window (it read up to 3 h 05 min).
    const after = s.t0 + 3 * HOUR + 10 * 60_000;
    const newWest = workspaceRows(after, 1, 20, "1111");
    const newEast = workspaceRows(after, 1, 20, "2222");
    const newAccount = accountRows(after, 6, 1);
    await east!.appendRows([...account.slice(15, 30), lateEast, ...newEast, ...newAccount]);
    await west!.appendRows([...account.slice(30), ...newWest, ...newAccount]);

    const second = await exportRegions(s, s.t0 + 5 * HOUR);
    expect(second.duplicatesSkipped).toBe(15 + 10 + 6);
    expect(second.lateEventsDelivered).toBe(1);
    const everything = [
      ...ids(westWork),
      ...ids(eastWork),
      "lookalike-0001",
      ...ids(account),
      lateEast.event_id as string,
      ...ids(newWest),
      ...ids(newEast),
      ...ids(newAccount),
    ];
    await expectEachOnce(s, everything, "after the late copies");

    // The skipped copies count as covered in each region's ledger: nothing is fetched again.
    const third = await exportRegions(s, s.t0 + 6 * HOUR);
    expect({ delivered: third.eventsDelivered, skipped: third.duplicatesSkipped }).toEqual({ delivered: 0, skipped: 0 });
    await expectEachOnce(s, everything, "after a quiet run");
  });
});

describe("Log Analytics catching up from the archive of two regions", () => {
  it("sends each account-level event once, from the archive of the region that archived it", async () => {
    const s = scenario();
    stack.logsIngestion.reset();
    const [west, east] = stack.warehouses;
    const westRows = workspaceRows(s.t0, 2, 20, "1111");
    const eastRows = workspaceRows(s.t0, 2, 20, "2222");
    const account = accountRows(s.t0, 16, 2);
    await west!.appendRows([...westRows, ...account]);
    await east!.appendRows([...eastRows, ...account]);

    stack.logsIngestion.setFaults({ forbidden: true });
    const refused = await exportRegions(s, s.t0 + 2 * HOUR + 15 * 60_000).catch((e: unknown) => (e as DeliveryError).summary as ExportSummary);
    stack.logsIngestion.setFaults({});
    expect(refused.logAnalytics).toMatchObject({ status: "behind", eventsBehind: westRows.length + eastRows.length + account.length });
    expect(ingestedRecords(stack)).toHaveLength(0);

    const warnings: string[] = [];
    const caughtUp = await exportRegions(s, s.t0 + 2 * HOUR + 30 * 60_000, undefined, undefined, warnings);
    expect(caughtUp.logAnalytics).toMatchObject({ status: "current" });
    expect(caughtUp.logAnalytics.batchesReadBack).toBeGreaterThan(0);
    expect(warnings.filter((w) => /gone/.test(w))).toEqual([]);
    await expectEachOnce(s, [...ids(westRows), ...ids(eastRows), ...ids(account)], "after catching up");
  });
});

describe("adding a region to an app that ran with one warehouse", () => {
  it("keeps the first warehouse's progress and skips the account-level events the app delivered before the new region joined", async () => {
    const s = scenario();
    stack.logsIngestion.reset();
    const [west, east] = stack.warehouses;
    const westRows = workspaceRows(s.t0, 3, 20, "1111");
    const eastRows = workspaceRows(s.t0, 3, 20, "2222");
    const account = accountRows(s.t0, 12, 3);
    await west!.appendRows([...westRows, ...account]);
    await east!.appendRows([...eastRows, ...account]);

    // The single-source settings: one source, "default", reading west.
    const single = await exportRegions(s, s.t0 + 2 * HOUR + 15 * 60_000, undefined, "single");
    expect(single.sources.map((r) => r.name)).toEqual(["default"]);
    // Then DATABRICKS_SOURCES lists west first, and east.
    const both = await exportRegions(s, s.t0 + 3 * HOUR + 15 * 60_000);
    expect(both.sources[0]).toMatchObject({ name: "region1", resumedBatch: false });
    expect(both.sources[0]!.eventsDelivered).toBe(westRows.length + account.length - single.eventsDelivered);
    expect(both.sources[1]).toMatchObject({ name: "region2", eventsDelivered: eastRows.length });
    const state = (await new BlobExportStore(containerFor(stack, s.container)).readState())!.state;
    expect(Object.keys(state.sources).sort()).toEqual(["region1", "region2"]);
    await expectEachOnce(s, [...ids(westRows), ...ids(eastRows), ...ids(account)], "after the second region joined");
  });
});

describe("regions one at a time", () => {
  it("give each region its share of the time budget: a backfill of the first does not take it all from the second", async () => {
    const s = scenario();
    s.options = {
      ...s.options,
      sourceConcurrency: 1,
      timeBudgetMs: 20 * 60_000,
      lockTtlMs: 4 * HOUR,
      slices: { rows: 20, initialSpanMs: HOUR, minSpanMs: 60_000, maxSpanMs: 7 * 86_400_000 },
    };
    stack.logsIngestion.reset();
    const [west, east] = stack.warehouses;
    const westRows = workspaceRows(s.t0, 3, 40, "1111");
    const eastRows = workspaceRows(s.t0, 3, 10, "2222");
    await west!.appendRows(westRows);
    await east!.appendRows(eastRows);
    // Region 1's reads are slow: each slice it reads costs four minutes of the run's clock.
    let clock = s.t0 + 3 * HOUR + 15 * 60_000;
    const slow = (name: string, reader: AuditSource): AuditSource =>
      name !== "region1"
        ? reader
        : {
            async *scan(request) {
              for await (const chunk of reader.scan(request)) {
                clock += 4 * 60_000;
                yield chunk;
              }
            },
            countByHour: (filter, from, to) => reader.countByHour(filter, from, to),
          };
    const summary = await exportRegions(s, () => clock, undefined, undefined, [], slow);
    const [first, second] = summary.sources;
    // Region 1 had half the budget (ten minutes: a few slices), region 2 the rest, enough for all of it.
    expect(first).toMatchObject({ name: "region1", status: "ok", caughtUp: false });
    expect(first!.eventsDelivered).toBeGreaterThan(0);
    expect(first!.eventsDelivered).toBeLessThan(westRows.length);
    expect(second).toMatchObject({ name: "region2", status: "ok", caughtUp: true, eventsDelivered: eastRows.length });
  });
});

describe("a region whose warehouse is down", () => {
  it("fails alone: the other region is exported and the run says which failed and why; the next run catches it up", async () => {
    const s = scenario();
    stack.logsIngestion.reset();
    const [west, east] = stack.warehouses;
    const westRows = [...workspaceRows(s.t0, 2, 20, "1111")];
    const eastRows = [...workspaceRows(s.t0, 2, 20, "2222")];
    const account = accountRows(s.t0, 10, 2);
    await west!.appendRows([...westRows, ...account]);
    await east!.appendRows([...eastRows, ...account]);

    const downPort = await closedPort();
    const env = (eastHost: string) => ({
      ...stack.contract.env,
      EXPORT_CONTAINER: s.container,
      EXPORT_START: new Date(s.t0).toISOString(),
      DATABRICKS_ACCESS_TOKEN: "",
      DATABRICKS_SOURCES: JSON.stringify(
        stack.contract.databricksSources.map((source) => ({
          name: source.name,
          serverHostname: source.name === "region2" ? eastHost : source.serverHostname,
          httpPath: source.httpPath,
        })),
      ),
    });
    const runAt = async (eastHost: string, nowMs: number) => {
      const settings = env(eastHost);
      const config = loadConfig(settings);
      return runExportCycle(config, settings, { info: () => undefined, warn: () => undefined }, { now: () => nowMs, tuning: { batchEvents: 25 } });
    };

    const error = await runAt(`127.0.0.1:${downPort}`, s.t0 + 2 * HOUR + 15 * 60_000).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(DeliveryError);
    expect((error as Error).message).toMatch(/Source 'region2' failed \(the other sources went on\)/);
    const down = (error as DeliveryError).summary as ExportSummary;
    expect(down.sources[0]).toMatchObject({ name: "region1", status: "ok", caughtUp: true, eventsDelivered: westRows.length + account.length });
    expect(down.sources[1]).toMatchObject({ name: "region2", status: "failed", caughtUp: false, eventsDelivered: 0 });
    expect(down.sources[1]!.error).toMatch(/ECONNREFUSED|connect/i);
    await expectEachOnce(s, [...ids(westRows), ...ids(account)], "with region2 down");
    const state = (await new BlobExportStore(containerFor(stack, s.container)).readState())!.state;
    expect(state.sources.region2!.lastError).toMatch(/ECONNREFUSED|connect/i);
    expect(state.sources.region1!.lastError).toBeUndefined();

    const back = await runAt(stack.contract.databricksSources[1]!.serverHostname, s.t0 + 3 * HOUR);
    expect(back.sources.map((r) => r.status)).toEqual(["ok", "ok"]);
    expect(back.sources[1]).toMatchObject({ eventsDelivered: eastRows.length, duplicatesSkipped: account.length });
    await expectEachOnce(s, [...ids(westRows), ...ids(account), ...ids(eastRows)], "after region2 came back");
  });
});

describe("a crash in the middle of a run over two regions", () => {
  // Steps of a whole run here number about 300; these land in the scan, the claims and the commits.
  const points: (number | { step: string; occurrence: number })[] = [
    25,
    90,
    160,
    // Claimed for one region, not yet archived or committed.
    { step: "after writeClaims", occurrence: 1 },
    { step: "after writeClaims", occurrence: 3 },
  ];
  for (const crashAt of points) {
    const label = typeof crashAt === "number" ? `step ${crashAt}` : `${crashAt.step} #${crashAt.occurrence}`;
    it(`at ${label}: the next run delivers every event once (Log Analytics: at most the calls in flight again)`, async () => {
      const s = scenario();
      stack.logsIngestion.reset();
      const [west, east] = stack.warehouses;
      const westRows = workspaceRows(s.t0, 2, 40, "1111");
      const eastRows = workspaceRows(s.t0, 2, 40, "2222");
      const account = accountRows(s.t0, 30, 2);
      await west!.appendRows([...westRows, ...account]);
      await east!.appendRows([...eastRows, ...account]);
      const now = s.t0 + 2 * HOUR + 15 * 60_000;

      const crash = new CrashSwitch(crashAt);
      await expect(exportRegions(s, now, crash)).rejects.toThrow();
      expect(crash.dead).toBe(true);
      // The dead run's lock expires; the next run finishes what it left.
      const after = await exportRegions(s, now + 2 * 60_000);
      expect(after.sources.map((r) => r.status)).toEqual(["ok", "ok"]);
      const expected = [...ids(westRows), ...ids(eastRows), ...ids(account)];
      expectExactlyOnce(
        (await archivedEvents(containerFor(stack, s.container))).map((e) => e.event_id),
        expected,
        `blob after a crash at ${label}`,
      );
      expectAtMostCallsResent(ingestedRecords(stack), expected, 8, ` after a crash at ${label}`);
    });
  }
});

/** A loopback port nothing listens on: a warehouse that is down. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as { port: number }).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}
