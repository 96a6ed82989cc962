import { InvocationContext, type Timer } from "@azure/functions";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { SandboxStack } from "../../sandbox/stack";
import { runDetections as runDetectionsFunction } from "../../functions/runDetections";
import { loadDetectionsConfig } from "../../shared/detections/config";
import type { AlertLine, AlertRecord } from "../../shared/detections/alerts";
import { runDetectionsCycle } from "../../shared/detections/cycle";
import { detectionsStateCheck } from "../../shared/detections/health";
import type { DetectionsRunSummary } from "../../shared/detections/runner";
import { DETECTIONS_STATE_BLOB, parseDetectionsState } from "../../shared/detections/state";
import { containerFor } from "../support/exportHarness";
import { ACCOUNT_LEVEL, activeIn, blobAlerts, failedLogins, onlyDetections, sourcesSetting, startTwoRegions, type TwoRegions } from "./regions";
import { runCli, type CliResult } from "../support/cli";

/**
 * The detections over two regions through the real stack: two SQL warehouse stand-ins (region1,
 * region2) behind the real driver, Azurite, the Logs Ingestion stand-in. Account-level events are
 * in both warehouses (the same event ids), workspace events in their own region's only.
 */
let regions: TwoRegions;
let stack: SandboxStack;
const savedEnv = { ...process.env };
const HOUR = 3_600_000;
const ALERTS_STREAM = "Custom-DatabricksAuditAlerts";

beforeAll(async () => {
  regions = await startTwoRegions();
  stack = regions.stack;
});
afterAll(async () => {
  process.env = savedEnv;
  await regions?.close();
});

function envFor(container: string, extra: Record<string, string> = {}): Record<string, string> {
  return { ...stack.contract.env, EXPORT_CONTAINER: container, ...extra };
}

async function cycle(container: string, nowMs: number, extra: Record<string, string> = {}): Promise<DetectionsRunSummary> {
  const env = envFor(container, extra);
  const { summary } = await runDetectionsCycle(
    loadDetectionsConfig(env),
    env,
    { info: () => undefined, warn: () => undefined },
    { now: () => nowMs, ingestion: { maxRetries: 0 } },
  );
  return summary;
}

function ingested(): AlertRecord[] {
  return stack.logsIngestion.received(ALERTS_STREAM) as unknown as AlertRecord[];
}

const of = (alerts: readonly AlertLine[], detection: string, email?: string) =>
  alerts.filter((a) => a.detection === detection && (email === undefined || a.email === email));

