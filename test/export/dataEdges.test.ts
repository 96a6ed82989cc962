import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { SandboxStack } from "../../sandbox/stack";
import type { ExportOptions } from "../../shared/export/engine";
import { TRUNCATION_MARKER, TRUNCATED_KEYS_PARAM } from "../../shared/sentinelRecord";
import { REDACTED } from "../../shared/auditEvent";
import { auditRow, isoMicros, type AuditRow } from "../support/auditRows";
import { ALL_ROWS, archivedEvents, containerFor, expectExactlyOnce, exportOnce, ingestedRecords, startStack } from "../support/exportHarness";

let stack: SandboxStack;
let testNumber = 0;
const HOUR = 3600_000;

beforeAll(async () => {
  stack = await startStack();
});
afterAll(async () => {
  await stack?.close();
});

function setup(extra: Partial<ExportOptions> = {}) {
  testNumber += 1;
  const t0 = Date.parse("2026-06-01T00:00:00Z") + testNumber * 7 * 86_400_000;
  const options: ExportOptions = {
    filter: ALL_ROWS,
    redaction: [],
    start: { kind: "at", us: t0 * 1000 },
    settleDelayMs: 600_000,
    lateHorizonMs: 24 * HOUR,
    timeBudgetMs: HOUR,
    batchEvents: 50,
    lockTtlMs: 60_000,
    ...extra,
  };
  stack.logsIngestion.reset();
  return { t0, options, container: containerFor(stack, `edges-${testNumber}`) };
}

const ids = (rows: AuditRow[]) => rows.map((r) => r.event_id as string);

describe("late rows", () => {
  it("exports rows that appear behind the cursor exactly once, on a later run", async () => {
    const { t0, options, container } = setup();
    const early = Array.from({ length: 40 }, (_, i) => auditRow(isoMicros((t0 + i * 60_000) * 1000)));
    await stack.warehouse.appendRows(early);
    await exportOnce({ stack, container, options, now: () => t0 + 2 * HOUR });

    // Arrive late: their event_time is already behind the cursor (t0 + 1h50m).
    const late = Array.from({ length: 15 }, (_, i) => auditRow(isoMicros((t0 + 10 * 60_000 + i * 3 * 60_000) * 1000 + 123)));
    const fresh = Array.from({ length: 10 }, (_, i) => auditRow(isoMicros((t0 + 2 * HOUR + i * 60_000) * 1000)));
    await stack.warehouse.appendRows([...late, ...fresh]);
    const second = await exportOnce({ stack, container, options, now: () => t0 + 3 * HOUR });
    expect(second.lateEventsDelivered).toBe(15);
    const third = await exportOnce({ stack, container, options, now: () => t0 + 3 * HOUR + 60_000 });
    expect(third.eventsDelivered).toBe(0);

    const all = ids([...early, ...late, ...fresh]);
    expectExactlyOnce(
      (await archivedEvents(container)).map((e) => e.event_id),
      all,
      "blob",
    );
    expectExactlyOnce(
      ingestedRecords(stack).map((r) => r.EventId),
      all,
      "Log Analytics",
    );
  });
});

describe("ties and precision", () => {
  it("pages through more events sharing one event_time than one fetch chunk holds", async () => {
    const { t0, options, container } = setup({ batchEvents: 70 });
    const instant = isoMicros(t0 * 1000 + 5 * 60_000_000 + 654_321);
    const tied = Array.from({ length: 260 }, () => auditRow(instant));
    await stack.warehouse.appendRows(tied);
    await exportOnce({ stack, container, options, now: () => t0 + HOUR, warehouseOptions: { fetchRows: 100 } });
    const events = await archivedEvents(container);
    expectExactlyOnce(
      events.map((e) => e.event_id),
      ids(tied),
      "blob",
    );
    expect(new Set(events.map((e) => e.event_time))).toEqual(new Set([instant]));
    expectExactlyOnce(
      ingestedRecords(stack).map((r) => r.EventId),
      ids(tied),
      "Log Analytics",
    );
  });

  it("keeps windows half-open to the microsecond: start included, end excluded", async () => {
    const { t0, options, container } = setup();
    const settle = options.settleDelayMs;
    const nowMs = t0 + 2 * HOUR;
    const endUs = (nowMs - settle) * 1000;
    const at = (us: number) => auditRow(isoMicros(us));
    const beforeStart = at(t0 * 1000 - 1);
    const atStart = at(t0 * 1000);
    const justBeforeEnd = at(endUs - 1);
    const atEnd = at(endUs);
    await stack.warehouse.appendRows([beforeStart, atStart, justBeforeEnd, atEnd]);

    await exportOnce({ stack, container, options, now: () => nowMs });
    let archived = (await archivedEvents(container)).map((e) => e.event_id);
    expect(archived.sort()).toEqual(ids([atStart, justBeforeEnd]).sort());

    await exportOnce({ stack, container, options, now: () => nowMs + 60_000 });
    archived = (await archivedEvents(container)).map((e) => e.event_id);
    expectExactlyOnce(archived, ids([atStart, justBeforeEnd, atEnd]), "blob");
    const times = (await archivedEvents(container)).map((e) => e.event_time).sort();
    expect(times).toEqual([isoMicros(t0 * 1000), isoMicros(endUs - 1), isoMicros(endUs)].sort());
  });
});

