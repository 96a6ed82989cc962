import { InvocationContext, type Timer } from "@azure/functions";
import type { ContainerClient } from "@azure/storage-blob";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { SandboxStack } from "../../sandbox/stack";
import { runDetections as runDetectionsFunction } from "../../functions/runDetections";
import { loadDetectionsConfig } from "../../shared/detections/config";
import type { AlertLine, AlertRecord } from "../../shared/detections/alerts";
import { BUILT_IN_DETECTIONS } from "../../shared/detections/catalog";
import { runDetectionsCycle } from "../../shared/detections/cycle";
import type { DetectionsRunSummary } from "../../shared/detections/runner";
import { DETECTIONS_STATE_BLOB, parseDetectionsState } from "../../shared/detections/state";
import { ConcurrentRunError, ConfigError } from "../../shared/errors";
import { auditRow, isoMicros, type AuditRow } from "../support/auditRows";
import { alertsOfVariant, buildCaseRows } from "./cases";
import { containerFor, startStack } from "../support/exportHarness";

/**
 * The detections' timer cycle against the local stack: real driver, Azurite, the Logs
 * Ingestion client. Time is passed in, so consecutive hourly runs take milliseconds.
 */
let stack: SandboxStack;
const savedEnv = { ...process.env };
const ALERTS_STREAM = "Custom-DatabricksAuditAlerts";
const HOUR = 3_600_000;

beforeAll(async () => {
  stack = await startStack();
});
afterAll(async () => {
  process.env = savedEnv;
  await stack?.close();
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
    {
      now: () => nowMs,
      ingestion: { maxRetries: 0 },
    },
  );
  return summary;
}

async function blobAlerts(container: ContainerClient): Promise<AlertLine[]> {
  const alerts: AlertLine[] = [];
  for await (const blob of container.listBlobsFlat({ prefix: "alerts/" })) {
    const text = (await container.getBlobClient(blob.name).downloadToBuffer()).toString("utf8");
    for (const line of text.split("\n").filter(Boolean)) alerts.push(JSON.parse(line) as AlertLine);
  }
  return alerts;
}

/** An overrides file that leaves only the named detections enabled: runs that test the protocol, not the catalog, stay quick. */
async function onlyDetections(container: string, names: readonly string[]): Promise<Record<string, string>> {
  const client = containerFor(stack, container);
  await client.createIfNotExists();
  const text = JSON.stringify({
    detections: Object.fromEntries(BUILT_IN_DETECTIONS.filter((d) => !names.includes(d.name)).map((d) => [d.name, { enabled: false }])),
  });
  await client.getBlockBlobClient("only.json").upload(text, Buffer.byteLength(text));
  return { DETECTIONS_CONFIG: "only.json" };
}

function ingestedAlerts(): AlertRecord[] {
  return stack.logsIngestion.received(ALERTS_STREAM) as unknown as AlertRecord[];
}

function expectNoDuplicates(ids: readonly string[]): void {
  expect(ids.length).toBe(new Set(ids).size);
}

const failedLogins = (email: string, startMs: number, n: number): AuditRow[] =>
  Array.from({ length: n }, (_, i) =>
    auditRow(isoMicros((startMs + i * 60_000) * 1000), {
      service_name: "accounts",
      action_name: "login",
      response: { status_code: 401, error_message: null, result: null },
      user_identity: { email, subject_name: null },
    }),
  );
const deletes = (email: string, startMs: number, n: number, stepMs: number): AuditRow[] =>
  Array.from({ length: n }, (_, i) =>
    auditRow(isoMicros((startMs + i * stepMs) * 1000), {
      service_name: "clusters",
      action_name: "deleteCluster",
      user_identity: { email, subject_name: null },
    }),
  );

