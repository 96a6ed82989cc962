import * as functions from "@azure/functions";
import { BlobServiceClient } from "@azure/storage-blob";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { startSandboxStack, type SandboxStack } from "../../sandbox/stack";
import { checkPrerequisites } from "../../functions/checkPrerequisites";
import { BlobExportStore, CHECK_CACHE_BLOB, STATE_BLOB } from "../../shared/blobStore";
import { loadConfig } from "../../shared/config";
import { Warehouse } from "../../shared/databricks";
import { initialSourceState, initialState, type ExportState } from "../../shared/export/state";
import { FULL_CHECK_CACHE_TTL_MS, QUICK_CHECKS, runChecks, type CheckReport, type CheckResult } from "../../shared/prerequisites";
import { auditRow, isoMicros } from "../support/auditRows";
import { expectNoSecrets, writeDetectionsState, processEnvOverrides, QUICK_REPORT_ORDER } from "../support/checkHelpers";

// The quick check (Blob only), the full check's cache and the SQL text check, against the whole
// local stack. The warehouse stand-in counts the Thrift sessions and statements it serves: that
// is how "no warehouse session" is proved, through the real driver the full check uses.
const { HttpRequest, InvocationContext } = functions;

let stack: SandboxStack;
let store: BlobExportStore;
const env = processEnvOverrides();
const setEnv = env.set;

beforeAll(async () => {
  // Synthetic rows include SQL warehouse commandSubmit and notebook runCommand events, with their SQL text.
  stack = await startSandboxStack({ synthetic: 300 });
  setEnv({ ...stack.contract.env, DATABRICKS_ACCESS_TOKEN: stack.contract.databricks.token });
  store = new BlobExportStore(
    BlobServiceClient.fromConnectionString(stack.contract.storage.connectionString).getContainerClient(stack.contract.storage.container),
  );
});

afterAll(async () => {
  await stack?.close();
  env.restore();
});

beforeEach(async () => {
  stack.warehouse.setFaults({});
  stack.logsIngestion.setFaults({});
  setEnv({ DATABRICKS_ACCESS_TOKEN: stack.contract.databricks.token });
  await store.deletePaths([CHECK_CACHE_BLOB]);
});

const warehouseUse = (): { sessions: number; statements: number } => {
  const stats = stack.warehouse.stats();
  return { sessions: stats.sessionsOpened, statements: stats.statements };
};

async function invoke(query = ""): Promise<{ status: number; body: CheckReport & { error?: string }; text: string; logged: string[] }> {
  const logged: string[] = [];
  const request = new HttpRequest({ method: "GET", url: `http://localhost:7071/api/checkPrerequisites?code=function-key-value${query}` });
  const context = new InvocationContext({
    functionName: "checkPrerequisites",
    invocationId: "test-invocation",
    logHandler: (level, ...args) => logged.push(`${level}: ${args.map((a) => (typeof a === "string" ? a : JSON.stringify(a))).join(" ")}`),
  });
  const response = await checkPrerequisites(request, context);
  return { status: response.status ?? 200, body: response.jsonBody as CheckReport & { error?: string }, text: JSON.stringify(response.jsonBody), logged };
}

/** A reconciliation summary as `dbx-audit reconcile` or a full check leaves it, `missing` events lost after acceptance. */
async function writeReconciliation(checkedAt: string, missing = 0): Promise<void> {
  const from = hoursAgo(24.25);
  const to = hoursAgo(0.25);
  const hours = missing
    ? [{ hour: from.slice(0, 13), missing: [{ cause: "dcr_transform", count: missing, eventIds: ["e1"] }], duplicateRows: 0, unexpected: 0 }]
    : [];
  await store.writeReconciliation({
    version: 1,
    checkedAt,
    from,
    to,
    status: missing ? "differences" : "clean",
    totals: { archived: 300, missing, missingByCause: missing ? { dcr_transform: missing } : {}, duplicateRows: 0, unexpected: 0 },
    hours,
    explanations: missing ? ["The DCR's transformKql drops rows."] : [],
  });
}