describe("detections over two regions", () => {
  const day = Date.parse("2025-11-03T00:00:00Z");

  beforeAll(async () => {
    const [region1, region2] = stack.warehouses;
    // Account-level rows: the same events (same event ids) in both warehouses.
    const accountLevel = [
      ...failedLogins("once@example.com", day + 9 * HOUR, 1, ACCOUNT_LEVEL),
      ...failedLogins("twice@example.com", day + 9 * HOUR + 5 * 60_000, 2, ACCOUNT_LEVEL),
      ...failedLogins("ip@example.com", day + 9 * HOUR + 10 * 60_000, 6, { ...ACCOUNT_LEVEL, source_ip_address: "203.0.113.9" }),
    ];
    await region1!.appendRows([
      ...accountLevel,
      ...activeIn("mover@example.com", ["1001", "1002", "1003"], day + HOUR),
      ...failedLogins("split@example.com", day + 9 * HOUR + 30 * 60_000, 1, { workspace_id: "1001" }),
    ]);
    await region2!.appendRows([
      ...accountLevel,
      ...activeIn("mover@example.com", ["2001", "2002"], day + 5 * HOUR),
      ...failedLogins("split@example.com", day + 9 * HOUR + 40 * 60_000, 1, { workspace_id: "2001" }),
    ]);
  });

  it("raises one alert for a user active in 3 workspaces in one region and 2 in another, listing both sources", async () => {
    stack.logsIngestion.reset();
    const only = await onlyDetections(stack, "det-regions", [
      "access_to_multiple_workspaces",
      "repeated_failed_login_attempts",
      "sentinel_failed_logins_from_ip",
    ]);
    const summary = await cycle("det-regions", day + 12 * HOUR + 20 * 60_000, only);
    expect(summary.failures).toEqual([]);
    expect(summary.sources.map((s) => [s.name, s.error, s.answered])).toEqual([
      ["region1", undefined, 3],
      ["region2", undefined, 3],
    ]);

    const alerts = await blobAlerts(containerFor(stack, "det-regions"));
    const moving = of(alerts, "access_to_multiple_workspaces");
    expect(moving).toHaveLength(1);
    expect(moving[0]).toMatchObject({
      email: "mover@example.com",
      value: 5,
      count: 5,
      workspaces: ["1001", "1002", "1003", "2001", "2002"],
      sources: ["region1", "region2"],
    });
    const record = ingested().find((r) => r.Detection === "access_to_multiple_workspaces")!;
    expect(record).toMatchObject({ UserEmail: "mover@example.com", Sources: ["region1", "region2"] });
    expect(
      ingested()
        .map((r) => r.AlertId)
        .sort(),
    ).toEqual(alerts.map((a) => a.alert_id).sort());

    // One failed login in each region is two: over the '> 1' threshold, once.
    expect(of(alerts, "repeated_failed_login_attempts", "split@example.com")).toEqual([
      expect.objectContaining({ count: 2, sources: ["region1", "region2"], workspaces: ["1001", "2001"] }),
    ]);
  });

  it("counts account-level events, which both warehouses hold, once", async () => {
    const alerts = await blobAlerts(containerFor(stack, "det-regions"));
    // 1 failed login seen by both warehouses is 1, not 2 (> 1 would alert).
    expect(of(alerts, "repeated_failed_login_attempts", "once@example.com")).toEqual([]);
    expect(of(alerts, "repeated_failed_login_attempts", "twice@example.com")).toEqual([expect.objectContaining({ count: 2, sources: ["region1"] })]);
    expect(of(alerts, "repeated_failed_login_attempts", "ip@example.com")).toEqual([expect.objectContaining({ count: 6 })]);
    // 6 failures from one IP are 6, not 12 (>= 10 would alert).
    expect(of(alerts, "sentinel_failed_logins_from_ip")).toEqual([]);
    // The whole table, as a check on the data: each warehouse does hold the account-level rows.
    expect(await stack.warehouses[1]!.rowCount()).toBe(9 + 2 + 1);
  });

  it("goes on over the other region when one warehouse is down, reports it, and raises its alerts once it is back, none twice", async () => {
    const next = Date.parse("2025-11-10T00:00:00Z");
    await stack.warehouses[0]!.appendRows([
      ...failedLogins("a@example.com", next + 10 * HOUR + 5 * 60_000, 2),
      ...failedLogins("c@example.com", next + 10 * HOUR + 15 * 60_000, 1),
    ]);
    await stack.warehouses[1]!.appendRows([
      ...failedLogins("b@example.com", next + 10 * HOUR + 10 * 60_000, 2, { workspace_id: "2001" }),
      ...failedLogins("c@example.com", next + 10 * HOUR + 20 * 60_000, 1, { workspace_id: "2001" }),
    ]);
    stack.logsIngestion.reset();
    const container = containerFor(stack, "det-regions-down");
    // A one-hour late-row horizon: hours later, only the windows region2 missed bring 10:00 back.
    const settings = { ...(await onlyDetections(stack, "det-regions-down", ["repeated_failed_login_attempts"])), EXPORT_LATE_HORIZON: "PT1H" };
    const down = { ...settings, DATABRICKS_SOURCES: sourcesSetting(stack, { region2: { httpPath: "/sql/1.0/warehouses/0000000000000000" } }) };

    const first = await cycle("det-regions-down", next + 11 * HOUR + 20 * 60_000, down);
    expect(first.sources[1]).toMatchObject({ name: "region2", answered: 0, error: expect.stringMatching(/cannot connect.*404/) });
    expect(first.sources[0]).toMatchObject({ name: "region1", answered: 1 });
    expect((await blobAlerts(container)).map((a) => [a.email, a.sources])).toEqual([["a@example.com", ["region1"]]]);
    const state = parseDetectionsState((await container.getBlobClient(DETECTIONS_STATE_BLOB).downloadToBuffer()).toString("utf8"));
    expect(state.sources?.region2?.lastError).toMatch(/404/);
    expect(state.detections.repeated_failed_login_attempts?.sourcesBehind).toEqual({ region2: "2025-11-10T10:00:00.000000Z" });
    const health = await detectionsStateCheck(container, envFor("det-regions-down", down), next + 11 * HOUR + 25 * 60_000);
    expect(health.status).toBe("WARN");
    expect(health.detail).toMatch(/1 source\(s\) failed in the last run \(region2;.*404/);
    expect(health.detail).toMatch(/from 2025-11-10T10:00:00.000Z wait to be evaluated again over source region2/);

    const back = await cycle("det-regions-down", next + 15 * HOUR + 20 * 60_000, settings);
    expect(back.sources.map((s) => s.error)).toEqual([undefined, undefined]);
    expect(back.alertsRaised).toBe(2);
    const again = await cycle("det-regions-down", next + 16 * HOUR + 20 * 60_000, settings);
    expect(again.alertsRaised).toBe(0);

    const alerts = await blobAlerts(container);
    expect(alerts.map((a) => [a.email, a.count, a.sources]).sort()).toEqual([
      ["a@example.com", 2, ["region1"]],
      ["b@example.com", 2, ["region2"]],
      ["c@example.com", 2, ["region1", "region2"]],
    ]);
    const ids = ingested().map((r) => r.AlertId);
    expect(new Set(ids).size).toBe(ids.length);
    expect(ids.sort()).toEqual(alerts.map((a) => a.alert_id).sort());
    const healed = await detectionsStateCheck(container, envFor("det-regions-down", settings), next + 16 * HOUR + 25 * 60_000);
    expect(healed.detail).not.toMatch(/region2/);
  });
});

describe("runDetections (timer function) over two regions", () => {
  const timer: Timer = { isPastDue: false, schedule: { adjustForDST: false }, scheduleStatus: { last: "", next: "", lastUpdated: "" } };

  it("logs the refusing region in its summary line, fails after delivering the other region's alerts, and the check names it", async () => {
    const hourAgo = Math.floor(Date.now() / HOUR) * HOUR - 2 * HOUR;
    await stack.warehouses[0]!.appendRows(failedLogins("timer-regions@example.com", hourAgo + 60_000, 3));
    stack.logsIngestion.reset();
    const refusing = {
      DATABRICKS_SOURCES: sourcesSetting(stack, { region2: { accessTokenSetting: "REGION2_TOKEN" } }),
      REGION2_TOKEN: stack.contract.databricks.noGrantToken,
    };
    process.env = { ...savedEnv, ...envFor("det-regions-function", refusing) };
    const lines: string[] = [];
    const context = new InvocationContext({ functionName: "runDetections", logHandler: (_level, ...args) => lines.push(args.map(String).join(" ")) });
    const error = await runDetectionsFunction(timer, context).catch((e: unknown) => e);
    expect(String(error)).toMatch(/finished with failures.*source region2: The identity cannot read system\.access\.audit/);
    const summaries = lines.filter((l) => l.startsWith("detections until"));
    expect(summaries).toHaveLength(1);
    expect(summaries[0]).toMatch(/sources \(state\/warehouse time\) region1=ok\/\d+ms region2=FAILED\/\d+ms/);
    expect(summaries[0]).toMatch(/repeated_failed_login_attempts=1\/\d+ms \(failed on region2\)/);
    expect(ingested().filter((r) => r.UserEmail === "timer-regions@example.com")).toEqual([expect.objectContaining({ Sources: ["region1"] })]);
    for (const line of lines) expect(line).not.toContain(stack.contract.databricks.noGrantToken);

    const check = await detectionsStateCheck(containerFor(stack, "det-regions-function"), process.env, Date.now());
    expect(check.status).toBe("WARN");
    expect(check.detail).toMatch(/source\(s\) failed in the last run \(region2; .*INSUFFICIENT_PERMISSIONS/);
  });
});

describe("dbx-audit detect over two regions", () => {
  const day = "2025-11-03T00:00:00Z";
  const cli = (args: string[], env: Record<string, string> = {}): Promise<CliResult> =>
    runCli(args, { PATH: process.env.PATH, NODE_EXTRA_CA_CERTS: process.env.NODE_EXTRA_CA_CERTS, ...stack.contract.env, ...env });
  const parse = (stdout: string) =>
    stdout
      .split("\n")
      .filter(Boolean)
      .map((l) => JSON.parse(l) as AlertLine);
  const args = ["detect", "--start", day, "--end", "2025-11-04T00:00:00Z", "--only", "access_to_multiple_workspaces,repeated_failed_login_attempts"];

  it("reads every source and puts them together as the timer does; a source that is down is reported and the others' alerts written", async () => {
    const both = await cli(args);
    expect(both.code).toBe(0);
    expect(both.stderr).toMatch(/on 2 of 2 sources/);
    expect(of(parse(both.stdout), "access_to_multiple_workspaces")).toEqual([expect.objectContaining({ value: 5, sources: ["region1", "region2"] })]);

    const down = await cli(args, { DATABRICKS_SOURCES: sourcesSetting(stack, { region2: { httpPath: "/sql/1.0/warehouses/0000000000000000" } }) });
    expect(down.code).toBe(1);
    expect(down.stderr).toMatch(/source region2: FAILED cannot connect/);
    expect(down.stderr).toMatch(/on 1 of 2 sources .*failed: source region2/);
    const alerts = parse(down.stdout);
    expect(of(alerts, "access_to_multiple_workspaces")).toEqual([]);
    expect(of(alerts, "repeated_failed_login_attempts", "twice@example.com")).toEqual([expect.objectContaining({ count: 2, sources: ["region1"] })]);
  });
});
