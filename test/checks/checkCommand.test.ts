import { Command } from "commander";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { startSandboxStack, type SandboxStack } from "../../sandbox/stack";
import { registerCheckCommand } from "../../cli/checkCommand";
import type { CheckReport } from "../../shared/prerequisites";
import { QUICK_REPORT_ORDER } from "../support/checkHelpers";

// `dbx-audit check` through a commander program of its own (cli/main.ts wires the same function).
// The storage, Log Analytics and identity settings come from the environment; the Databricks
// ones from the seed scanner's flags, which win over the environment.
let stack: SandboxStack;
const saved: Record<string, string | undefined> = {};

beforeAll(async () => {
  stack = await startSandboxStack({ synthetic: 20 });
  for (const [name, value] of Object.entries(stack.contract.env)) {
    saved[name] = process.env[name];
    process.env[name] = value;
  }
  // The flags must be what points at the warehouse.
  process.env.DATABRICKS_SERVER_HOSTNAME = "wrong.invalid";
});

afterAll(async () => {
  await stack?.close();
  for (const [name, value] of Object.entries(saved)) {
    if (value === undefined) delete process.env[name];
    else process.env[name] = value;
  }
});

afterEach(() => {
  process.exitCode = undefined;
  vi.restoreAllMocks();
});

async function runCli(args: string[]): Promise<{ stdout: string; exitCode: number | string | undefined }> {
  const program = new Command().exitOverride();
  registerCheckCommand(program);
  let stdout = "";
  vi.spyOn(process.stdout, "write").mockImplementation((chunk: string | Uint8Array) => {
    stdout += typeof chunk === "string" ? chunk : Buffer.from(chunk).toString("utf8");
    return true;
  });
  try {
    await program.parseAsync(["node", "dbx-audit", "check", ...args]);
  } finally {
    vi.restoreAllMocks();
  }
  const exitCode = process.exitCode ?? undefined;
  process.exitCode = undefined;
  return { stdout, exitCode };
}

function flags(token: string): string[] {
  const { databricks } = stack.contract;
  return [
    "--server-hostname",
    databricks.serverHostname,
    "--http-path",
    databricks.httpPath,
    "--workspace-id",
    "1234567890123456",
    "--workspace-id",
    "2345678901234567,3456789012345678",
    "--access-token",
    token,
    "--workspace-check-lookback-hours",
    "48",
  ];
}

describe("dbx-audit check", () => {
  it("--json prints the report, exit code 0 when nothing failed", async () => {
    const { stdout, exitCode } = await runCli([...flags(stack.contract.databricks.token), "--json"]);
    const report = JSON.parse(stdout) as CheckReport;
    expect(report.checks.filter((c) => c.status === "FAIL")).toEqual([]);
    expect(exitCode).toBe(0);
    const workspace = report.checks.find((c) => c.name === "workspace_filter")!;
    expect(workspace.detail).toMatch(/last 48 h/);
    expect(workspace.detail).toContain("1234567890123456");
    expect(workspace.detail).toContain("3456789012345678");
    expect(stdout).not.toContain(stack.contract.databricks.token);
  });

  it("prints a [PASS]/[WARN]/[FAIL] table with remediation lines, exit code 1 on a failure", async () => {
    const { stdout, exitCode } = await runCli(flags(stack.contract.databricks.noGrantToken));
    expect(exitCode).toBe(1);
    expect(stdout).toMatch(/^\[PASS\] configuration\s+Settings valid/m);
    expect(stdout).toMatch(/^\[PASS\] warehouse_connectivity /m);
    expect(stdout).toMatch(/^\[FAIL\] system_table_access\s+INSUFFICIENT_PERMISSIONS/m);
    expect(stdout).toMatch(/^\s+-> System tables must be enabled for the metastore.*USE CATALOG ON CATALOG system/m);
    expect(stdout).toMatch(/^FAIL: \d+ passed, \d+ warnings?, \d+ failed/m);
    expect(stdout).not.toContain(stack.contract.databricks.noGrantToken);
  });

  it("--quick reads Blob only: no warehouse session even with a token the warehouse refuses, and says it was quick", async () => {
    const before = stack.warehouse.stats();
    const { stdout, exitCode } = await runCli([...flags(`dapi${"e".repeat(32)}`), "--quick"]);
    const after = stack.warehouse.stats();
    expect({ sessions: after.sessionsOpened, statements: after.statements }).toEqual({ sessions: before.sessionsOpened, statements: before.statements });
    expect(stdout).toMatch(/^\[PASS\] configuration /m);
    expect(stdout).toMatch(/^\[(PASS|WARN)\] export_freshness /m);
    expect(stdout).toMatch(/^\[(PASS|WARN)\] log_analytics_lag /m);
    expect(stdout).not.toMatch(/warehouse_connectivity|system_table_access|sql_text_visibility/);
    expect(stdout).toMatch(/^(PASS|WARN) \(quick: Blob only, no warehouse session\): /m);
    expect(exitCode).toBe(0);

    const json = JSON.parse((await runCli([...flags(stack.contract.databricks.token), "--quick", "--json"])).stdout) as CheckReport;
    expect(json.mode).toBe("quick");
    expect(json.checks.map((c) => c.name)).toEqual(QUICK_REPORT_ORDER);
  });

  it("exit code 1 with the configuration problem for an invalid flag", async () => {
    const { stdout, exitCode } = await runCli(["--server-hostname", "https://host/with/path", "--http-path", "/sql/1.0/warehouses/x", "--json"]);
    const report = JSON.parse(stdout) as CheckReport;
    expect(exitCode).toBe(1);
    expect(report.checks[0]).toMatchObject({ name: "configuration", status: "FAIL" });
    expect(report.checks[0]!.detail).toContain("DATABRICKS_SERVER_HOSTNAME");
  });
});