const check = (report: CheckReport, name: CheckResult["name"]): CheckResult | undefined => report.checks.find((c) => c.name === name);
const hoursAgo = (hours: number): string => new Date(Date.now() - hours * 3_600_000).toISOString();

async function writeState(state: ExportState | null): Promise<void> {
  const current = await store.readState();
  if (state === null) {
    if (current) await store.deletePaths([STATE_BLOB]);
    return;
  }
  await store.writeState(state, current?.etag ?? null);
}

/** A state whose last success is 9 h old (hourly schedule: beyond six intervals) and whose Log Analytics is 3 batches behind after a 403. */
function staleAndLagging(): ExportState {
  const source = initialSourceState((Date.now() - 30 * 3_600_000) * 1000);
  source.cursor = { timeUs: (Date.now() - 9 * 3_600_000) * 1000, eventId: "" };
  source.archivedBatches = 5;
  source.archivedEvents = 500;
  source.logAnalytics = {
    nextBatch: 2,
    sentCalls: [],
    doneEvents: 200,
    deadLettered: 0,
    laggingSince: hoursAgo(8),
    lastError: { at: hoursAgo(1), message: "HTTP 403 Forbidden", remediation: "Grant Monitoring Metrics Publisher on the DCR." },
  };
  return { ...initialState(), lastRunAt: hoursAgo(9), lastSuccessAt: hoursAgo(9), sources: { default: source } };
}

describe("the quick check (Blob only)", () => {
  it("opens no warehouse session, runs only the Blob checks, and still reports stale state and Log Analytics lag", async () => {
    await writeState(staleAndLagging());
    const before = warehouseUse();
    const report = await runChecks(process.env, process.env, { needs: { storage: true }, mode: "quick", maxRetries: 0 });
    expect(warehouseUse()).toEqual(before);
    expect(report.mode).toBe("quick");
    expect(report.checks.map((c) => c.name)).toEqual(QUICK_REPORT_ORDER);
    expect(report.checks.every((c) => QUICK_CHECKS.has(c.name))).toBe(true);
    expect(check(report, "export_freshness")).toMatchObject({ status: "FAIL", source: "default" });
    expect(check(report, "export_freshness")!.detail).toMatch(/Last successful export .* \(9 h ago\)/);
    const lag = check(report, "log_analytics_lag")!;
    expect(lag.status).toBe("FAIL");
    expect(lag.detail).toMatch(/3 batch\(es\) \(300 events\) behind the archive/);
    expect(lag.remediation).toContain("Monitoring Metrics Publisher");
    expect(report.status).toBe("FAIL");
    expectNoSecrets(stack.contract, JSON.stringify(report));
  });

  it("PASSes on a fresh state with no warehouse session, through the HTTP function (?quick=1) as well", async () => {
    const fresh = initialSourceState((Date.now() - 2 * 3_600_000) * 1000);
    fresh.cursor = { timeUs: (Date.now() - 20 * 60_000) * 1000, eventId: "" };
    await writeState({ ...initialState(), lastRunAt: hoursAgo(0.2), lastSuccessAt: hoursAgo(0.2), sources: { default: fresh } });
    await writeDetectionsState(stack.contract.storage, Date.now() - 3_600_000);
    await writeReconciliation(hoursAgo(1));
    const before = warehouseUse();
    const { status, body, text } = await invoke("&quick=1");
    expect(warehouseUse()).toEqual(before);
    expect(body.checks.filter((c) => c.status !== "PASS")).toEqual([]);
    expect(status).toBe(200);
    expect(body.mode).toBe("quick");
    expect(body.cache).toBeUndefined();
    expect(body.checks.some((c) => c.name === "warehouse_connectivity")).toBe(false);
    expectNoSecrets(stack.contract, text);
    expect(text).not.toContain("function-key-value");
  });

  it("reports the last reconciliation from Blob: its differences, its age, and none at all", async () => {
    await writeState(null);
    const quick = async (): Promise<CheckResult> =>
      check(await runChecks(process.env, process.env, { needs: { storage: true }, mode: "quick", maxRetries: 0 }), "log_analytics_reconciliation")!;
    const before = warehouseUse();
    await store.deletePaths(["_state/reconciliation.json"]);
    expect(await quick()).toMatchObject({ status: "WARN", detail: expect.stringMatching(/No reconciliation has run yet/) as string });
    await writeReconciliation(hoursAgo(2), 7);
    const lost = await quick();
    expect(lost.status).toBe("FAIL");
    expect(lost.detail).toMatch(/7 archived event\(s\) missing from Log Analytics \(7 dcr_transform\).*\(as of .*, 120 min ago\)/);
    await writeReconciliation(hoursAgo(60));
    expect(await quick()).toMatchObject({ status: "WARN", detail: expect.stringMatching(/older than 48 hours/) as string });
    expect(warehouseUse()).toEqual(before);
  });

  it("dbx-audit's quick mode with the warehouse's token wrong still opens nothing and does not report the warehouse", async () => {
    setEnv({ DATABRICKS_ACCESS_TOKEN: `dapi${"f".repeat(32)}` });
    const before = warehouseUse();
    const report = await runChecks(process.env, process.env, { mode: "quick", maxRetries: 0 });
    expect(warehouseUse()).toEqual(before);
    expect(report.checks.filter((c) => c.status === "FAIL").map((c) => c.name)).not.toContain("warehouse_connectivity");
  });

  it("refuses a malformed flag with 400 naming it, running nothing", async () => {
    const before = warehouseUse();
    const { status, body } = await invoke("&quick=yes");
    expect(status).toBe(400);
    expect(body.error).toBe("quick must be 1 or 0 (or true/false); got 'yes'.");
    expect((await invoke("&refresh=")).body.error).toMatch(/^refresh must be 1 or 0/);
    expect(warehouseUse()).toEqual(before);
  });
});

