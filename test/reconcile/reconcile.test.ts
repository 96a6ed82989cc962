import { writeFileSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BlobExportStore } from "../../shared/blobStore";
import { loadConfig } from "../../shared/config";
import { runExportCycle } from "../../shared/export/cycle";
import { LogAnalyticsQuery } from "../../shared/logAnalyticsQuery";
import { reconcile, readLastReconciliation } from "../../shared/reconcile/run";
import { LogsIngestionSink } from "../../shared/logsIngestion";
import type { SentinelAuditRecord } from "../../shared/sentinelRecord";
import { startSandboxStack, type SandboxStack } from "../../sandbox/stack";
import { auditRow, isoMicros } from "../support/auditRows";
import { runCli } from "../support/cli";
import { assessReconciliation, reconciliationCheck } from "../../shared/checks/reconciliation";
import { Budget } from "../../shared/checks/timing";
import { reconcileHours } from "../../shared/reconcile/compare";
import { RESEND_PREFIX, resendMissing } from "../../shared/reconcile/resend";
import type { IngestionSink } from "../../shared/export/ports";
import { eventIdRowsQuery } from "../../shared/reconcile/kql";
import { LOG_ANALYTICS_QUERY_SCOPE } from "../../shared/logAnalyticsQuery";
import { LogsQueryClient } from "@azure/monitor-query-logs";
import { analyse, globalsFor, readTables } from "../infra/support/kusto";
import { containerFor, identityCredential } from "../support/exportHarness";

// Reconciliation end to end: the export (real driver, Azurite, Logs Ingestion client) fills both
// sinks, then the real Logs Query client asks the stand-in what it holds, and the report is compared
// with what the stand-in was told to drop or was sent twice.

const HOUR = 3_600_000;
const BASE = Math.floor((Date.now() - 5 * HOUR) / HOUR) * HOUR;
const FROM = new Date(BASE).toISOString();
const TO = new Date(BASE + 3 * HOUR).toISOString();
const quiet = { info: () => undefined, warn: () => undefined };

/** 10 events in each of 3 hours, from BASE. */
const ROWS = [0, 1, 2].flatMap((hour) => Array.from({ length: 10 }, (_, i) => auditRow(isoMicros((BASE + hour * HOUR + i * 60_000 + 123) * 1000))));
const ids = ROWS.map((row) => String(row.event_id));

let stack: SandboxStack;
let file: string;

function envFor(container: string): Record<string, string> {
  return { ...stack.contract.env, EXPORT_CONTAINER: container, EXPORT_START: FROM };
}

/** Exports every row into a fresh container, with the stand-in dropping `dropIds`; returns the container's store. */
async function exported(container: string, dropIds: string[] = []): Promise<BlobExportStore> {
  stack.logsIngestion.reset();
  if (dropIds.length > 0) stack.logsIngestion.setFaults({ drop: { eventIds: dropIds } });
  const env = envFor(container);
  const summary = await runExportCycle(loadConfig(env), env, quiet);
  expect(summary.sources.every((s) => s.error === undefined)).toBe(true);
  stack.logsIngestion.setFaults({});
  return new BlobExportStore(containerFor(stack, container));
}

function query(container: string): LogAnalyticsQuery {
  return new LogAnalyticsQuery(loadConfig(envFor(container)).logAnalyticsQuery!, identityCredential());
}

const window = () => ({ fromMs: BASE, toMs: BASE + 3 * HOUR, nowMs: Date.now() });

beforeAll(async () => {
  file = join(mkdtempSync(join(tmpdir(), "reconcile-")), "events.jsonl");
  writeFileSync(file, ROWS.map((row) => JSON.stringify(row)).join("\n"));
  stack = await startSandboxStack({ eventsFile: file });
  process.env.IDENTITY_ENDPOINT = stack.contract.env.IDENTITY_ENDPOINT;
  process.env.IDENTITY_HEADER = stack.contract.env.IDENTITY_HEADER;
}, 120_000);

afterAll(async () => {
  await stack?.close();
});

