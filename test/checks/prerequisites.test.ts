import { BlobServiceClient } from "@azure/storage-blob";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { DEVSTORE_KEY } from "../../sandbox/azurite";
import { startSandboxStack, type SandboxStack } from "../../sandbox/stack";
import { BlobExportStore, RECONCILIATION_BLOB, STATE_BLOB } from "../../shared/blobStore";
import { initialState, type ExportState } from "../../shared/export/state";
import { DETECTIONS_STATE_BLOB } from "../../shared/detections/state";
import { runChecks, type CheckName, type CheckReport, type CheckResult } from "../../shared/prerequisites";
import { auditRow, isoMicros } from "../support/auditRows";
import { expectNoSecrets as expectNoSecretsIn, writeDetectionsState } from "../support/checkHelpers";
import { closedPort } from "../support/ports";

// Against the whole local stack: the SQL warehouse stand-in (real driver), Azurite, the Logs
// Ingestion stand-in and the managed identity endpoint. Identity failures have their own file
// (msal-node fixes the identity endpoint and its retry policy per process).

const ACTIVE_WORKSPACE = "2222222222222222";
const QUIET_WORKSPACE = "3333333333333333";

let stack: SandboxStack;
let settings: Record<string, string>;
let store: BlobExportStore;

beforeAll(async () => {
  stack = await startSandboxStack({ synthetic: 50 });
  settings = { ...stack.contract.env };
  process.env.IDENTITY_ENDPOINT = settings.IDENTITY_ENDPOINT;
  process.env.IDENTITY_HEADER = settings.IDENTITY_HEADER;
  const now = Date.now();
  await stack.warehouse.appendRows([1, 2, 3].map((h) => auditRow(isoMicros((now - h * 3_600_000) * 1000), { workspace_id: ACTIVE_WORKSPACE })));
  store = new BlobExportStore(
    BlobServiceClient.fromConnectionString(stack.contract.storage.connectionString).getContainerClient(stack.contract.storage.container),
  );
});

afterAll(async () => {
  await stack?.close();
  delete process.env.IDENTITY_ENDPOINT;
  delete process.env.IDENTITY_HEADER;
});

beforeEach(() => {
  stack.warehouse.setFaults({});
  stack.logsIngestion.setFaults({});
});

/** The checks as the HTTP function runs them (storage required), with a short budget and no SDK back-offs. */
function check(overrides: Record<string, string | undefined> = {}, options: { budgetMs?: number; lookbackHours?: number } = {}): Promise<CheckReport> {
  const merged: Record<string, string | undefined> = { ...settings, ...overrides };
  return runChecks(merged, merged, {
    needs: { storage: true },
    budgetMs: options.budgetMs ?? 30_000,
    maxRetries: 0,
    ...(options.lookbackHours ? { lookbackHours: options.lookbackHours } : {}),
  });
}

function byName(report: CheckReport): Record<CheckName, CheckResult> {
  return Object.fromEntries(report.checks.map((c) => [c.name, c])) as Record<CheckName, CheckResult>;
}

async function writeState(fields: Partial<ExportState> | null): Promise<void> {
  const current = await store.readState();
  if (fields === null) {
    if (current) await store.deletePaths([STATE_BLOB]);
    return;
  }
  await store.writeState({ ...initialState(), ...fields }, current?.etag ?? null);
}

const hoursAgo = (hours: number): string => new Date(Date.now() - hours * 3_600_000).toISOString();

function expectNoSecrets(report: CheckReport): void {
  expectNoSecretsIn(stack.contract, JSON.stringify(report));
}

