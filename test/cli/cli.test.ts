import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { SandboxStack } from "../../sandbox/stack";
import { AUDIT_COLUMNS } from "../../shared/auditEvent";
import { auditRow, isoMicros } from "../support/auditRows";
import { startStack } from "../support/exportHarness";
import { runCli, type CliResult } from "../support/cli";

// The CLI as a user runs it: the built launcher, real flags, real exit codes.
let stack: SandboxStack;
let dir: string;
const T0 = Date.parse("2025-09-01T00:00:00Z");
const W1 = "1111111111111111";
const W2 = "2222222222222222";
let w1InWindow: string[] = [];

function cli(args: string[], env: NodeJS.ProcessEnv = {}): Promise<CliResult> {
  return runCli(args, { PATH: process.env.PATH, NODE_EXTRA_CA_CERTS: process.env.NODE_EXTRA_CA_CERTS, DATABRICKS_TELEMETRY_DISABLED: "true", ...env });
}

function seedFlags(extra: string[] = []): string[] {
  return [
    "export",
    "--server-hostname",
    stack.contract.databricks.serverHostname,
    "--http-path",
    stack.contract.databricks.httpPath,
    "--access-token",
    stack.contract.databricks.token,
    "--start",
    "2025-09-01T00:00:00Z",
    "--end",
    "2025-09-01T02:00:00Z",
    ...extra,
  ];
}

beforeAll(async () => {
  stack = await startStack();
  dir = mkdtempSync(join(tmpdir(), "dbx-audit-cli-"));
  const w1 = Array.from({ length: 30 }, (_, i) => auditRow(isoMicros((T0 + i * 5 * 60_000) * 1000 + 1), { workspace_id: W1 }));
  const w2 = Array.from({ length: 10 }, (_, i) => auditRow(isoMicros((T0 + i * 60_000) * 1000), { workspace_id: W2 }));
  const account = [auditRow(isoMicros(T0 * 1000 + 5), { workspace_id: "0", audit_level: "ACCOUNT_LEVEL", service_name: "accounts" })];
  await stack.warehouse.appendRows([...w1, ...w2, ...account]);
  w1InWindow = w1.filter((r) => Date.parse(r.event_time as string) < T0 + 2 * 3600_000).map((r) => r.event_id as string);
});

