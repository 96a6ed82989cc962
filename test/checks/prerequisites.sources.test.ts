import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as functions from "@azure/functions";
import { BlobServiceClient } from "@azure/storage-blob";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { formatReport } from "../../cli/checkCommand";
import { checkPrerequisites } from "../../functions/checkPrerequisites";
import { startSandboxStack, type SandboxStack } from "../../sandbox/stack";
import { BlobExportStore } from "../../shared/blobStore";
import { initialSourceState, initialState, type ExportState, type SourceState } from "../../shared/export/state";
import { PER_SOURCE_CHECKS, runChecks, type CheckName, type CheckReport, type CheckResult } from "../../shared/prerequisites";
import { auditRow, isoMicros } from "../support/auditRows";
import { expectNoSecrets as expectNoSecretsIn, writeDetectionsState } from "../support/checkHelpers";
import { closedPort } from "../support/ports";

// Two SQL warehouse stand-ins (two regions) in one stack, both listed in DATABRICKS_SOURCES: each
// source's checks run on their own, at the same time, and report under the source's name, so
// a warehouse that is down, cold or refuses in one region neither hides nor delays the other.

const REGION1_WORKSPACE = "1111111111111111";
const REGION2_WORKSPACE = "2222222222222222";

let stack: SandboxStack;
let store: BlobExportStore;
let eventsDir: string;

interface Entry {
  name: string;
  serverHostname: string;
  httpPath: string;
  workspaceIds?: string[];
  accessTokenSetting?: string;
}

beforeAll(async () => {
  eventsDir = await mkdtemp(join(tmpdir(), "checks-sources-"));
  const now = Date.now();
  const file = async (name: string, workspace: string): Promise<string> => {
    const rows = [1, 2, 3].map((h) => auditRow(isoMicros((now - h * 3_600_000) * 1000), { workspace_id: workspace }));
    const path = join(eventsDir, name);
    await writeFile(path, rows.map((row) => JSON.stringify(row)).join("\n"));
    return path;
  };
  stack = await startSandboxStack({ eventsFiles: [await file("region1.jsonl", REGION1_WORKSPACE), await file("region2.jsonl", REGION2_WORKSPACE)] });
  process.env.IDENTITY_ENDPOINT = stack.contract.env.IDENTITY_ENDPOINT;
  process.env.IDENTITY_HEADER = stack.contract.env.IDENTITY_HEADER;
  store = new BlobExportStore(
    BlobServiceClient.fromConnectionString(stack.contract.storage.connectionString).getContainerClient(stack.contract.storage.container),
  );
  await writeDetectionsState(stack.contract.storage, Math.floor(Date.now() / 3_600_000) * 3_600_000);
});

afterAll(async () => {
  await stack?.close();
  if (eventsDir) await rm(eventsDir, { recursive: true, force: true });
  delete process.env.IDENTITY_ENDPOINT;
  delete process.env.IDENTITY_HEADER;
});

beforeEach(async () => {
  for (const warehouse of stack.warehouses) warehouse.setFaults({});
  await writeState(currentState());
});

/** region1 by the managed identity, region2 by its own personal access token; each with its own workspace. */
function entries(): [Entry, Entry] {
  const [region1, region2] = stack.contract.databricksSources;
  return [
    { name: region1!.name, serverHostname: region1!.serverHostname, httpPath: region1!.httpPath, workspaceIds: [REGION1_WORKSPACE] },
    {
      name: region2!.name,
      serverHostname: region2!.serverHostname,
      httpPath: region2!.httpPath,
      workspaceIds: [REGION2_WORKSPACE],
      accessTokenSetting: "DATABRICKS_TOKEN_REGION2",
    },
  ];
}

/** The settings an admin with several regions sets: DATABRICKS_SOURCES, not the single-source warehouse settings. */
function settingsFor(sources: Entry[], extra: Record<string, string | undefined> = {}): Record<string, string | undefined> {
  const settings: Record<string, string | undefined> = {
    ...stack.contract.env,
    DATABRICKS_SOURCES: JSON.stringify(sources),
    DATABRICKS_TOKEN_REGION2: stack.contract.databricks.token,
    ...extra,
  };
  delete settings.DATABRICKS_SERVER_HOSTNAME;
  delete settings.DATABRICKS_HTTP_PATH;
  return settings;
}

function check(settings: Record<string, string | undefined>, budgetMs = 30_000): Promise<CheckReport> {
  return runChecks(settings, settings, { needs: { storage: true }, budgetMs, maxRetries: 0 });
}

/** One source's results by name. */
function of(report: CheckReport, source: string): Record<CheckName, CheckResult> {
  return Object.fromEntries(report.checks.filter((c) => c.source === source).map((c) => [c.name, c])) as Record<CheckName, CheckResult>;
}