describe("runDetections cycle", () => {
  it("raises each alert exactly once over consecutive runs, including one after late rows arrive", async () => {
    const day = Date.parse("2025-10-02T00:00:00Z");
    await stack.warehouse.appendRows([
      ...failedLogins("a@example.com", day + 10 * HOUR + 5 * 60_000, 2),
      ...deletes("d@example.com", day + HOUR, 31, 15 * 60_000),
    ]);
    stack.logsIngestion.reset();
    const container = containerFor(stack, "det-exactly-once");
    // The two detections these rows concern (the whole catalog's three runs are the next test's).
    const only = await onlyDetections("det-exactly-once", ["repeated_failed_login_attempts", "destructive_activities"]);

    const first = await cycle("det-exactly-once", day + 12 * HOUR + 20 * 60_000, only);
    expect(first.failures).toEqual([]);
    expect(first.evaluatedUntil).toBe("2025-10-02T12:00:00.000000Z");
    const second = await cycle("det-exactly-once", day + 13 * HOUR + 20 * 60_000, only);
    expect(second.alertsRaised).toBe(0);

    // Late rows: a new principal's failed logins before the last evaluated hour, one more for the
    // group already raised, and the deletes that carry the day past its threshold.
    await stack.warehouse.appendRows([
      ...failedLogins("b@example.com", day + 9 * HOUR + 30 * 60_000, 2),
      ...failedLogins("a@example.com", day + 10 * HOUR + 30 * 60_000, 1),
      ...deletes("d@example.com", day + 11 * HOUR, 20, 60_000),
    ]);
    const third = await cycle("det-exactly-once", day + 14 * HOUR + 20 * 60_000, only);

    const inBlob = await blobAlerts(container);
    const inLogAnalytics = ingestedAlerts();
    expectNoDuplicates(inBlob.map((a) => a.alert_id));
    expectNoDuplicates(inLogAnalytics.map((r) => r.AlertId));
    expect(inLogAnalytics.map((r) => r.AlertId).sort()).toEqual(inBlob.map((a) => a.alert_id).sort());

    const logins = inBlob.filter((a) => a.detection === "repeated_failed_login_attempts");
    expect(logins.map((a) => [a.email, a.window_start, a.count]).sort()).toEqual([
      ["a@example.com", "2025-10-02T10:00:00.000000Z", 2],
      ["b@example.com", "2025-10-02T09:00:00.000000Z", 2],
    ]);
    const destructive = inBlob.filter((a) => a.detection === "destructive_activities");
    expect(destructive).toHaveLength(1);
    expect(destructive[0]).toMatchObject({ email: "d@example.com", event_date: "2025-10-02", count: 51, window_start: "2025-10-02T00:00:00.000000Z" });
    expect(first.alertsRaised + second.alertsRaised + third.alertsRaised).toBe(inBlob.length);
    expect(third.alertsRaised).toBeGreaterThanOrEqual(2);

    const state = parseDetectionsState((await container.getBlobClient(DETECTIONS_STATE_BLOB).downloadToBuffer()).toString("utf8"));
    expect(state.lock).toBeNull();
    expect(state.pending).toEqual([]);
    expect(state.detections.repeated_failed_login_attempts?.evaluatedUntil).toBe("2025-10-02T14:00:00.000000Z");
    expect(Object.keys(state.raised)).toEqual(expect.arrayContaining(inBlob.map((a) => a.alert_id)));
    const blobNames: string[] = [];
    for await (const blob of container.listBlobsFlat({ prefix: "alerts/" })) blobNames.push(blob.name);
    expect(blobNames.some((n) => n.startsWith("alerts/date=2025-10-02/hour=10/repeated_failed_login_attempts-"))).toBe(true);
  });

  it("raises each detection's alert once over three runs, half of the cases' rows arriving late", async () => {
    const day = Date.parse("2025-10-20T00:00:00Z");
    const cases = buildCaseRows(day);
    // Every other firing case arrives late, after the second run evaluated its hours; the near misses come on time.
    const late = cases.filter((c, i) => c.fires && i % 2 === 1);
    await stack.warehouse.appendRows(cases.filter((c) => !late.includes(c)).flatMap((c) => c.rows));
    stack.logsIngestion.reset();
    const summaries = [await cycle("det-catalog", day + 23 * HOUR + 20 * 60_000), await cycle("det-catalog", day + 24 * HOUR + 20 * 60_000)];
    await stack.warehouse.appendRows(late.flatMap((c) => c.rows));
    summaries.push(await cycle("det-catalog", day + 25 * HOUR + 20 * 60_000));
    expect(summaries.flatMap((s) => s.failures)).toEqual([]);
    expect(summaries[1]!.alertsRaised).toBe(0);

    const inBlob = await blobAlerts(containerFor(stack, "det-catalog"));
    expectNoDuplicates(inBlob.map((a) => a.alert_id));
    expect(
      ingestedAlerts()
        .map((r) => r.AlertId)
        .sort(),
    ).toEqual(inBlob.map((a) => a.alert_id).sort());
    for (const c of cases) {
      expect(alertsOfVariant(inBlob, c), `${c.testCase.detection}: ${c.variant.why}`).toHaveLength(c.fires ? 1 : 0);
    }
    expect(summaries[2]!.alertsRaised).toBeGreaterThanOrEqual(late.length);
  });

  it("keeps alerts Log Analytics refused pending, fails, and delivers them once on the next run", async () => {
    const day = Date.parse("2025-10-05T00:00:00Z");
    await stack.warehouse.appendRows(failedLogins("c@example.com", day + 8 * HOUR, 3));
    stack.logsIngestion.reset();
    stack.logsIngestion.setFaults({ forbidden: true });
    const only = await onlyDetections("det-pending", ["repeated_failed_login_attempts"]);
    const failed = await cycle("det-pending", day + 10 * HOUR + 20 * 60_000, only);
    stack.logsIngestion.setFaults({});
    expect(failed.deliveryError).toMatch(/Log Analytics did not accept 1 of 1 alerts/);
    expect(failed.alertsPending).toBe(1);
    expect(await blobAlerts(containerFor(stack, "det-pending"))).toHaveLength(1);
    expect(ingestedAlerts()).toHaveLength(0);

    const next = await cycle("det-pending", day + 11 * HOUR + 20 * 60_000, only);
    expect(next).toMatchObject({ alertsRaised: 0, alertsIngested: 1, alertsPending: 0 });
    const again = await cycle("det-pending", day + 12 * HOUR + 20 * 60_000, only);
    expect(again.alertsIngested).toBe(0);
    expect(ingestedAlerts().map((r) => r.UserEmail)).toEqual(["c@example.com"]);
    expect(await blobAlerts(containerFor(stack, "det-pending"))).toHaveLength(1);
  });

  it("lets one of two concurrent runs through; the other does nothing", async () => {
    const day = Date.parse("2025-10-07T00:00:00Z");
    await stack.warehouse.appendRows(failedLogins("e@example.com", day + 8 * HOUR, 2));
    stack.logsIngestion.reset();
    const now = day + 9 * HOUR + 20 * 60_000;
    const only = await onlyDetections("det-concurrent", ["repeated_failed_login_attempts"]);
    const results = await Promise.allSettled([cycle("det-concurrent", now, only), cycle("det-concurrent", now, only)]);
    expect(results.filter((r) => r.status === "fulfilled")).toHaveLength(1);
    const rejected = results.find((r): r is PromiseRejectedResult => r.status === "rejected")!;
    expect(rejected.reason).toBeInstanceOf(ConcurrentRunError);
    expect(ingestedAlerts()).toHaveLength(1);
  });

  it("fails a detection whose SQL the warehouse refuses alone, and reports a malformed overrides entry by entry and field", async () => {
    const day = Date.parse("2025-10-09T00:00:00Z");
    await stack.warehouse.appendRows([
      ...failedLogins("f@example.com", day + 8 * HOUR, 2),
      auditRow(isoMicros((day + 8 * HOUR) * 1000), { action_name: "permanentDelete", user_identity: { email: "g@contractor.example", subject_name: null } }),
    ]);
    stack.logsIngestion.reset();
    const container = containerFor(stack, "det-overrides");
    await container.createIfNotExists();
    const yaml = [
      "detections:",
      "  repeated_failed_login_attempts:",
      "    threshold: -1",
      "  use_of_print_statements:",
      "    enabled: false",
      "  broken_detection:",
      "    description: Refers to a column the table does not have.",
      "    severity: Low",
      "    filter: no_such_column = 1",
      '    operator: ">"',
      "    threshold: 0",
      "  contractor_permanent_delete:",
      "    description: A contractor deleted something permanently.",
      "    severity: Medium",
      "    tactic: Impact",
      "    technique: T1485",
      "    filter: \"action_name = 'permanentDelete' AND user_identity.email LIKE '%@contractor.example'\"",
      '    operator: ">"',
      "    threshold: 0",
    ].join("\n");
    await container.getBlockBlobClient("config/detections.yaml").upload(yaml, Buffer.byteLength(yaml));

    const summary = await cycle("det-overrides", day + 9 * HOUR + 20 * 60_000, { DETECTIONS_CONFIG: "config/detections.yaml" });
    expect(summary.failures.map((f) => f.detection)).toEqual(["broken_detection"]);
    expect(summary.detections.some((d) => d.name === "use_of_print_statements")).toBe(false);
    const alerts = await blobAlerts(container);
    // The malformed retune leaves the built-in as shipped: the 2 failed logins still alert.
    expect(alerts.map((a) => a.detection).sort()).toEqual(["contractor_permanent_delete", "repeated_failed_login_attempts"]);
    expect(ingestedAlerts()).toHaveLength(2);
    const state = parseDetectionsState((await container.getBlobClient(DETECTIONS_STATE_BLOB).downloadToBuffer()).toString("utf8"));
    expect(state.detections.broken_detection?.lastError).toMatch(/no_such_column/);
    expect(state.configErrors).toEqual([expect.stringMatching(/detection 'repeated_failed_login_attempts'.*field 'threshold'/)]);
  });
});

