import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startSandboxStack, type SandboxStack } from "../../sandbox/stack";
import { runChecks, type CheckName, type CheckResult } from "../../shared/prerequisites";

// A file of its own: msal-node fixes the managed identity endpoint, and the retry policy of the
// first credential that asks for a token, for the whole process. Here the endpoint fails from
// the first request on, and the checks ask with maxRetries 0.
let stack: SandboxStack;

beforeAll(async () => {
  stack = await startSandboxStack({ synthetic: 10 });
  process.env.IDENTITY_ENDPOINT = stack.contract.env.IDENTITY_ENDPOINT;
  process.env.IDENTITY_HEADER = stack.contract.env.IDENTITY_HEADER;
});

afterAll(async () => {
  await stack?.close();
  delete process.env.IDENTITY_ENDPOINT;
  delete process.env.IDENTITY_HEADER;
});

describe("runChecks when the managed identity endpoint fails", () => {
  it("fails azure_authentication with remediation and skips the checks that need a token", async () => {
    stack.identity.setFailure(500);
    const settings = { ...stack.contract.env };
    const started = Date.now();
    const report = await runChecks(settings, settings, { needs: { storage: true }, budgetMs: 20_000, maxRetries: 0 });
    expect(Date.now() - started).toBeLessThan(20_000);
    const checks = Object.fromEntries(report.checks.map((c) => [c.name, c])) as Record<CheckName, CheckResult>;

    expect(report.status).toBe("FAIL");
    expect(checks.azure_authentication.status).toBe("FAIL");
    expect(checks.azure_authentication.detail).toMatch(/Databricks \(2ff814a6-3304-4ab8-85cb-cd0e6f879c1d\/\.default\): FAILED/);
    expect(checks.azure_authentication.detail).toMatch(/Logs Ingestion \(https:\/\/monitor\.azure\.com\/\.default\): FAILED/);
    expect(checks.azure_authentication.remediation).toMatch(/managed identity/);
    expect(checks.azure_authentication.remediation).toMatch(/--scope|DATABRICKS_SCOPE/);
    expect(checks.warehouse_connectivity).toMatchObject({ status: "FAIL", detail: "skipped: azure_authentication failed." });
    expect(checks.system_table_access).toMatchObject({ status: "FAIL", detail: "skipped: azure_authentication failed." });
    expect(checks.logs_ingestion).toMatchObject({ status: "FAIL", detail: "skipped: azure_authentication failed." });
    // Storage by connection string needs no token: it still ran.
    expect(checks.blob_container.status).toBe("PASS");
    expect(JSON.stringify(report)).not.toContain(stack.contract.env.IDENTITY_HEADER);
  });
});