describe("reconcile through the Logs Query client against the stand-in", () => {
  it("reports nothing missing after a clean export, and keeps the summary for the quick health check", async () => {
    const store = await exported("rec-clean");
    const report = await reconcile(store, query("rec-clean"), window());
    expect(report.status).toBe("clean");
    expect(report.totals).toMatchObject({ hours: 3, archived: 30, missing: 0, duplicateRows: 0, unexpected: 0 });
    expect(report.hours).toEqual([]);
    const last = await readLastReconciliation(new BlobExportStore(containerFor(stack, "rec-clean")));
    expect(last).toMatchObject({ version: 1, status: "clean", from: FROM, to: TO, totals: { archived: 30 } });
  });

  it("reports rows the service accepted but dropped, per hour with their EventIds and the DCR transform as the likely cause", async () => {
    const dropped = [ids[3]!, ids[14]!, ids[15]!];
    const store = await exported("rec-dropped", dropped);
    expect(stack.logsIngestion.stats().dropped).toBe(3);
    const report = await reconcile(store, query("rec-dropped"), window());
    expect(report.status).toBe("differences");
    expect(report.totals).toMatchObject({ missing: 3, missingByCause: { dcr_transform: 3 }, duplicateRows: 0 });
    expect(report.hours.map((h) => [h.hour, h.missing])).toEqual([
      [FROM, [{ cause: "dcr_transform", count: 1, eventIds: [ids[3]] }]],
      [new Date(BASE + HOUR).toISOString(), [{ cause: "dcr_transform", count: 2, eventIds: [ids[14], ids[15]].sort() }]],
    ]);
    expect(report.explanations.join(" ")).toMatch(/transformKql/);
    expect((await readLastReconciliation(new BlobExportStore(containerFor(stack, "rec-dropped"))))?.status).toBe("differences");
  });

  it("names a table that holds none of the window's events as a wrong stream or table", async () => {
    const store = await exported("rec-nothing", ids);
    const report = await reconcile(store, query("rec-nothing"), window());
    expect(report.totals).toMatchObject({ missing: 30, missingByCause: { wrong_stream_or_table: 30 } });
  });

  it("reports a call sent twice as duplicates, with the re-send window explained", async () => {
    const store = await exported("rec-twice");
    const again = stack.logsIngestion.received("Custom-DatabricksAudit").filter((r) => [ids[20], ids[21]].includes(String(r.EventId)));
    const config = loadConfig(envFor("rec-twice"));
    await new LogsIngestionSink(config.logsIngestion!, identityCredential()).send(again as unknown as SentinelAuditRecord[]);
    const report = await reconcile(store, query("rec-twice"), window());
    expect(report.totals).toMatchObject({ missing: 0, duplicateEventIds: 2, duplicateRows: 2 });
    expect(report.hours).toHaveLength(1);
    expect(report.hours[0]!.duplicates).toEqual([ids[20], ids[21]].sort().map((eventId) => ({ eventId, rows: 2 })));
    expect(report.explanations.join(" ")).toMatch(/idempotency key/);
  });

  it("dbx-audit reconcile: exit 0 when clean, 4 with the missing EventIds when not, 2 with nothing queried on bad flags", async () => {
    await exported("rec-cli-clean");
    const clean = await runCli(["reconcile", "--since", FROM, "--until", TO], { ...process.env, ...envFor("rec-cli-clean") });
    expect(clean.stderr).toBe("");
    expect(clean.code).toBe(0);
    expect(clean.stdout).toMatch(/CLEAN: every archived event is in Log Analytics exactly once/);

    await exported("rec-cli-dropped", [ids[7]!]);
    const differ = await runCli(["reconcile", "--since", FROM, "--until", TO, "--json"], { ...process.env, ...envFor("rec-cli-dropped") });
    expect(differ.code).toBe(4);
    const report = JSON.parse(differ.stdout) as { totals: { missing: number }; hours: { missing: { eventIds: string[] }[] }[] };
    expect(report.totals.missing).toBe(1);
    expect(report.hours[0]!.missing[0]!.eventIds).toEqual([ids[7]]);

    const queriesBefore = stack.logsIngestion.stats().queries;
    for (const args of [
      ["--since", "2026-02-30T00:00:00Z", "--until", TO],
      ["--since", TO, "--until", FROM],
      ["--until", "yesterday"],
    ]) {
      const bad = await runCli(["reconcile", ...args], { ...process.env, ...envFor("rec-cli-bad") });
      expect(bad.code, args.join(" ")).toBe(2);
      expect(bad.stderr).toMatch(/--(since|until)/);
      expect(bad.stderr).toMatch(/Nothing was read or written/);
    }
    const noWorkspace = await runCli(["reconcile"], {
      ...process.env,
      ...envFor("rec-cli-bad"),
      LOG_ANALYTICS_WORKSPACE_ID: "",
      LOG_ANALYTICS_QUERY_ENDPOINT: "",
    });
    expect(noWorkspace.code).toBe(2);
    expect(noWorkspace.stderr).toMatch(/LOG_ANALYTICS_WORKSPACE_ID is required/);
    expect(stack.logsIngestion.stats().queries).toBe(queriesBefore);
    expect(await new BlobExportStore(containerFor(stack, "rec-cli-bad")).readReconciliation().catch(() => null)).toBeNull();
  }, 60_000);
});

