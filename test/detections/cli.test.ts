import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { SandboxStack } from "../../sandbox/stack";
import type { AlertLine } from "../../shared/detections/alerts";
import { renderDetectionsDoc } from "../../shared/detections/docs";
import { auditRow, isoMicros } from "../support/auditRows";
import { startStack } from "../support/exportHarness";
import { runCli, type CliResult } from "../support/cli";

// `dbx-audit detect`, `detections` and `report` as a user runs them: the built launcher, the sandbox's settings in the environment.
let stack: SandboxStack;
let dir: string;
/** Two days ago, midnight UTC: inside a report's default 90 days. */
const T0 = Math.floor(Date.now() / 86_400_000) * 86_400_000 - 2 * 86_400_000;
const START = new Date(T0).toISOString();
const END = new Date(T0 + 86_400_000).toISOString();

function cli(args: string[], env: Record<string, string> = {}): Promise<CliResult> {
  return runCli(args, { PATH: process.env.PATH, NODE_EXTRA_CA_CERTS: process.env.NODE_EXTRA_CA_CERTS, ...stack.contract.env, ...env });
}

beforeAll(async () => {
  stack = await startStack();
  dir = mkdtempSync(join(tmpdir(), "dbx-audit-detect-"));
  const failed = (email: string, minute: number) =>
    auditRow(isoMicros((T0 + 3 * 3_600_000 + minute * 60_000) * 1000), {
      service_name: "accounts",
      action_name: "login",
      response: { status_code: 401, error_message: null, result: null },
      user_identity: { email, subject_name: null },
    });
  await stack.warehouse.appendRows([
    failed("mallory@example.com", 1),
    failed("mallory@example.com", 2),
    failed("mallory@example.com", 3),
    failed("ok@example.com", 4),
  ]);
});

afterAll(async () => {
  await stack?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe("dbx-audit detect", () => {
  it("writes the alerts of a range as JSONL, the detection's name and the principal as plain fields", async () => {
    const output = join(dir, "alerts.jsonl");
    const { code, stderr } = await cli(["detect", "--start", START, "--end", END, "--output", output]);
    expect(stderr).toMatch(/repeated_failed_login_attempts: 1 alert/);
    expect(code).toBe(0);
    const alerts = readFileSync(output, "utf8")
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as AlertLine);
    const logins = alerts.filter((a) => a.detection === "repeated_failed_login_attempts");
    expect(logins).toHaveLength(1);
    expect(logins[0]).toMatchObject({
      user: "mallory@example.com",
      email: "mallory@example.com",
      count: 3,
      window_start: `${START.slice(0, 10)}T03:00:00.000000Z`,
    });
  });

  it("runs only the named detections, with an overrides file, and names an unknown one", async () => {
    const config = join(dir, "detections.yaml");
    writeFileSync(config, "detections:\n  repeated_failed_login_attempts:\n    threshold: 3\n");
    const { code, stdout, stderr } = await cli(["detect", "--start", START, "--end", END, "--only", "repeated_failed_login_attempts", "--config", config]);
    expect(code).toBe(0);
    expect(stdout).toBe("");
    expect(stderr).toMatch(/0 alert\(s\) from 1 detection/);
    const unknown = await cli(["detect", "--start", START, "--end", END, "--only", "no_such_detection"]);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain("no_such_detection");
  });
});

describe("dbx-audit detections and report", () => {
  it("lists the catalog with status, window and threshold, and reports a malformed overrides entry", async () => {
    const config = join(dir, "bad.json");
    writeFileSync(config, JSON.stringify({ detections: { use_of_print_statements: { enabled: false }, mount_point_creation: { threshold: -2 } } }));
    const { code, stdout, stderr } = await cli(["detections", "--config", config]);
    expect(code).toBe(2);
    expect(stdout).toMatch(/destructive_activities\s+enabled\s+P1D\s+> 50/);
    expect(stdout).toMatch(/use_of_print_statements\s+disabled/);
    expect(stderr).toMatch(/detection 'mount_point_creation': field 'threshold' must be >= 0/);
  });

  it("runs a query-only entry as a table, and as JSONL to a file", async () => {
    const days = "7";
    const table = await cli(["report", "failed_login_attempts_last_90_days", "--days", days]);
    expect(table.code).toBe(0);
    expect(table.stdout).toMatch(/event_date\s+email\s+workspace_id\s+action_name\s+total/);
    expect(table.stdout).toMatch(/mallory@example\.com.*login\s+3/);
    const output = join(dir, "report.jsonl");
    const file = await cli(["report", "failed_login_attempts_last_90_days", "--days", days, "--output", output]);
    expect(file.code).toBe(0);
    expect(readFileSync(output, "utf8").trim().split("\n")).toHaveLength(2);
  });
});

describe("docs/detections.md", () => {
  it("is what the catalog renders (run `npm run docs:detections` after changing the catalog)", () => {
    expect(readFileSync(join(__dirname, "..", "..", "docs", "detections.md"), "utf8")).toBe(renderDetectionsDoc());
  });
});