describe("runDetections (timer function)", () => {
  const timer: Timer = { isPastDue: false, schedule: { adjustForDST: false }, scheduleStatus: { last: "", next: "", lastUpdated: "" } };
  function invocation() {
    const lines: { level: string; text: string }[] = [];
    const context = new InvocationContext({
      functionName: "runDetections",
      logHandler: (level, ...args) => lines.push({ level, text: args.map(String).join(" ") }),
    });
    return { context, lines };
  }

  it("evaluates the recent hours and logs one summary line", async () => {
    const hourAgo = Math.floor(Date.now() / HOUR) * HOUR - 2 * HOUR;
    await stack.warehouse.appendRows(failedLogins("timer@example.com", hourAgo + 60_000, 3));
    stack.logsIngestion.reset();
    // The export's service and workspace filters do not narrow the detections.
    process.env = { ...savedEnv, ...envFor("det-function"), AUDIT_SERVICES: "clusters", DATABRICKS_WORKSPACE_IDS: "9999999999999999" };
    const { context, lines } = invocation();
    await runDetectionsFunction(timer, context);
    const summaries = lines.filter((l) => l.text.startsWith("detections until"));
    expect(summaries).toHaveLength(1);
    expect(summaries[0]!.text).toMatch(/alerts raised [1-9].*repeated_failed_login_attempts=1\/\d+ms/);
    expect(ingestedAlerts().filter((r) => r.UserEmail === "timer@example.com")).toHaveLength(1);
    for (const line of lines) expect(line.text).not.toContain(stack.contract.databricks.token);
  });

  it("fails with every invalid setting named, before any I/O", async () => {
    process.env = {
      ...savedEnv,
      ...envFor("det-function"),
      DETECTIONS_SCHEDULE: "hourly",
      DETECTIONS_WORKSPACE_IDS: "abc",
      LOGS_INGESTION_ALERTS_STREAM: "alerts",
    };
    const { context } = invocation();
    const error = await runDetectionsFunction(timer, context).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).problems.join("\n")).toMatch(/DETECTIONS_SCHEDULE[\s\S]*DETECTIONS_WORKSPACE_IDS[\s\S]*LOGS_INGESTION_ALERTS_STREAM/);
  });
});