describe("the log_analytics_reconciliation check", () => {
  const check = (container: string, env: Record<string, string> = envFor(container)) =>
    reconciliationCheck(loadConfig(env), new BlobExportStore(containerFor(stack, container)), identityCredential(), Date.now(), new Budget(60_000));

  it("passes after a clean export and FAILs, with the DCR transform's fix, when accepted rows are missing", async () => {
    await exported("chk-clean");
    expect(await check("chk-clean")).toMatchObject({ status: "PASS", detail: expect.stringMatching(/30 archived event\(s\) .* once each/) as unknown });
    await exported("chk-dropped", [ids[0]!]);
    const failed = await check("chk-dropped");
    expect(failed.status).toBe("FAIL");
    expect(failed.detail).toMatch(/1 archived event\(s\) missing from Log Analytics \(1 dcr_transform\)/);
    expect(failed.remediation).toMatch(/transformKql/);
    expect((await readLastReconciliation(new BlobExportStore(containerFor(stack, "chk-dropped"))))?.hours[0]?.missing[0]?.eventIds).toEqual([ids[0]]);
  });

  it("FAILs naming the Log Analytics Reader role when the query is refused, and WARNs when no workspace is configured", async () => {
    await exported("chk-forbidden");
    stack.logsIngestion.setFaults({ forbidden: true });
    try {
      const refused = await check("chk-forbidden");
      expect(refused.status).toBe("FAIL");
      expect(refused.detail).toMatch(/HTTP 403/);
      expect(refused.remediation).toMatch(/Log Analytics Reader/);
    } finally {
      stack.logsIngestion.setFaults({});
    }
    const unset = await check("chk-forbidden", { ...envFor("chk-forbidden"), LOG_ANALYTICS_WORKSPACE_ID: "", LOG_ANALYTICS_QUERY_ENDPOINT: "" });
    expect(unset).toMatchObject({ status: "WARN", remediation: expect.stringMatching(/LOG_ANALYTICS_WORKSPACE_ID/) as unknown });
  });

  it("WARNs, not FAILs, for what the export's own records explain: not sent yet, dead-lettered, duplicates", () => {
    const hour = { hourStartMs: BASE, archived: ["a", "b", "c"], logAnalytics: new Map([["c", 2]]) };
    const report = reconcileHours(BASE, BASE + HOUR, [hour], { deadLettered: new Set(["a"]), notSentFromMs: BASE + 10 * 60_000 });
    expect(report.totals.missingByCause).toEqual({ dead_lettered: 1, not_yet_sent: 1 });
    const result = assessReconciliation(report);
    expect(result.status).toBe("WARN");
    expect(result.remediation).toMatch(/dbx-audit redrive/);
    expect(result.remediation).toMatch(/idempotency key/);
  });
});

describe("backfilled days", () => {
  it("explain their missing rows: archive only by choice (--sinks archive), or not sent yet while their slice runs", () => {
    const day = new Date(BASE).toISOString().slice(0, 10);
    const hour = { hourStartMs: BASE, archived: ["a", "b"], logAnalytics: new Map<string, number>() };
    const archiveOnly = reconcileHours(BASE, BASE + HOUR, [hour], { deadLettered: new Set(["a"]), backfillDays: new Map([[day, "archive_only"]]) });
    expect(archiveOnly.totals.missingByCause).toEqual({ dead_lettered: 1, archive_only: 1 });
    expect(archiveOnly.explanations.join(" ")).toContain("backfill start --from <day> --to <a later day> --sinks both");
    const running = reconcileHours(BASE, BASE + HOUR, [hour], { deadLettered: new Set(), backfillDays: new Map([[day, "not_yet_sent"]]) });
    expect(running.totals.missingByCause).toEqual({ not_yet_sent: 2 });
    // Another day's backfill explains nothing here.
    const other = reconcileHours(BASE, BASE + HOUR, [hour], { deadLettered: new Set(), backfillDays: new Map([["1999-01-01", "archive_only"]]) });
    expect(other.totals.missingByCause).toEqual({ wrong_stream_or_table: 2 });
  });
});