describe("values", () => {
  it("keeps nulls, unicode, quotes, newlines and NUL exactly, in both sinks", async () => {
    const { t0, options, container } = setup();
    const odd = auditRow(isoMicros(t0 * 1000 + 42), {
      user_identity: null,
      request_params: null,
      response: null,
      identity_metadata: null,
      user_agent: "naïve \"quoted\" 'single'\nnew line\ttab \u0000 nul ☃ 𝄞 中文",
    });
    const emptyMap = auditRow(isoMicros(t0 * 1000 + 43), {
      request_params: { 'key with "quotes"': "line1\nline2\u0000end", ünïcödé: "✓", empty: "", nothing: null },
      identity_metadata: { run_by: "sp@example.com", run_as: null },
    });
    await stack.warehouse.appendRows([odd, emptyMap]);
    await exportOnce({ stack, container, options, now: () => t0 + HOUR });
    const byId = new Map((await archivedEvents(container)).map((e) => [e.event_id, e]));
    const archivedOdd = byId.get(odd.event_id as string)!;
    expect(archivedOdd.user_identity).toBeNull();
    expect(archivedOdd.request_params).toBeNull();
    expect(archivedOdd.response).toBeNull();
    expect(archivedOdd.user_agent).toBe(odd.user_agent);
    expect(byId.get(emptyMap.event_id as string)!.request_params).toEqual(emptyMap.request_params);
    expect(byId.get(emptyMap.event_id as string)!.identity_metadata).toEqual(emptyMap.identity_metadata);

    const records = new Map(ingestedRecords(stack).map((r) => [r.EventId, r]));
    expect(records.get(odd.event_id as string)).toMatchObject({ UserAgent: odd.user_agent, UserEmail: null, RequestParams: null, ResponseStatusCode: null });
    expect(records.get(emptyMap.event_id as string)!.RequestParams).toEqual(emptyMap.request_params);
  });

  it("archives a 2 MiB request_params value whole and caps it for Log Analytics with a marker", async () => {
    const { t0, options, container } = setup();
    const huge = "z".repeat(2 * 1024 * 1024);
    const big = auditRow(isoMicros(t0 * 1000 + 5), { request_params: { commandText: huge, notebookId: "42" } });
    await stack.warehouse.appendRows([big]);
    await exportOnce({ stack, container, options, now: () => t0 + HOUR });
    const [archived] = await archivedEvents(container);
    expect(archived!.request_params!.commandText).toBe(huge);
    const [record] = ingestedRecords(stack);
    expect(record!.RequestParams!.notebookId).toBe("42");
    expect(record!.RequestParams!.commandText!.endsWith(TRUNCATION_MARKER)).toBe(true);
    expect(record!.RequestParams![TRUNCATED_KEYS_PARAM]).toBe("commandText");
    expect(JSON.stringify(record).length).toBeLessThan(64 * 1024);
  });

  it("drops or masks the configured request_params keys before either sink", async () => {
    const { t0, options, container } = setup({
      redaction: [
        { key: "password", action: "drop" },
        { key: "token", action: "mask" },
      ],
    });
    const secretRow = auditRow(isoMicros(t0 * 1000 + 9), { request_params: { password: "hunter2", token: "abc", user: "bob" } });
    await stack.warehouse.appendRows([secretRow]);
    await exportOnce({ stack, container, options, now: () => t0 + HOUR });
    const [archived] = await archivedEvents(container);
    expect(archived!.request_params).toEqual({ token: REDACTED, user: "bob" });
    expect(ingestedRecords(stack)[0]!.RequestParams).toEqual({ token: REDACTED, user: "bob" });
  });
});

describe("time budget", () => {
  it("stops before its budget, and the next runs continue where it stopped", async () => {
    const { t0, options, container } = setup({ batchEvents: 30, timeBudgetMs: 10_000 });
    const rows = Array.from({ length: 200 }, (_, i) => auditRow(isoMicros((t0 + i * 5000) * 1000)));
    await stack.warehouse.appendRows(rows);
    let clock = t0 + 2 * HOUR;
    const now = () => (clock += 1000); // every look at the clock costs a second of budget
    const first = await exportOnce({ stack, container, options, now });
    expect(first.caughtUp).toBe(false);
    expect(first.eventsDelivered).toBeGreaterThan(0);
    expect(first.eventsDelivered).toBeLessThan(200);
    let runs = 1;
    for (let caughtUp = false; !caughtUp && runs < 30; runs++) caughtUp = (await exportOnce({ stack, container, options, now })).caughtUp;
    expect(runs).toBeGreaterThan(2);
    expectExactlyOnce(
      (await archivedEvents(container)).map((e) => e.event_id),
      ids(rows),
      "blob",
    );
    expectExactlyOnce(
      ingestedRecords(stack).map((r) => r.EventId),
      ids(rows),
      "Log Analytics",
    );
  });
});

