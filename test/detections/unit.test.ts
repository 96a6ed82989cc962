import { describe, expect, it } from "vitest";
import tables from "../../infra/tables.json";
import { loadDetectionsConfig } from "../../shared/detections/config";
import { alertFromRow, alertId, alertRecord, alertBlobName } from "../../shared/detections/alerts";
import { BUILT_IN_DETECTIONS, builtInDetection } from "../../shared/detections/catalog";
import { resolveCatalog } from "../../shared/detections/overrides";
import { detectionQuery, expressionProblem } from "../../shared/detections/sql";
import { behindPositionsUs, behindUs, markSourcesBehind } from "../../shared/detections/runSources";
import { initialDetectionsState, type DetectionProgress } from "../../shared/detections/state";
import { extendForSourcesBehind, forgetBeforeUs, MAX_SOURCE_CATCH_UP_US, planEvaluation } from "../../shared/detections/windows";
import { ConfigError } from "../../shared/errors";

const HOUR_US = 3_600_000_000;
const DAY_US = 24 * HOUR_US;
const T = Date.parse("2025-10-02T12:20:00Z");

function sampleAlert() {
  const detection = builtInDetection("repeated_failed_login_attempts")!;
  return alertFromRow(detection, {
    window_index: Math.floor((T * 1000) / HOUR_US) - 2,
    g_email: "a@example.com",
    measure_value: 3,
    event_count: 3,
    first_event_us: T * 1000 - 2 * HOUR_US + 5,
    last_event_us: T * 1000 - 2 * HOUR_US + 900,
    principals: ["a@example.com", null],
    source_ips: ["10.0.0.1"],
    workspaces: ["123"],
    actions: ["samlLogin", "login"],
    services: ["accounts"],
    sample_event_ids: ["e2", "e1"],
    ctx_error_messages: ["Invalid credentials"],
  });
}

describe("the catalog", () => {
  it("holds the seed's 30 alerting entries with their names, and the Sentinel solution's 4 rules", () => {
    expect(BUILT_IN_DETECTIONS.filter((d) => d.origin === "seed")).toHaveLength(30);
    expect(BUILT_IN_DETECTIONS.filter((d) => d.origin === "sentinel")).toHaveLength(4);
    expect(new Set(BUILT_IN_DETECTIONS.map((d) => d.name)).size).toBe(34);
    for (const d of BUILT_IN_DETECTIONS) {
      expect(d.name).toMatch(/^[a-z][a-z0-9_]+$/);
      expect(d.description.length).toBeGreaterThan(10);
      expect(d.technique).toMatch(/^T\d{4}(\.\d{3})?$/);
      expect(expressionProblem(d.filter), d.name).toBeUndefined();
      if (d.measure) expect(expressionProblem(d.measure), d.name).toBeUndefined();
      for (const [name, expression] of Object.entries(d.context ?? {})) {
        expect(name, d.name).toMatch(/^[a-z][a-z0-9_]*$/);
        expect(expressionProblem(expression), `${d.name}.${name}`).toBeUndefined();
      }
      expect(d.groupBy.length).toBeGreaterThan(0);
    }
  });

  it("keeps the facts' operators: > and >= differ", () => {
    const facts: Record<string, [string, number]> = {
      repeated_failed_login_attempts: [">", 1],
      data_downloads_from_control_plane: [">", 20],
      // Upstream's queries keep > 50 and > 25 before their alerts' >= : the query is what fires.
      destructive_activities: [">", 50],
      potential_privilege_escalation: [">", 25],
      repeated_access_to_secrets: [">=", 10],
      access_to_multiple_workspaces: [">=", 5],
      repeated_unauthorized_uc_requests: [">", 25],
      repeated_unauthorized_uc_data_requests: [">", 15],
      sentinel_failed_logins_from_ip: [">=", 10],
    };
    for (const [name, [operator, threshold]] of Object.entries(facts)) expect(builtInDetection(name)).toMatchObject({ operator, threshold });
    expect(builtInDetection("destructive_activities")?.windowMinutes).toBe(1440);
    expect(builtInDetection("access_to_multiple_workspaces")?.windowMinutes).toBe(1440);
  });

  it("binds the range, window, threshold and workspaces; nothing from settings is in the SQL text", () => {
    const query = detectionQuery(builtInDetection("repeated_failed_login_attempts")!, { fromUs: 1, toUs: 2 * HOUR_US }, ["111", "222"]);
    expect(query.params).toMatchObject({ threshold: "1", window_us: String(HOUR_US), ws_0: "111", ws_1: "222", from_us: "1" });
    expect(query.sql).toContain("HAVING count(*) > CAST(:threshold AS BIGINT)");
    expect(query.sql).not.toMatch(/111|222/);
    expect(query.sql).toContain("(workspace_id IN (:ws_0, :ws_1) OR workspace_id = '0')");
  });
});