describe("the full check's cache", () => {
  it("serves a repeated full check from the cache without a warehouse session, says so, and refresh=1 runs it again", async () => {
    const start = warehouseUse();
    const first = await invoke();
    const afterFirst = warehouseUse();
    expect(afterFirst.sessions).toBe(start.sessions + 1);
    expect(first.body.mode).toBe("full");
    expect(first.body.cache).toEqual({
      fromCache: false,
      computedAt: first.body.checkedAt,
      expiresAt: new Date(Date.parse(first.body.checkedAt) + FULL_CHECK_CACHE_TTL_MS).toISOString(),
    });

    const second = await invoke();
    expect(warehouseUse()).toEqual(afterFirst);
    expect(second.body.cache).toEqual({ ...first.body.cache, fromCache: true });
    expect(second.body.checks).toEqual(first.body.checks);
    expect(second.status).toBe(first.status);
    expect(second.logged.some((line) => line.includes(`prerequisite checks ${first.body.status} from the cache of ${first.body.checkedAt} (full)`))).toBe(true);

    const refreshed = await invoke("&refresh=1");
    expect(warehouseUse().sessions).toBe(afterFirst.sessions + 1);
    expect(refreshed.body.cache?.fromCache).toBe(false);
    expect(Date.parse(refreshed.body.checkedAt)).toBeGreaterThanOrEqual(Date.parse(first.body.checkedAt));

    // What the blob holds is the scrubbed report: no token, key or connection string.
    const cached = await BlobServiceClient.fromConnectionString(stack.contract.storage.connectionString)
      .getContainerClient(stack.contract.storage.container)
      .getBlobClient(CHECK_CACHE_BLOB)
      .downloadToBuffer();
    expectNoSecrets(stack.contract, cached.toString("utf8"));
    for (const response of [first, second, refreshed]) expectNoSecrets(stack.contract, response.text + response.logged.join("\n"));
  });

  it("misses for other settings (another token) and for a report older than the TTL", async () => {
    await invoke();
    const afterFirst = warehouseUse();
    setEnv({ DATABRICKS_ACCESS_TOKEN: stack.contract.databricks.noGrantToken });
    const other = await invoke();
    expect(warehouseUse().sessions).toBe(afterFirst.sessions + 1);
    expect(other.body.cache?.fromCache).toBe(false);
    expect(check(other.body, "system_table_access")?.status).toBe("FAIL");
    expect(other.status).toBe(503);

    // Age the cached entry past the TTL: the next call runs again.
    const blob = BlobServiceClient.fromConnectionString(stack.contract.storage.connectionString)
      .getContainerClient(stack.contract.storage.container)
      .getBlockBlobClient(CHECK_CACHE_BLOB);
    const entry = JSON.parse((await blob.downloadToBuffer()).toString("utf8")) as { report: CheckReport };
    entry.report.checkedAt = new Date(Date.now() - FULL_CHECK_CACHE_TTL_MS - 1_000).toISOString();
    const body = JSON.stringify(entry);
    await blob.upload(body, Buffer.byteLength(body));
    const before = warehouseUse();
    const aged = await invoke();
    expect(warehouseUse().sessions).toBe(before.sessions + 1);
    expect(aged.body.cache?.fromCache).toBe(false);
  });

  it("runs the checks when the cached entry is not a report (a foreign or partial blob)", async () => {
    const blob = BlobServiceClient.fromConnectionString(stack.contract.storage.connectionString)
      .getContainerClient(stack.contract.storage.container)
      .getBlockBlobClient(CHECK_CACHE_BLOB);
    await blob.upload("{not json", 9);
    const before = warehouseUse();
    const { body } = await invoke();
    expect(warehouseUse().sessions).toBe(before.sessions + 1);
    expect(body.cache?.fromCache).toBe(false);
  });
});