describe("memory", () => {
  it("stays flat as the window grows", async () => {
    const gc = (globalThis as { gc?: () => void }).gc!;
    const liveHeapFor = async (rows: number): Promise<number> => {
      const { t0, options, container } = setup({ batchEvents: 1000 });
      await stack.warehouse.appendSynthetic(rows, { start: new Date(t0), end: new Date(t0 + HOUR), seed: rows });
      let peak = 0;
      // After each batch: what the run keeps alive (the stand-ins share this process, so this bounds the exporter too).
      const onProgress = () => {
        gc();
        peak = Math.max(peak, process.memoryUsage().heapUsed);
      };
      const summary = await exportOnce({
        stack,
        container,
        options,
        now: () => t0 + 2 * HOUR,
        ingestion: false,
        warehouseOptions: { fetchRows: 1000 },
        onProgress,
      });
      expect(summary.eventsDelivered).toBe(rows);
      await container.delete();
      return peak;
    };
    await liveHeapFor(2000); // warm-up: code paths and caches loaded
    const small = await liveHeapFor(5000);
    const large = await liveHeapFor(40000);
    // Eight times the events in bounded batches: what stays alive must not grow with the window.
    expect(large).toBeLessThan(small * 1.25 + 8 * 1024 * 1024);
  });

  // VmHWM comes from Linux's /proc, as on the Functions instances.
  it.skipIf(!existsSync("/proc/self/status"))(
    "keeps the whole exporting process under 200 MB on a 512 MB instance, reader thread and Log Analytics included",
    async () => {
      // The README's claim, checked on the real CLI: `dbx-audit run` in a process of its own with
      // the sandbox's app settings (Log Analytics on), the reader thread and the 512 MB
      // instance's V8 flags (as `npm run bench` runs it). Its peak RSS (VmHWM: every thread,
      // the driver's buffers and the Logs Ingestion client's too) comes from /proc at its exit.
      // Enough for the batches, the reader's read-ahead and the Logs Ingestion client's uploads
      // (45 calls) to reach their steady state many times over; more rows only take longer
      // (these take about 30 s here on two busy cores).
      const ROWS = 50_000;
      const start = Math.floor(Date.now() / HOUR) * HOUR - 3 * HOUR; // after every other test's rows, before now minus the settle delay
      stack.logsIngestion.reset();
      await stack.warehouse.appendSynthetic(ROWS, { start: new Date(start), end: new Date(start + HOUR), seed: 512 });
      const dir = mkdtempSync(join(tmpdir(), "dbx-audit-peak-rss-"));
      const report = join(dir, "peak.json");
      const container = "memory-whole-process";
      try {
        const env = {
          ...process.env,
          ...stack.contract.env, // its NODE_EXTRA_CA_CERTS trusts the sandbox: the launcher runs the CLI in this same process
          EXPORT_CONTAINER: container,
          EXPORT_START: new Date(start).toISOString(),
          AUDIT_SERVICES: "*",
          EXPORT_SETTLE_DELAY: "PT1M",
          EXPORT_TIME_BUDGET: "PT20M",
          // What DATABRICKS_CLOUD_FETCH=auto chooses under a 512 MB instance's memory limit (inline
          // pages); this process has the instance's V8 flags but not its cgroup, so auto would not know.
          DATABRICKS_CLOUD_FETCH: "false",
          DBX_AUDIT_PEAK_RSS_FILE: report,
        };
        const launcher = join(__dirname, "..", "..", "bin", "dbx-audit.js");
        const peakRss = join(__dirname, "..", "support", "peakRss.mjs");
        const child = spawn(process.execPath, ["--max-old-space-size=256", "--max-semi-space-size=1", "--import", peakRss, launcher, "run"], {
          env,
          stdio: ["ignore", "pipe", "pipe"],
        });
        let output = "";
        child.stdout.on("data", (c: Buffer) => (output += c.toString()));
        child.stderr.on("data", (c: Buffer) => (output += c.toString()));
        const code = await new Promise<number | null>((resolve) => child.once("exit", resolve));
        expect(code, output).toBe(0);
        expect(output).toContain(`delivered ${ROWS} `);
        expect(ingestedRecords(stack)).toHaveLength(ROWS);
        await containerFor(stack, container).delete();

        const measured = JSON.parse(readFileSync(report, "utf8")) as { pid: number; peakRssKb: number };
        expect(measured.pid).toBe(child.pid); // the process that exported, not a launcher in front of it
        const peakMb = measured.peakRssKb / 1024;
        // Measured on the development machine: 165 MB for these 50,000 events, 178 MB for
        // 100,000 (the benchmark's 1,000,000 peaked at 190 MB): the peak grows far slower than
        // the window. The bound is the README's claim, under 200 MB on a 512 MB instance; its
        // 35 MB margin is what an exporter that kept about 700 bytes per event alive would add
        // here, so such a leak fails this test.
        expect(peakMb).toBeLessThan(200);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
    120_000,
  );
});