describe("runChecks against the local stack", () => {
  it("reports a missing export state as WARN 'no export has run yet'", async () => {
    await writeState(null);
    const checks = byName(await check());
    expect(checks.export_freshness).toMatchObject({ status: "WARN", detail: expect.stringMatching(/no export has run yet/i) });
  });

  it("passes every check on a good setup, without adding rows to Log Analytics or touching the state blob", async () => {
    await writeState({ lastRunAt: hoursAgo(0.2), lastSuccessAt: hoursAgo(0.2) });
    await writeDetectionsState(stack.contract.storage, Math.floor(Date.now() / 3_600_000) * 3_600_000);
    const before = await store.readState();
    const received = stack.logsIngestion.received().length;

    const report = await check({ DATABRICKS_WORKSPACE_IDS: ACTIVE_WORKSPACE });

    expect(report.checks.filter((c) => c.status !== "PASS")).toEqual([]);
    expect(report.status).toBe("PASS");
    expect(report.checks).toHaveLength(14);
    const checks = byName(report);
    expect(checks.azure_authentication.detail).toMatch(/Databricks .*token obtained/);
    expect(checks.workspace_filter.detail).toContain(`${ACTIVE_WORKSPACE}: 3`);
    expect(checks.logs_ingestion.detail).toMatch(/No rows were added/);
    expect(stack.logsIngestion.received().length).toBe(received);
    expect(stack.logsIngestion.stats().records).toBe(received);
    // The reconciliation ran through the Logs Query API and kept its summary for the quick health check.
    expect(checks.log_analytics_reconciliation.detail).toMatch(/in Log Analytics, once each/);
    expect(checks.backfill.detail).toContain("No backfill has been started");
    // The probe blob is gone, and the state blob is untouched.
    const kept = new Set([STATE_BLOB, DETECTIONS_STATE_BLOB, RECONCILIATION_BLOB]);
    expect((await store.listNames("_state/")).filter((n) => !kept.has(n) && !n.startsWith("_state/ledger/"))).toEqual([]);
    expect((await store.readState())?.etag).toBe(before?.etag);
    expect(report.durationMs).toBeLessThan(30_000);
    expectNoSecrets(report);
  });

  it("fails warehouse_connectivity for a wrong access token, and skips what depends on it", async () => {
    const report = await check({ DATABRICKS_ACCESS_TOKEN: `dapi${"0".repeat(32)}` });
    const checks = byName(report);
    expect(report.status).toBe("FAIL");
    expect(checks.warehouse_connectivity.status).toBe("FAIL");
    expect(checks.warehouse_connectivity.detail).toMatch(/refused the credentials/);
    expect(checks.warehouse_connectivity.remediation).toMatch(/personal access token.*DATABRICKS_ACCESS_TOKEN/);
    for (const name of ["system_table_access", "audit_table_columns", "sql_text_visibility", "workspace_filter"] as const) {
      expect(checks[name]).toMatchObject({ status: "FAIL", detail: "skipped: warehouse_connectivity failed." });
    }
    // The others still ran.
    expect(checks.blob_container.status).toBe("PASS");
    expect(checks.logs_ingestion.status).toBe("PASS");
    expectNoSecrets(report);
  });

  it("fails warehouse_connectivity when the Entra ID token is for the wrong resource (scope)", async () => {
    const checks = byName(await check({ DATABRICKS_SCOPE: "https://management.azure.com/.default" }));
    expect(checks.azure_authentication.status).toBe("PASS");
    expect(checks.warehouse_connectivity.status).toBe("FAIL");
    expect(checks.warehouse_connectivity.remediation).toMatch(/service principal/);
    expect(checks.warehouse_connectivity.remediation).toMatch(/DATABRICKS_SCOPE/);
  });

  it("fails system_table_access for a token without the grants, naming the three grants and who can give them", async () => {
    const report = await check({ DATABRICKS_ACCESS_TOKEN: stack.contract.databricks.noGrantToken });
    const checks = byName(report);
    expect(checks.warehouse_connectivity.status).toBe("PASS");
    expect(checks.system_table_access.status).toBe("FAIL");
    expect(checks.system_table_access.detail).toMatch(/INSUFFICIENT_PERMISSIONS/);
    const remediation = checks.system_table_access.remediation;
    expect(remediation).toMatch(/System tables must be enabled for the metastore/);
    expect(remediation).toContain("USE CATALOG ON CATALOG system");
    expect(remediation).toContain("USE SCHEMA ON SCHEMA system.access");
    expect(remediation).toContain("SELECT ON TABLE system.access.audit");
    expect(remediation).toMatch(/metastore admin/);
    expect(checks.audit_table_columns).toMatchObject({ status: "FAIL", detail: "skipped: system_table_access failed." });
    expect(checks.sql_text_visibility).toMatchObject({ status: "FAIL", detail: "skipped: system_table_access failed." });
    expect(checks.workspace_filter).toMatchObject({ status: "FAIL", detail: "skipped: system_table_access failed." });
    expectNoSecrets(report);
  });

  it("fails warehouse_connectivity fast for an unreachable host", async () => {
    const port = await closedPort();
    const started = Date.now();
    const checks = byName(await check({ DATABRICKS_SERVER_HOSTNAME: `127.0.0.1:${port}` }));
    expect(Date.now() - started).toBeLessThan(15_000);
    expect(checks.warehouse_connectivity.status).toBe("FAIL");
    expect(checks.warehouse_connectivity.detail).toMatch(/Cannot reach the SQL warehouse.*ECONNREFUSED/);
    expect(checks.warehouse_connectivity.remediation).toMatch(/DATABRICKS_SERVER_HOSTNAME/);
  });

  it("answers WARN 'warehouse is starting' within the budget when statements stay pending", async () => {
    stack.warehouse.setFaults({ coldStartMs: 120_000 });
    const started = Date.now();
    const report = await check({}, { budgetMs: 6_000 });
    const elapsed = Date.now() - started;
    const checks = byName(report);
    expect(elapsed).toBeLessThan(9_000);
    expect(checks.warehouse_connectivity.status).toBe("WARN");
    expect(checks.warehouse_connectivity.detail).toMatch(/warehouse is starting.*retry in a few minutes/i);
    expect(checks.warehouse_connectivity.remediation).toMatch(/Retry in a few minutes/);
    for (const name of ["system_table_access", "audit_table_columns", "sql_text_visibility", "workspace_filter"] as const) {
      expect(checks[name]).toMatchObject({ status: "WARN", detail: expect.stringMatching(/^skipped: warehouse_connectivity/) });
    }
    expect(checks.blob_container.status).toBe("PASS");
    expect(report.status).not.toBe("FAIL");
  });

  it("fails logs_ingestion on 403, naming the Monitoring Metrics Publisher role on the DCR", async () => {
    stack.logsIngestion.setFaults({ forbidden: true });
    const report = await check();
    const checks = byName(report);
    expect(report.status).toBe("FAIL");
    expect(checks.logs_ingestion.status).toBe("FAIL");
    expect(checks.logs_ingestion.detail).toMatch(/HTTP 403/);
    expect(checks.logs_ingestion.remediation).toMatch(/Monitoring Metrics Publisher role on the data collection rule/);
    expect(checks.logs_ingestion.remediation).toContain(stack.contract.logsIngestion.ruleId);
    expect(stack.logsIngestion.received()).toEqual([]);
  });

  it("fails logs_ingestion for an unknown stream", async () => {
    const checks = byName(await check({ LOGS_INGESTION_STREAM: "Custom-NotDeclared" }));
    expect(checks.logs_ingestion).toMatchObject({ status: "FAIL", detail: expect.stringMatching(/HTTP 404/) });
    expect(checks.logs_ingestion.remediation).toMatch(/LOGS_INGESTION_STREAM/);
  });

  it("warns, then fails, as the last successful export gets older; mentions the lock and the last error", async () => {
    await writeState({ lastSuccessAt: hoursAgo(4), lastFailureAt: hoursAgo(1), lastError: "Log Analytics refused the upload (HTTP 403)" });
    let checks = byName(await check());
    expect(checks.export_freshness.status).toBe("WARN");
    expect(checks.export_freshness.detail).toMatch(/last failure at .*HTTP 403/);

    await writeState({ lastSuccessAt: hoursAgo(10), lock: { runId: "run-dead", expiresAtMs: Date.now() - 3_600_000 } });
    checks = byName(await check());
    expect(checks.export_freshness.status).toBe("FAIL");
    expect(checks.export_freshness.detail).toMatch(/run-dead\) stopped without releasing its lock/);
    expect(checks.export_freshness.remediation).not.toBe("");

    await writeState({ lastSuccessAt: hoursAgo(0.5) });
    expect(byName(await check()).export_freshness.status).toBe("PASS");
  });

  it("fails configuration for a missing setting, listing every problem, and still runs the other checks", async () => {
    const report = await check({ DATABRICKS_HTTP_PATH: undefined, LOGS_INGESTION_RULE_ID: "not-a-rule" });
    const checks = byName(report);
    expect(report.status).toBe("FAIL");
    expect(checks.configuration.status).toBe("FAIL");
    expect(checks.configuration.detail).toMatch(/2 setting problems/);
    expect(checks.configuration.detail).toContain("DATABRICKS_HTTP_PATH is required");
    expect(checks.configuration.detail).toContain("LOGS_INGESTION_RULE_ID");
    expect(checks.configuration.remediation).toMatch(/DATABRICKS_HTTP_PATH.*LOGS_INGESTION_RULE_ID|LOGS_INGESTION_RULE_ID.*DATABRICKS_HTTP_PATH/);
    expect(checks.warehouse_connectivity).toMatchObject({ status: "FAIL", detail: "skipped: configuration failed (DATABRICKS_HTTP_PATH)." });
    expect(checks.logs_ingestion).toMatchObject({ status: "FAIL", detail: "skipped: configuration failed (LOGS_INGESTION_RULE_ID)." });
    expect(checks.azure_authentication.status).toBe("PASS");
    expect(checks.blob_container.status).toBe("PASS");
    expect(checks.export_freshness.status).not.toBe("FAIL");
  });

  it("fails configuration when storage is missing and the export needs it", async () => {
    const checks = byName(await check({ EXPORT_STORAGE_CONNECTION_STRING: undefined }));
    expect(checks.configuration.detail).toContain("EXPORT_STORAGE_ACCOUNT_URL is required");
    expect(checks.blob_container.detail).toMatch(/^skipped: configuration failed/);
    expect(checks.export_freshness.status).toBe("FAIL");
    expect(checks.warehouse_connectivity.status).toBe("PASS");
  });

  it("warns for a configured workspace without events in the lookback window, and the window is configurable", async () => {
    const ids = `${ACTIVE_WORKSPACE},${QUIET_WORKSPACE}`;
    let checks = byName(await check({ DATABRICKS_WORKSPACE_IDS: ids }));
    expect(checks.workspace_filter.status).toBe("WARN");
    expect(checks.workspace_filter.detail).toContain(`workspace ${QUIET_WORKSPACE}`);
    expect(checks.workspace_filter.detail).toContain("last 24 h");
    expect(checks.workspace_filter.remediation).toMatch(/regional/);

    checks = byName(await check({ DATABRICKS_WORKSPACE_IDS: ACTIVE_WORKSPACE, CHECK_WORKSPACE_LOOKBACK_HOURS: "1" }));
    expect(checks.workspace_filter.status).toBe("WARN"); // the newest row is 1 h old: outside a 1 h window by a few ms
    checks = byName(await check({ DATABRICKS_WORKSPACE_IDS: ACTIVE_WORKSPACE }, { lookbackHours: 2 }));
    expect(checks.workspace_filter).toMatchObject({ status: "PASS", detail: expect.stringContaining(`last 2 h per workspace: ${ACTIVE_WORKSPACE}: 1`) });
  });

  it("fails blob_container when the storage key is wrong, without echoing the key", async () => {
    const wrongKey = Buffer.alloc(64, 7).toString("base64");
    const report = await check({ EXPORT_STORAGE_CONNECTION_STRING: stack.contract.storage.connectionString.replace(DEVSTORE_KEY, wrongKey) });
    const checks = byName(report);
    expect(checks.blob_container.status).toBe("FAIL");
    expect(checks.blob_container.remediation).not.toBe("");
    expect(checks.export_freshness).toMatchObject({ status: "FAIL", detail: "skipped: blob_container failed." });
    expect(JSON.stringify(report)).not.toContain(wrongKey);
    expectNoSecrets(report);
  });
});