describe("sql_text_visibility (the full check)", () => {
  const fullCheck = (nowMs?: number): Promise<CheckReport> =>
    runChecks(process.env, process.env, { needs: { storage: true }, maxRetries: 0, ...(nowMs === undefined ? {} : { now: () => nowMs }) });

  it("PASSes when recent SQL warehouse and notebook commands carry their SQL text", async () => {
    const result = check(await fullCheck(), "sql_text_visibility")!;
    expect(result).toMatchObject({ status: "PASS", source: "default" });
    expect(result.detail).toMatch(/^\d+ of \d+ databrickssql\.commandSubmit, notebook\.runCommand events in the last 24 h carry their SQL text/);
  });

  it("WARNs with the fix when the identity is not in databricks_pii_access (the rows come without SQL text)", async () => {
    stack.warehouse.setFaults({ noPiiAccess: true });
    const report = await fullCheck();
    const result = check(report, "sql_text_visibility")!;
    expect(result.status).toBe("WARN");
    expect(result.detail).toMatch(
      /^None of the \d+ databrickssql\.commandSubmit, notebook\.runCommand events in the last 24 h shows its SQL text in request_params\.commandText \(absent, empty or <REDACTED>\)/,
    );
    expect(result.remediation).toMatch(/^Add the identity the export reads with to the account-level group databricks_pii_access/);
    // The other checks are unaffected: the reader still reads the table.
    expect(check(report, "system_table_access")?.status).toBe("PASS");
  });

  it("the stand-in serves such a reader the statement text masked and SQL definitions left out, through the real driver", async () => {
    const at = isoMicros((Date.parse("2003-06-01T12:00:00Z") + 1) * 1000);
    const definition = { full_name_arg: "main.sales.v_emea", view_definition: "SELECT * FROM main.sales.orders WHERE region = 'EMEA'" };
    await stack.warehouse.appendRows([
      auditRow(at, { service_name: "databrickssql", action_name: "commandSubmit", request_params: { commandText: "SELECT 42", warehouseId: "w1" } }),
      auditRow(at, { service_name: "unityCatalog", action_name: "createView", request_params: definition }),
    ]);
    const { databricks } = loadConfig(process.env, { storage: false }).sources[0]!;
    const read = async (): Promise<Record<string, unknown>[]> => {
      const warehouse = await Warehouse.connect(databricks, undefined);
      try {
        const rows = await warehouse.all({
          sql: "SELECT action_name, request_params FROM system.access.audit WHERE event_date = CAST(:day AS DATE) ORDER BY action_name",
          params: { day: "2003-06-01" },
        });
        return rows.map((row) => ({ action: row.action_name, params: Object.fromEntries(Object.entries(row.request_params as object).sort()) }));
      } finally {
        await warehouse.close();
      }
    };
    expect(await read()).toEqual([
      { action: "commandSubmit", params: { commandText: "SELECT 42", warehouseId: "w1" } },
      { action: "createView", params: definition },
    ]);
    stack.warehouse.setFaults({ noPiiAccess: true });
    expect(await read()).toEqual([
      { action: "commandSubmit", params: { commandText: "<REDACTED>", warehouseId: "w1" } },
      { action: "createView", params: { full_name_arg: "main.sales.v_emea" } },
    ]);
  });

  it("WARNs on SQL text that is absent, empty or masked in another case, and PASSes on one event that shows it", async () => {
    const dayMs = Date.parse("2002-03-01T12:00:00Z");
    const at = (minutes: number): string => isoMicros((dayMs - minutes * 60_000) * 1000);
    const submit = (minutes: number, params: Record<string, string>) =>
      auditRow(at(minutes), { service_name: "databrickssql", action_name: "commandSubmit", request_params: { warehouseId: "w1", ...params } });
    await stack.warehouse.appendRows([
      submit(10, {}),
      submit(20, { commandText: "" }),
      submit(30, { commandText: "<Redacted>" }),
      auditRow(at(40), { service_name: "notebook", action_name: "runCommand", request_params: { commandText: " <REDACTED> " } }),
      // Another action's text does not count.
      auditRow(at(50), { service_name: "databrickssql", action_name: "commandFinish", request_params: { commandText: "SELECT 1" } }),
    ]);
    const masked = check(await fullCheck(dayMs), "sql_text_visibility")!;
    expect(masked.status).toBe("WARN");
    expect(masked.detail).toMatch(/^None of the 4 databrickssql\.commandSubmit, notebook\.runCommand events/);

    await stack.warehouse.appendRows([submit(5, { commandText: "SELECT count(*) FROM main.sales.orders" })]);
    const shown = check(await fullCheck(dayMs), "sql_text_visibility")!;
    expect(shown.status).toBe("PASS");
    expect(shown.detail).toMatch(/^1 of 5 databrickssql\.commandSubmit, notebook\.runCommand events in the last 24 h carry their SQL text/);
  });

  it("cannot tell (PASS, saying so) when no such events are in the window", async () => {
    const longAgo = Date.parse("2001-01-01T00:00:00Z");
    await stack.warehouse.appendRows([auditRow(isoMicros((longAgo - 3_600_000) * 1000))]);
    const result = check(await fullCheck(longAgo), "sql_text_visibility")!;
    expect(result.status).toBe("PASS");
    expect(result.detail).toMatch(
      /No databrickssql\.commandSubmit, notebook\.runCommand events in the last 24 h, so whether this identity sees SQL text cannot be told yet/,
    );
  });

  it("is skipped, FAIL, when the identity cannot read the table", async () => {
    setEnv({ DATABRICKS_ACCESS_TOKEN: stack.contract.databricks.noGrantToken });
    const result = check(await fullCheck(), "sql_text_visibility")!;
    expect(result).toMatchObject({ status: "FAIL", detail: "skipped: system_table_access failed." });
  });
});