describe("the Logs Query stand-in", () => {
  const url = () => `${stack.contract.logAnalytics.queryEndpoint}/workspaces/${stack.contract.logAnalytics.workspaceId}/query`;
  const post = async (body: unknown, scope = LOG_ANALYTICS_QUERY_SCOPE) => {
    const token = await identityCredential().getToken(scope);
    const response = await fetch(url(), {
      method: "POST",
      headers: { authorization: `Bearer ${token.token}`, "content-type": "application/json" },
      body: JSON.stringify(body),
    });
    return { status: response.status, body: (await response.json()) as Record<string, unknown> };
  };
  const timespan = `${FROM}/${new Date(Date.now() + HOUR).toISOString()}`;

  it("answers the reconciliation query in the real API's shape, with the columns Kusto's analysis gives", async () => {
    await exported("standin-shape");
    const query = eventIdRowsQuery(BASE, BASE + HOUR);
    const { status, body } = await post({ query, timespan });
    expect(status).toBe(200);
    const tables = body.tables as { name: string; columns: { name: string; type: string }[]; rows: unknown[][] }[];
    expect(tables).toHaveLength(1);
    expect(tables[0]!.name).toBe("PrimaryResult");
    const analysed = analyse(query, globalsFor(readTables(join(__dirname, "..", ".."))));
    expect(tables[0]!.columns.map((c) => [c.name, c.type])).toEqual([...analysed.columns]);
    expect(tables[0]!.rows.map(([id]) => id).sort()).toEqual(ids.slice(0, 10).sort());
    expect(tables[0]!.rows.every(([, rows]) => rows === 1)).toBe(true);
  });

  it("sees only rows whose TimeGenerated is inside the timespan, as the service does", async () => {
    await exported("standin-timespan");
    const before = `${new Date(BASE - 2 * HOUR).toISOString()}/${new Date(BASE - HOUR).toISOString()}`;
    const { body } = await post({ query: eventIdRowsQuery(BASE, BASE + HOUR), timespan: before });
    expect((body.tables as { rows: unknown[] }[])[0]!.rows).toEqual([]);
  });

  it("refuses any other query, a bad timespan and a token for another audience, with the real API's error shape", async () => {
    for (const body of [
      { query: "DatabricksAudit_CL | take 10", timespan },
      { query: eventIdRowsQuery(BASE, BASE + HOUR).replace("DatabricksAudit_CL", "SecurityEvent"), timespan },
      { query: eventIdRowsQuery(BASE, BASE + HOUR), timespan: "P1D" },
      { timespan },
    ]) {
      const answer = await post(body);
      expect(answer.status, JSON.stringify(body)).toBe(400);
      expect(answer.body.error).toMatchObject({ code: "BadArgumentError", innererror: { code: expect.any(String) as unknown } });
    }
    expect((await post({ query: eventIdRowsQuery(BASE, BASE + HOUR), timespan }, "https://monitor.azure.com/.default")).status).toBe(401);
    // Through the SDK: its error carries the service's status and message.
    const client = new LogsQueryClient(identityCredential(), { endpoint: stack.contract.logAnalytics.queryEndpoint, retryOptions: { maxRetries: 0 } });
    await expect(client.queryWorkspace(stack.contract.logAnalytics.workspaceId, "DatabricksAudit_CL | count", { duration: "P1D" })).rejects.toMatchObject({
      statusCode: 400,
    });
    await expect(
      client.queryWorkspace("00000000-0000-4000-8000-000000000000", eventIdRowsQuery(BASE, BASE + HOUR), { startTime: new Date(BASE), endTime: new Date() }),
    ).rejects.toMatchObject({ statusCode: 404 });
  });

  it("drops every Nth record it answered 204 for, when told to", async () => {
    stack.logsIngestion.reset();
    stack.logsIngestion.setFaults({ drop: { everyNth: 3 } });
    const env = envFor("standin-nth");
    await runExportCycle(loadConfig(env), env, quiet);
    expect(stack.logsIngestion.stats()).toMatchObject({ dropped: 10, records: 20 });
    stack.logsIngestion.setFaults({});
    const report = await reconcile(new BlobExportStore(containerFor(stack, "standin-nth")), query("standin-nth"), window());
    expect(report.totals.missing).toBe(10);
    expect(() => stack.logsIngestion.setFaults({ drop: { everyNth: 0 } })).toThrow(/everyNth/);
  });
});