describe("alerts", () => {
  it("matches DatabricksAuditAlerts_CL in infra/tables.json column for column, type for type", () => {
    const record = alertRecord(sampleAlert(), "2025-10-02T12:21:00.000Z") as unknown as Record<string, unknown>;
    const columns = tables.tables.DatabricksAuditAlerts_CL.columns;
    expect(Object.keys(record)).toEqual(columns.map((c) => c.name));
    for (const column of columns) {
      const value = record[column.name];
      const ok = {
        string: typeof value === "string",
        dateTime: typeof value === "string" && !Number.isNaN(Date.parse(value)),
        long: Number.isSafeInteger(value),
        int: Number.isInteger(value),
        real: typeof value === "number" && Number.isFinite(value),
        dynamic: typeof value === "object" && value !== null,
      }[column.type];
      expect(ok, `${column.name} (${column.type})`).toBe(true);
    }
    expect(tables.tables.DatabricksAuditAlerts_CL.stream).toBe("Custom-DatabricksAuditAlerts");
  });

  it("writes the group key's values as plain fields, email and user alike, and an id that only the detection, window and group decide", () => {
    const alert = sampleAlert();
    expect(alert).toMatchObject({
      detection: "repeated_failed_login_attempts",
      email: "a@example.com",
      user: "a@example.com",
      window_start: "2025-10-02T10:00:00.000000Z",
      window_end: "2025-10-02T11:00:00.000000Z",
      count: 3,
      principals: ["a@example.com"],
      sample_event_ids: ["e1", "e2"],
      group_key: { email: "a@example.com" },
      value: 3,
      measure_name: "total",
      condition: "> 1",
      actions: ["login", "samlLogin"],
      services: ["accounts"],
      context: { error_messages: ["Invalid credentials"] },
    });
    expect(alertRecord(alert, "2025-10-02T12:21:00.000Z")).toMatchObject({
      MeasureName: "total",
      MeasureValue: 3,
      Condition: "> 1",
      Actions: ["login", "samlLogin"],
      Context: { error_messages: ["Invalid credentials"] },
    });
    expect(Object.keys(alert).slice(0, 8)).toEqual(["alert_id", "detection", "description", "severity", "tactic", "technique", "window_start", "window_end"]);
    expect(alert.alert_id).toBe(alertId("repeated_failed_login_attempts", alert.window_start, alert.window_end, { email: "a@example.com" }));
    expect(alertId("x", "a", "b", { email: "1", source_ip: "2" })).toBe(alertId("x", "a", "b", { source_ip: "2", email: "1" }));
    expect(alertId("x", "a", "b", { email: "1" })).not.toBe(alertId("x", "a", "c", { email: "1" }));
    expect(alertBlobName(alert)).toBe(`alerts/date=2025-10-02/hour=10/repeated_failed_login_attempts-${alert.alert_id}.jsonl`);
  });
});

describe("window planning", () => {
  const base = { settleDelayMs: 10 * 60_000, lateHorizonMs: 24 * 3_600_000 };
  it("evaluates complete hours up to now minus the settle delay, and re-evaluates the late-row horizon", () => {
    const plan = planEvaluation({ ...base, windowMinutes: 60, positionUs: (T - 3_600_000 - 20 * 60_000) * 1000, nowMs: T })!;
    expect(new Date(plan.toUs / 1000).toISOString()).toBe("2025-10-02T12:00:00.000Z");
    expect(new Date(plan.fromUs / 1000).toISOString()).toBe("2025-10-01T12:00:00.000Z");
    expect(plan.windows).toBe(24);
    // Ten minutes past the hour with a 15-minute settle delay: that hour is not complete yet.
    expect(planEvaluation({ ...base, settleDelayMs: 15 * 60_000, windowMinutes: 60, positionUs: undefined, nowMs: T - 10 * 60_000 })!.toUs).toBe(
      Date.parse("2025-10-02T11:00:00Z") * 1000,
    );
  });

  it("evaluates day windows from the day's start, so far", () => {
    const plan = planEvaluation({ ...base, lateHorizonMs: 3_600_000, windowMinutes: 1440, positionUs: Date.parse("2025-10-02T11:00:00Z") * 1000, nowMs: T })!;
    expect(new Date(plan.fromUs / 1000).toISOString()).toBe("2025-10-02T00:00:00.000Z");
    expect(plan.windows).toBe(1);
  });

  it("catches up a detection that fell behind a week at a time, and forgets alert ids no run can raise again", () => {
    const position = Date.parse("2025-09-01T00:00:00Z") * 1000;
    const plan = planEvaluation({ ...base, windowMinutes: 60, positionUs: position, nowMs: T })!;
    expect(plan.fromUs).toBe(position);
    expect(plan.toUs - plan.fromUs).toBe(7 * 24 * HOUR_US);
    expect(forgetBeforeUs(Date.parse("2025-10-02T12:00:00Z") * 1000, 24 * 3_600_000, [position])).toBe(position - 24 * HOUR_US);
  });
});