const DATABRICKS_CHECKS = ["warehouse_connectivity", "system_table_access", "audit_table_columns", "sql_text_visibility", "workspace_filter"] as const;

function sourceState(behindMs: number, logAnalytics: Partial<SourceState["logAnalytics"]> = {}, archivedBatches = 0): SourceState {
  const cursorUs = (Date.now() - behindMs) * 1000;
  const source = initialSourceState(cursorUs - 24 * 3_600_000_000);
  return { ...source, cursor: { timeUs: cursorUs, eventId: "" }, archivedBatches, logAnalytics: { ...source.logAnalytics, ...logAnalytics } };
}

/** Both sources archived up to the settle delay ago, Log Analytics current, the last run a success. */
function currentState(): ExportState {
  const recent = new Date(Date.now() - 10 * 60_000).toISOString();
  return { ...initialState(), lastRunAt: recent, lastSuccessAt: recent, sources: { region1: sourceState(15 * 60_000), region2: sourceState(15 * 60_000) } };
}

async function writeState(state: ExportState): Promise<void> {
  const current = await store.readState();
  await store.writeState(state, current?.etag ?? null);
}

function expectNoSecrets(text: string): void {
  expectNoSecretsIn(stack.contract, text);
}

describe("runChecks with two sources (one SQL warehouse per region)", () => {
  it("passes every check of both sources, each named in its results", async () => {
    const report = await check(settingsFor(entries()));

    expect(report.checks.filter((c) => c.status !== "PASS")).toEqual([]);
    expect(report.status).toBe("PASS");
    expect(report.sources).toEqual([
      { name: "region1", status: "PASS" },
      { name: "region2", status: "PASS" },
    ]);
    // Every per-source check once per source, in the configured order; the others once, without a source.
    expect(report.checks.map((c) => (c.source ? `${c.name}@${c.source}` : c.name))).toEqual([
      "configuration",
      "azure_authentication",
      "warehouse_connectivity@region1",
      "warehouse_connectivity@region2",
      "system_table_access@region1",
      "system_table_access@region2",
      "workspace_filter@region1",
      "workspace_filter@region2",
      "audit_table_columns@region1",
      "audit_table_columns@region2",
      "sql_text_visibility@region1",
      "sql_text_visibility@region2",
      "blob_container",
      "logs_ingestion",
      "export_freshness@region1",
      "export_freshness@region2",
      "log_analytics_lag@region1",
      "log_analytics_lag@region2",
      "log_analytics_reconciliation",
      "detections_state",
      "backfill",
    ]);
    for (const result of report.checks) {
      expect(result.source === undefined).toBe(!PER_SOURCE_CHECKS.has(result.name));
      if (result.source) expect(result.detail.startsWith(`source '${result.source}': `)).toBe(true);
    }
    const [one, two] = [of(report, "region1"), of(report, "region2")];
    expect(one.warehouse_connectivity.detail).toContain(entries()[0].httpPath);
    expect(two.warehouse_connectivity.detail).toContain(entries()[1].httpPath);
    // Each warehouse is asked about its own workspace.
    expect(one.workspace_filter.detail).toContain(`${REGION1_WORKSPACE}: 3`);
    expect(two.workspace_filter.detail).toContain(`${REGION2_WORKSPACE}: 3`);
    expect(one.export_freshness.detail).toMatch(/^source 'region1': The archive is complete up to /);
    const configuration = report.checks[0]!;
    expect(configuration.detail).toMatch(/2 sources: 'region1' \(warehouse .*Entra ID token.*'region2' \(warehouse .*personal access token/);
    expectNoSecrets(JSON.stringify(report));
  });

  it("fails the checks of a source whose warehouse is down, naming it, while the other source's pass", async () => {
    const [region1, region2] = entries();
    const down = `127.0.0.1:${await closedPort()}`;
    const report = await check(settingsFor([{ ...region1, serverHostname: down }, region2]));

    const [one, two] = [of(report, "region1"), of(report, "region2")];
    expect(one.warehouse_connectivity.status).toBe("FAIL");
    expect(one.warehouse_connectivity.detail).toMatch(/^source 'region1': Cannot reach the SQL warehouse.*ECONNREFUSED/);
    // The remediation is this source's: its warehouse, and where its hostname is set.
    expect(one.warehouse_connectivity.remediation).toMatch(new RegExp(`^Source 'region1' \\(warehouse https://${down}${region1.httpPath}\\): `));
    expect(one.warehouse_connectivity.remediation).toContain(`serverHostname of source 'region1' in DATABRICKS_SOURCES ('${down}'`);
    for (const name of ["system_table_access", "audit_table_columns", "sql_text_visibility", "workspace_filter"] as const) {
      expect(one[name]).toMatchObject({ status: "FAIL", detail: "source 'region1': skipped: warehouse_connectivity failed." });
    }
    for (const name of DATABRICKS_CHECKS) expect(two[name].status).toBe("PASS");
    expect(report.sources).toEqual([
      { name: "region1", status: "FAIL" },
      { name: "region2", status: "PASS" },
    ]);
    expect(report.status).toBe("FAIL");
    // The table says which source failed, the HTTP function's summary line too (below).
    const table = formatReport(report);
    expect(table).toMatch(/^\[FAIL\] warehouse_connectivity\s+source 'region1': Cannot reach/m);
    expect(table).toMatch(/^\[PASS\] warehouse_connectivity\s+source 'region2': Session opened/m);
    expect(table).toContain("Sources: region1 FAIL, region2 PASS.");
  });

  it("names the source's httpPath when no warehouse answers at it", async () => {
    const [region1, region2] = entries();
    const report = await check(settingsFor([region1, { ...region2, httpPath: "/sql/1.0/warehouses/0000000000000000" }]));
    const two = of(report, "region2");
    expect(two.warehouse_connectivity.status).toBe("FAIL");
    expect(two.warehouse_connectivity.detail).toMatch(/^source 'region2': /);
    expect(two.warehouse_connectivity.remediation).toContain("httpPath of source 'region2' in DATABRICKS_SOURCES");
    expect(of(report, "region1").workspace_filter.status).toBe("PASS");
  });

  it("a cold warehouse in one region spends its own time: the other region's checks finish within the budget", async () => {
    // The first source is the cold one: run one after the other, it would take the whole budget.
    stack.warehouses[0]!.setFaults({ coldStartMs: 120_000 });
    const started = Date.now();
    const report = await check(settingsFor(entries()), 6_000);
    expect(Date.now() - started).toBeLessThan(9_000);

    const [one, two] = [of(report, "region1"), of(report, "region2")];
    expect(one.warehouse_connectivity.status).toBe("WARN");
    expect(one.warehouse_connectivity.detail).toMatch(/^source 'region1': The warehouse is starting/);
    for (const name of DATABRICKS_CHECKS) expect(two[name].status).toBe("PASS");
    expect(report.status).toBe("WARN");
  });

  it("reports INSUFFICIENT_PERMISSIONS for the source whose token lacks the grants, and for no other", async () => {
    const settings = settingsFor(entries(), { DATABRICKS_TOKEN_REGION2: stack.contract.databricks.noGrantToken });
    const report = await check(settings);

    const [one, two] = [of(report, "region1"), of(report, "region2")];
    expect(two.warehouse_connectivity.status).toBe("PASS");
    expect(two.system_table_access.status).toBe("FAIL");
    expect(two.system_table_access.detail).toMatch(/^source 'region2': INSUFFICIENT_PERMISSIONS/);
    expect(two.system_table_access.remediation).toMatch(
      /^Source 'region2' \(warehouse https:\/\/127\.0\.0\.1:\d+\/sql\/1\.0\/warehouses\/\w+\): System tables/,
    );
    expect(two.system_table_access.remediation).toContain("SELECT ON TABLE system.access.audit");
    expect(two.workspace_filter).toMatchObject({ status: "FAIL", detail: "source 'region2': skipped: system_table_access failed." });
    for (const name of DATABRICKS_CHECKS) expect(one[name].status).toBe("PASS");
    expect(report.checks.filter((c) => /INSUFFICIENT_PERMISSIONS/.test(c.detail)).map((c) => c.source)).toEqual(["region2"]);
    expectNoSecrets(JSON.stringify(report));
    expectNoSecrets(formatReport(report));
  });

  it("a source whose entry is invalid is skipped, naming it and the field; the other source is still checked", async () => {
    const [region1, region2] = entries();
    const report = await check(settingsFor([region1, { ...region2, accessTokenSetting: "DATABRICKS_TOKEN_UNSET" }]));

    const configuration = report.checks[0]!;
    expect(configuration.status).toBe("FAIL");
    expect(configuration.detail).toContain("DATABRICKS_SOURCES source 'region2': accessTokenSetting names the app setting DATABRICKS_TOKEN_UNSET");
    const [one, two] = [of(report, "region1"), of(report, "region2")];
    for (const name of DATABRICKS_CHECKS) {
      expect(two[name]).toMatchObject({ status: "FAIL", detail: "source 'region2': skipped: configuration failed (DATABRICKS_SOURCES)." });
      expect(one[name].status).toBe("PASS");
    }
    expect(one.export_freshness.status).toBe("PASS");
  });

  it("reports the export state per source: the lagging source's archive and Log Analytics, not the other's", async () => {
    const state = currentState();
    state.sources.region2 = sourceState(
      10 * 3_600_000,
      {
        laggingSince: new Date(Date.now() - 9 * 3_600_000).toISOString(),
        lastError: { at: new Date().toISOString(), message: "Log Analytics refused the upload (HTTP 403)", remediation: "Assign the role on the DCR." },
      },
      3,
    );
    state.sources.region2.archivedEvents = 300;
    await writeState(state);
    const deadLetter = "dead-letter/logs-ingestion/source=region2/batch-1-call0.jsonl";
    const container = BlobServiceClient.fromConnectionString(stack.contract.storage.connectionString).getContainerClient(stack.contract.storage.container);
    await container.getBlockBlobClient(deadLetter).upload("{}\n", 3);
    try {
      const report = await check(settingsFor(entries()));
      const [one, two] = [of(report, "region1"), of(report, "region2")];

      expect(one.export_freshness.status).toBe("PASS");
      expect(two.export_freshness.status).toBe("FAIL");
      expect(two.export_freshness.detail).toMatch(/^source 'region2': The archive is complete up to .* \(10 h behind now/);
      expect(two.export_freshness.remediation).toMatch(/^Source 'region2' \(warehouse https:\/\/127\.0\.0\.1:\d+\/sql\/1\.0\/warehouses\/\w+\): /);
      expect(two.export_freshness.remediation).toContain("source 'region2'");

      expect(one.log_analytics_lag).toMatchObject({ status: "PASS", detail: "source 'region1': Log Analytics is current with the archive." });
      expect(two.log_analytics_lag.status).toBe("FAIL");
      expect(two.log_analytics_lag.detail).toMatch(/^source 'region2': Log Analytics is 3 batch\(es\) \(300 events\) behind the archive since .*HTTP 403/);
      expect(two.log_analytics_lag.detail).toContain(deadLetter);
      expect(two.log_analytics_lag.remediation).toContain("Assign the role on the DCR.");
      expect(report.sources).toEqual([
        { name: "region1", status: "PASS" },
        { name: "region2", status: "FAIL" },
      ]);
    } finally {
      await container.deleteBlob(deadLetter);
    }
  });

  it("keeps a source's own token out of every answer, even where a setting's value is echoed", async () => {
    // A token of no recognisable shape, pasted by mistake into a setting whose problem quotes the value.
    const token = "region2-token-of-no-known-shape";
    const report = await check(settingsFor(entries(), { DATABRICKS_TOKEN_REGION2: token, CHECK_WORKSPACE_LOOKBACK_HOURS: token }));
    expect(report.checks[0]!.detail).toContain("CHECK_WORKSPACE_LOOKBACK_HOURS must be");
    expect(of(report, "region2").warehouse_connectivity.status).toBe("FAIL");
    expect(JSON.stringify(report)).not.toContain(token);
    expect(formatReport(report)).not.toContain(token);
  });

  it("the HTTP function answers the per-source JSON, names each source in its summary line and echoes no token", async () => {
    const settings = settingsFor(entries(), { DATABRICKS_TOKEN_REGION2: stack.contract.databricks.noGrantToken });
    const saved = { ...process.env };
    for (const [name, value] of Object.entries(settings)) if (value !== undefined) process.env[name] = value;
    delete process.env.DATABRICKS_SERVER_HOSTNAME;
    delete process.env.DATABRICKS_HTTP_PATH;
    const logged: string[] = [];
    try {
      const response = await checkPrerequisites(
        new functions.HttpRequest({ method: "GET", url: "http://localhost:7071/api/checkPrerequisites" }),
        new functions.InvocationContext({
          functionName: "checkPrerequisites",
          invocationId: "sources",
          logHandler: (_level, ...args) => logged.push(args.join(" ")),
        }),
      );
      const body = response.jsonBody as CheckReport;
      expect(response.status).toBe(503);
      expect(body.sources).toEqual([
        { name: "region1", status: "PASS" },
        { name: "region2", status: "FAIL" },
      ]);
      expect(body.checks.find((c) => c.name === "system_table_access" && c.source === "region2")).toMatchObject({ status: "FAIL" });
      expect(logged.join("\n")).toMatch(/system_table_access\[region1\] PASS, system_table_access\[region2\] FAIL/);
      expectNoSecrets(JSON.stringify(body));
      expectNoSecrets(logged.join("\n"));
    } finally {
      for (const name of Object.keys(process.env)) if (!(name in saved)) delete process.env[name];
      Object.assign(process.env, saved);
    }
  });
});