describe("reconcile --resend", () => {
  const rowsOf = (id: string) => stack.logsIngestion.received("Custom-DatabricksAudit").filter((r) => r.EventId === id).length;
  const sinkFor = (container: string) => new LogsIngestionSink(loadConfig(envFor(container)).logsIngestion!, identityCredential());

  it("sends what Log Analytics lost again from the archive, once, even when run twice or stopped half-way", async () => {
    const lost = [ids[4]!, ids[25]!];
    const store = await exported("resend", lost);
    const first = await reconcile(store, query("resend"), window());
    expect(first.totals.missing).toBe(2);

    // The first attempt's sends fail: the records stay in their blob under the reconcile prefix.
    const failing: IngestionSink = { send: () => Promise.reject(new Error("simulated outage")), probe: () => Promise.resolve(503) };
    const stopped = await resendMissing(store, failing, first, Date.now());
    expect(stopped).toMatchObject({ accepted: 0, stillRefused: 2, recentlyResent: 0 });
    // One blob per hour: the two events are two hours apart.
    expect(stopped.remaining).toHaveLength(2);
    expect(stopped.remaining.every((name) => name.startsWith(RESEND_PREFIX))).toBe(true);
    expect(lost.map(rowsOf)).toEqual([0, 0]);

    // Run again with the same report: nothing new is written for events just re-sent; the left-over blob goes out.
    const again = await resendMissing(store, sinkFor("resend"), first, Date.now());
    expect(again).toMatchObject({ accepted: 2, stillRefused: 0, recentlyResent: 2, remaining: [] });
    expect(lost.map(rowsOf)).toEqual([1, 1]);
    expect(await store.listDeadLetters()).toEqual([]);

    // Once more, as a user would before the rows show up: still nothing sent twice.
    const third = await resendMissing(store, sinkFor("resend"), first, Date.now());
    expect(third).toMatchObject({ accepted: 0, recentlyResent: 2 });
    expect(lost.map(rowsOf)).toEqual([1, 1]);
    const after = await reconcile(store, query("resend"), window());
    expect(after.status).toBe("clean");
  });

  it("leaves the export's own dead letters and not-yet-sent events alone", async () => {
    const store = await exported("resend-alone");
    await store.writeDeadLetters("dead-letter/logs-ingestion/source=default/x-call0.jsonl", []);
    const report = reconcileHours(BASE, BASE + HOUR, [{ hourStartMs: BASE, archived: [ids[0]!, ids[1]!], logAnalytics: new Map() }], {
      deadLettered: new Set([ids[0]!]),
      notSentFromMs: BASE,
    });
    const result = await resendMissing(store, sinkFor("resend-alone"), report, Date.now());
    expect(result).toMatchObject({ blobs: 0, accepted: 0 });
    expect(await store.listDeadLetters()).toEqual(["dead-letter/logs-ingestion/source=default/x-call0.jsonl"]);
  });

  it("leaves days archived by a backfill with --sinks archive to the backfill, so the two never both send them", async () => {
    const store = await exported("resend-backfilled");
    const day = new Date(BASE).toISOString().slice(0, 10);
    const report = reconcileHours(BASE, BASE + HOUR, [{ hourStartMs: BASE, archived: [ids[0]!, ids[1]!], logAnalytics: new Map() }], {
      deadLettered: new Set(),
      backfillDays: new Map([[day, "archive_only"]]),
    });
    expect(report.totals.missingByCause).toEqual({ archive_only: 2 });
    expect(await resendMissing(store, sinkFor("resend-backfilled"), report, Date.now())).toMatchObject({ blobs: 0, accepted: 0 });
  });

  it("dbx-audit reconcile --resend --json reports what it re-sent", async () => {
    await exported("resend-cli", [ids[11]!]);
    const result = await runCli(["reconcile", "--since", FROM, "--until", TO, "--resend", "--json"], { ...process.env, ...envFor("resend-cli") });
    expect(result.code).toBe(4);
    expect((JSON.parse(result.stdout) as { resent: { accepted: number } }).resent.accepted).toBe(1);
    expect(rowsOf(ids[11]!)).toBe(1);
  }, 30_000);
});