describe("the overrides file", () => {
  it("disables, retunes and adds detections", () => {
    const { detections, errors } = resolveCatalog({
      name: "detections.yaml",
      text: [
        "detections:",
        "  use_of_print_statements: { enabled: false }",
        "  repeated_failed_login_attempts: { threshold: 4, window: PT30M, severity: High }",
        "  cluster_deleted:",
        "    description: A cluster was deleted.",
        "    severity: Low",
        "    filter: action_name = 'delete' AND service_name = 'clusters'",
        '    operator: ">="',
        "    threshold: 1",
        "    group_by: [email, workspace_id]",
        "    window: P1D",
      ].join("\n"),
    });
    expect(errors).toEqual([]);
    expect(detections.find((d) => d.name === "use_of_print_statements")?.enabled).toBe(false);
    expect(detections.find((d) => d.name === "repeated_failed_login_attempts")).toMatchObject({
      threshold: 4,
      windowMinutes: 30,
      severity: "High",
      operator: ">",
    });
    expect(detections.find((d) => d.name === "cluster_deleted")).toMatchObject({
      origin: "custom",
      groupBy: ["email", "workspace_id"],
      windowMinutes: 1440,
      enabled: true,
    });
    expect(detections).toHaveLength(35);
  });

  it("names the entry and the field of every malformed entry, and keeps every other detection", () => {
    const { detections, errors } = resolveCatalog({
      name: "detections.json",
      text: JSON.stringify({
        detections: {
          destructive_activities: { threshold: "many", filter: "1 = 1" },
          mount_point_creation: { severity: "Critical" },
          no_filter: { description: "x", severity: "Low", operator: ">", threshold: 0 },
          sneaky: { description: "x", severity: "Low", operator: ">", threshold: 0, filter: "1 = 1; DROP TABLE x" },
          bad_operator: { description: "x", severity: "Low", operator: "<", threshold: 0, filter: "1 = 1" },
          parameterised: { description: "x", severity: "Low", operator: ">", threshold: 0, filter: "workspace_id = :ws_0" },
        },
      }),
    });
    const text = errors.join("\n");
    expect(text).toMatch(/detection 'destructive_activities': field 'threshold' must be integer/);
    expect(text).toMatch(/detection 'destructive_activities': field 'filter' cannot be changed on a built-in detection/);
    expect(text).toMatch(/detection 'mount_point_creation': field 'severity' must be one of "Informational", "Low", "Medium", "High"/);
    expect(text).toMatch(/detection 'no_filter': field 'filter' is required/);
    expect(text).toMatch(/detection 'sneaky': field 'filter' must not contain ';'/);
    expect(text).toMatch(/detection 'bad_operator': field 'operator' must be one of ">", ">="/);
    expect(text).toMatch(/detection 'parameterised': field 'filter' must not contain parameter markers/);
    expect(detections).toHaveLength(34);
    expect(detections.find((d) => d.name === "destructive_activities")).toMatchObject({ threshold: 50, operator: ">" });
  });

  it("reports a file that does not parse, and runs the built-ins as shipped", () => {
    const { detections, errors } = resolveCatalog({ name: "d.yaml", text: "detections: [unclosed" });
    expect(errors).toEqual([expect.stringMatching(/^d\.yaml: not valid YAML/)]);
    expect(detections).toHaveLength(34);
    expect(resolveCatalog({ name: "d.yaml", text: "other: 1" }).errors.join("\n")).toMatch(/d\.yaml: .*detections/);
  });
});

