import * as functions from "@azure/functions";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { DEVSTORE_KEY } from "../../sandbox/azurite";
import { processEnvOverrides } from "../support/checkHelpers";
import { startSandboxStack, type SandboxStack } from "../../sandbox/stack";
import { checkPrerequisites } from "../../functions/checkPrerequisites";
import { PER_SOURCE_CHECKS, type CheckReport } from "../../shared/prerequisites";

// The HTTP function through @azure/functions' own HttpRequest and InvocationContext (a namespace
// import: under native ESM the package has no named exports). The handler reads process.env,
// as in Azure, so the sandbox's settings are put there for the duration of this file.
const { HttpRequest, InvocationContext } = functions;

let stack: SandboxStack;
const env = processEnvOverrides();
const setEnv = env.set;
let logged: string[];

beforeAll(async () => {
  stack = await startSandboxStack({ synthetic: 20 });
  setEnv({ ...stack.contract.env, DATABRICKS_ACCESS_TOKEN: stack.contract.databricks.token });
});

afterAll(async () => {
  await stack?.close();
  env.restore();
});

beforeEach(() => {
  logged = [];
  stack.logsIngestion.setFaults({});
});
afterEach(() => setEnv({ DATABRICKS_ACCESS_TOKEN: stack.contract.databricks.token }));

async function invoke(): Promise<{ status: number; body: CheckReport; text: string }> {
  const request = new HttpRequest({ method: "GET", url: "http://localhost:7071/api/checkPrerequisites?code=function-key-value&refresh=1" });
  const context = new InvocationContext({
    functionName: "checkPrerequisites",
    invocationId: "test-invocation",
    logHandler: (level, ...args) => logged.push(`${level}: ${args.map((a) => (typeof a === "string" ? a : JSON.stringify(a))).join(" ")}`),
  });
  const response = await checkPrerequisites(request, context);
  const text = JSON.stringify(response.jsonBody);
  return { status: response.status ?? 200, body: response.jsonBody as CheckReport, text };
}

function expectNothingSecret(text: string): void {
  const secrets = [
    stack.contract.databricks.token,
    stack.contract.databricks.noGrantToken,
    DEVSTORE_KEY,
    stack.contract.storage.connectionString,
    stack.contract.env.IDENTITY_HEADER!,
    "function-key-value",
  ];
  for (const secret of secrets) expect(text).not.toContain(secret);
  expect(text).not.toMatch(/eyJ[\w-]+\.[\w-]+/); // a JWT
  expect(text).not.toMatch(/[\w/\\-]+\.(?:js|ts|mjs|cjs):\d+:\d+/); // a stack frame's location
  expect(text).not.toMatch(/(?:^|\n|\\n)\s+at /); // a stack frame's line
}

describe("checkPrerequisites (HTTP)", () => {
  it("answers 200 with every check when nothing failed, and logs one summary line", async () => {
    const { status, body, text } = await invoke();
    expect(body.checks.map((c) => c.name)).toEqual([
      "configuration",
      "azure_authentication",
      "warehouse_connectivity",
      "system_table_access",
      "workspace_filter",
      "audit_table_columns",
      "sql_text_visibility",
      "blob_container",
      "logs_ingestion",
      "export_freshness",
      "log_analytics_lag",
      "log_analytics_reconciliation",
      "detections_state",
      "backfill",
    ]);
    // A per-source check also names its source: the single-source settings' one is "default".
    for (const check of body.checks) {
      const perSource = PER_SOURCE_CHECKS.has(check.name);
      expect(Object.keys(check).sort()).toEqual(["detail", "name", "remediation", ...(perSource ? ["source"] : []), "status"]);
      if (perSource) expect(check.source).toBe("default");
    }
    expect(body.sources).toEqual([{ name: "default", status: expect.stringMatching(/^(PASS|WARN)$/) }]);
    // No export has run in a fresh sandbox: freshness WARNs, which is not a failure.
    expect(body.checks.filter((c) => c.status === "FAIL")).toEqual([]);
    expect(status).toBe(200);
    expect(["PASS", "WARN"]).toContain(body.status);
    expect(logged.some((line) => /prerequisite checks (PASS|WARN) in \d+ ms/.test(line))).toBe(true);
    expectNothingSecret(text);
    expectNothingSecret(logged.join("\n"));
  });

  it("answers 503 when a check fails (Logs Ingestion 403), with the remediation and without secrets", async () => {
    stack.logsIngestion.setFaults({ forbidden: true });
    const { status, body, text } = await invoke();
    expect(status).toBe(503);
    expect(body.status).toBe("FAIL");
    const logs = body.checks.find((c) => c.name === "logs_ingestion")!;
    expect(logs.status).toBe("FAIL");
    expect(logs.remediation).toMatch(/Monitoring Metrics Publisher/);
    expect(logged.some((line) => line.includes("logs_ingestion FAIL"))).toBe(true);
    expectNothingSecret(text);
    expectNothingSecret(logged.join("\n"));
  });

  it("answers 503 for a token without the grants and for a wrong token, echoing neither", async () => {
    setEnv({ DATABRICKS_ACCESS_TOKEN: stack.contract.databricks.noGrantToken });
    let result = await invoke();
    expect(result.status).toBe(503);
    expect(result.body.checks.find((c) => c.name === "system_table_access")?.status).toBe("FAIL");
    expectNothingSecret(result.text);

    const wrong = `dapi${"f".repeat(32)}`;
    setEnv({ DATABRICKS_ACCESS_TOKEN: wrong });
    result = await invoke();
    expect(result.status).toBe(503);
    expect(result.body.checks.find((c) => c.name === "warehouse_connectivity")?.status).toBe("FAIL");
    expect(result.text).not.toContain(wrong);
    expect(logged.join("\n")).not.toContain(wrong);
    expectNothingSecret(result.text);
    expectNothingSecret(logged.join("\n"));
  });

  it("answers 503 for a missing setting, naming it", async () => {
    const hostname = process.env.DATABRICKS_SERVER_HOSTNAME;
    setEnv({ DATABRICKS_SERVER_HOSTNAME: undefined });
    try {
      const { status, body, text } = await invoke();
      expect(status).toBe(503);
      const configuration = body.checks.find((c) => c.name === "configuration")!;
      expect(configuration.status).toBe("FAIL");
      expect(configuration.detail).toContain("DATABRICKS_SERVER_HOSTNAME is required");
      expectNothingSecret(text);
    } finally {
      setEnv({ DATABRICKS_SERVER_HOSTNAME: hostname });
    }
  });
});