afterAll(async () => {
  await stack?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe("dbx-audit --help", () => {
  it("lists the commands that exist", async () => {
    const { code, stdout } = await cli(["--help"]);
    expect(code).toBe(0);
    for (const command of ["export", "run", "sandbox", "demo"]) expect(stdout).toContain(command);
  });
});

describe("dbx-audit export", () => {
  it("streams one workspace's events of [start, end) to a JSONL file with the table's column names", async () => {
    const output = join(dir, "w1.jsonl");
    const { code, stderr } = await cli(seedFlags(["--workspace-id", W1, "--output", output]));
    expect(stderr).toContain(`Exported ${w1InWindow.length} events`);
    expect(code).toBe(0);
    const events = readFileSync(output, "utf8")
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(events.map((e) => e.event_id)).toEqual(w1InWindow);
    expect(Object.keys(events[0]!)).toEqual([...AUDIT_COLUMNS]);
    expect(events.every((e) => e.workspace_id === W1)).toBe(true);
    expect(events[0]!.event_time).toBe(isoMicros(T0 * 1000 + 1));
  });

  it("writes to standard output with --output -, every workspace and account-level rows without --workspace-id", async () => {
    const { code, stdout } = await cli(seedFlags(["--output", "-", "--services", "*"]));
    expect(code).toBe(0);
    const events = stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(new Set(events.map((e) => e.workspace_id))).toEqual(new Set([W1, W2, "0"]));
  });

  it("refuses an injection attempt with a clear message, and writes nothing", async () => {
    const output = join(dir, "never.jsonl");
    const { code, stderr } = await cli(seedFlags(["--services", "clusters' OR '1'='1", "--workspace-id", "12; DROP TABLE x", "--output", output]));
    expect(code).toBe(2);
    expect(stderr).toContain("--services");
    expect(stderr).toContain("--workspace-id");
    expect(existsSync(output)).toBe(false);
  });

  it("reports bad dates and a reversed window, naming the flags", async () => {
    const { code, stderr } = await cli([
      "export",
      "--server-hostname",
      "h.example.com",
      "--http-path",
      "/sql/1.0/warehouses/x",
      "--start",
      "2024-02-30",
      "--end",
      "2024-01-01",
      "--output",
      join(dir, "x.jsonl"),
    ]);
    expect(code).toBe(2);
    expect(stderr).toContain("--start must be an ISO-8601 timestamp");
  });

  it("refuses an impossible date with an offset as it does with Z: exit 2, nothing read or written", async () => {
    for (const start of ["2024-02-30T00:00:00+01:00", "2024-02-30T00:00:00Z"]) {
      const output = join(dir, "impossible.jsonl");
      const before = stack.warehouse.stats();
      const flags = seedFlags(["--output", output]);
      flags[flags.indexOf("--start") + 1] = start;
      const { code, stderr } = await cli(flags);
      expect(code, start).toBe(2);
      expect(stderr, start).toContain(`--start must be an ISO-8601 timestamp such as 2024-09-01T00:00:00Z; got '${start}'`);
      expect(stack.warehouse.stats().sessionsOpened, start).toBe(before.sessionsOpened);
      expect(stack.warehouse.stats().statements, start).toBe(before.statements);
      expect(existsSync(output), start).toBe(false);
      expect(existsSync(`${output}.partial`), start).toBe(false);
    }
  });

  it("fails with a non-zero exit and an explanation on a wrong token, leaving no partial file", async () => {
    const output = join(dir, "denied.jsonl");
    const flags = seedFlags(["--output", output]);
    flags[flags.indexOf("--access-token") + 1] = "dapi00000000000000000000000000000000";
    const { code, stderr } = await cli(flags);
    expect(code).toBe(1);
    expect(stderr).toContain("refused the credentials");
    expect(stderr).not.toContain("dapi00000000000000000000000000000000");
    expect(existsSync(output)).toBe(false);
    expect(existsSync(`${output}.partial`)).toBe(false);
  });

  it("explains missing grants for a token without them", async () => {
    const flags = seedFlags(["--output", join(dir, "nogrant.jsonl")]);
    flags[flags.indexOf("--access-token") + 1] = stack.contract.databricks.noGrantToken;
    const { code, stderr } = await cli(flags);
    expect(code).toBe(1);
    expect(stderr).toContain("USE CATALOG");
    expect(stderr).toContain("SELECT ON TABLE system.access.audit");
  });
});

describe("dbx-audit run", () => {
  it("runs one timer cycle from the sandbox's app settings, and a second run finds nothing new", async () => {
    const env = { ...stack.contract.env, EXPORT_START: "2025-09-01T00:00:00Z", EXPORT_CONTAINER: "cli-run" };
    const first = await cli(["run", "--json"], env);
    expect(first.stderr).toBe("");
    expect(first.code).toBe(0);
    const summary = JSON.parse(first.stdout.trim()) as { eventsDelivered: number; caughtUp: boolean };
    expect(summary.eventsDelivered).toBeGreaterThan(0);
    const second = await cli(["run", "--json"], env);
    expect(second.code).toBe(0);
    expect((JSON.parse(second.stdout.trim()) as { eventsDelivered: number }).eventsDelivered).toBe(0);
  });

  it("names every invalid setting and exits 2 before any I/O", async () => {
    const { code, stderr } = await cli(["run"], { DATABRICKS_SERVER_HOSTNAME: "bad host", AUDIT_SERVICES: "a'b" });
    expect(code).toBe(2);
    for (const name of ["DATABRICKS_SERVER_HOSTNAME", "DATABRICKS_HTTP_PATH", "AUDIT_SERVICES", "EXPORT_STORAGE_ACCOUNT_URL"]) expect(stderr).toContain(name);
  });
});

describe("dbx-audit demo", () => {
  it("exports, raises an alert per attack with its measured value, checks quickly and reconciles clean, in seconds", async () => {
    const started = Date.now();
    const { code, stdout, stderr } = await cli(["demo", "--synthetic", "2000"]);
    expect(stderr).toBe("");
    expect(code).toBe(0);
    expect(Date.now() - started).toBeLessThan(60_000);
    expect(stdout).toMatch(/Blob Storage: 2020 events in \d+ blobs/);
    expect(stdout).toContain("Log Analytics: 2020 records accepted");
    // Each attack's alert, with what it measured against the condition, whom and where from.
    const alerts = [
      ["repeated_failed_login_attempts [Medium, CredentialAccess T1110]", "total = 6 (condition > 1)", "principal finance.admin@contoso.com; IP 198.51.100.66"],
      [
        "repeated_access_to_secrets [High, CredentialAccess T1555.006]",
        "num_keys_accessed = 12 (condition >= 10)",
        "principal eve.intern@contoso.com; IP 203.0.113.45",
      ],
      ["changes_to_admin_users [High, PrivilegeEscalation T1098]", "total = 1 (condition > 0)", "target_user: mallory.ext@contoso.com"],
      ["long_lifetime_token_generation [Medium, Persistence T1098.001]", "total = 1 (condition > 0)", "token_lifetime_hours: 2160"],
    ];
    for (const [title, measured, detail] of alerts) {
      const at = stdout.indexOf(`ALERT ${title}`);
      expect(at, title).toBeGreaterThanOrEqual(0);
      const block = stdout.slice(at).split("\n").slice(0, 4).join("\n");
      expect(block).toContain(measured);
      expect(block).toContain(detail);
    }
    expect(stdout).toMatch(/Reconciled .*: 2020 archived event\(s\) over \d+ hour\(s\)\./);
    expect(stdout).toContain("CLEAN: every archived event is in Log Analytics exactly once.");
    expect(stdout).toContain("The Blob archive and Log Analytics agree.");
    expect(stdout).toMatch(/\[PASS\] log_analytics_reconciliation/);
    expect(stdout).toMatch(/\(quick: Blob only, no warehouse session\): \d+ passed, \d+ warnings?, 0 failed/);
  }, 90_000);
});