describe("detections settings", () => {
  const valid = {
    DATABRICKS_SERVER_HOSTNAME: "adb-1.2.azuredatabricks.net",
    DATABRICKS_HTTP_PATH: "/sql/1.0/warehouses/abc",
    EXPORT_STORAGE_ACCOUNT_URL: "https://a.blob.core.windows.net",
  };
  it("defaults to hourly at :15 over every workspace, Log Analytics only with its alerts stream", () => {
    const config = loadDetectionsConfig({ ...valid, DATABRICKS_WORKSPACE_IDS: "123", AUDIT_SERVICES: "clusters" });
    expect(config).toMatchObject({ schedule: "0 15 * * * *", workspaceIds: [] });
    expect(config.alertsIngestion).toBeUndefined();
    const la = {
      LOGS_INGESTION_ENDPOINT: "https://dce.westeurope-1.ingest.monitor.azure.com",
      LOGS_INGESTION_RULE_ID: `dcr-${"a".repeat(32)}`,
      LOGS_INGESTION_STREAM: "Custom-DatabricksAudit",
    };
    expect(loadDetectionsConfig({ ...valid, ...la, LOGS_INGESTION_ALERTS_STREAM: "Custom-DatabricksAuditAlerts" }).alertsIngestion).toEqual({
      endpoint: la.LOGS_INGESTION_ENDPOINT,
      ruleId: la.LOGS_INGESTION_RULE_ID,
      streamName: "Custom-DatabricksAuditAlerts",
    });
  });

  it("reports every problem at once, the app's and the detections', each naming its setting", () => {
    let error: unknown;
    try {
      loadDetectionsConfig({ DETECTIONS_SCHEDULE: "every hour", DETECTIONS_WORKSPACE_IDS: "x1", LOGS_INGESTION_ALERTS_STREAM: "Custom-DatabricksAuditAlerts" });
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ConfigError);
    const problems = (error as ConfigError).problems.join("\n");
    for (const name of [
      "DATABRICKS_SERVER_HOSTNAME",
      "DETECTIONS_SCHEDULE",
      "DETECTIONS_WORKSPACE_IDS",
      "LOGS_INGESTION_ALERTS_STREAM needs LOGS_INGESTION_ENDPOINT",
    ]) {
      expect(problems).toContain(name);
    }
  });
});

describe("windows evaluated without a source", () => {
  const plan = { fromUs: 100 * HOUR_US, toUs: 125 * HOUR_US, nextPositionUs: 125 * HOUR_US, windows: 25 };

  it("are marked per source, kept at the earliest, and cleared once the source answers", () => {
    const progress: DetectionProgress = {};
    markSourcesBehind(progress, ["a", "b"], ["a"], 90 * HOUR_US);
    markSourcesBehind(progress, ["a", "b"], ["a"], 95 * HOUR_US);
    expect(progress.sourcesBehind).toEqual({ b: "1970-01-04T18:00:00.000000Z" });
    expect(behindUs(progress, ["a", "b"], ["a"])).toEqual([]);
    expect(behindUs(progress, ["a", "b"], ["a", "b"])).toEqual([90 * HOUR_US]);
    markSourcesBehind(progress, ["a", "b"], ["a", "b"], 90 * HOUR_US);
    expect(progress.sourcesBehind).toBeUndefined();
    // A source no longer configured is forgotten.
    const gone: DetectionProgress = { sourcesBehind: { old: "1970-01-04T18:00:00.000000Z" } };
    expect(behindUs(gone, ["a"], ["a"])).toEqual([]);
    expect(gone.sourcesBehind).toEqual({});
  });

  it("extend the range back to where the source was missing, at most a week, and keep alert ids from there", () => {
    expect(extendForSourcesBehind(plan, 60, [])).toEqual({ fromUs: plan.fromUs, windows: 25 });
    expect(extendForSourcesBehind(plan, 60, [90 * HOUR_US + 5])).toEqual({ fromUs: 90 * HOUR_US, windows: 35 });
    const late = { fromUs: 400 * HOUR_US, toUs: 425 * HOUR_US, nextPositionUs: 425 * HOUR_US, windows: 25 };
    const long = extendForSourcesBehind(late, 1440, [0]);
    expect(long.givenUpBeforeUs).toBe(late.toUs - MAX_SOURCE_CATCH_UP_US);
    expect(long.fromUs).toBe(Math.floor((late.toUs - MAX_SOURCE_CATCH_UP_US) / DAY_US) * DAY_US);
    const state = initialDetectionsState();
    state.detections.x = { sourcesBehind: { b: "1970-01-13T12:00:00.000000Z" } };
    state.detections.y = { sourcesBehind: { b: "1970-01-01T00:00:00.000000Z" } };
    expect(behindPositionsUs(state, late.toUs).sort((p, q) => p - q)).toEqual([late.toUs - MAX_SOURCE_CATCH_UP_US, 300 * HOUR_US]);
  });
});
