import { describe, expect, it } from "vitest";
import { AUDIT_COLUMNS } from "../../shared/auditEvent";
import { initialState, type ExportState } from "../../shared/export/state";
import { assessFreshness, auditColumnsCheck, formatAge, runChecks, scheduleIntervalMs, worstStatus } from "../../shared/prerequisites";

const MIN = 60_000;
const HOUR = 60 * MIN;
const NOW = Date.parse("2025-03-10T12:00:00.000Z");

function stateWith(fields: Partial<ExportState>): ExportState {
  return { ...initialState(), ...fields };
}

const ago = (ms: number): string => new Date(NOW - ms).toISOString();

describe("scheduleIntervalMs", () => {
  it.each([
    ["0 5 * * * *", 60], // the default: hourly at minute 5
    ["0 */5 * * * *", 5],
    ["0 * * * * *", 1],
    ["*/30 * * * * *", 1],
    ["0 0,30 * * * *", 30],
    ["0 0,10 * * * *", 50], // the longest gap counts
    ["0 0 */2 * * *", 120],
    ["0 15 3 * * *", 24 * 60], // daily
    ["0 0 8,12 * * *", 20 * 60],
    ["0 30 9-17 * * *", 16 * 60], // overnight gap
    ["0 0 1/6 * * *", 6 * 60], // from 1 every 6 hours
    ["0 0-30/15 * * * *", 30],
    ["0 5 * * * 1-5", 60], // weekday restrictions are not taken into account
  ])("%s -> %i min", (schedule, minutes) => {
    expect(scheduleIntervalMs(schedule)).toBe(minutes * MIN);
  });

  it.each(["", "0 5 * * *", "0 61 * * * *", "0 abc * * * *", "0 5-3 * * * *", "0 */0 * * * *"])("falls back to hourly for %j", (schedule) => {
    expect(scheduleIntervalMs(schedule)).toBe(HOUR);
  });
});

describe("assessFreshness", () => {
  const hourly = "0 5 * * * *";

  it("warns when no export has run yet", () => {
    const result = assessFreshness(null, hourly, NOW);
    expect(result.status).toBe("WARN");
    expect(result.detail).toMatch(/no export has run yet/i);
    expect(result.remediation).toMatch(/exportAuditLogs/);
  });

  it("passes within 2 intervals, warns up to 6, fails beyond (boundaries included)", () => {
    const at = (ageMs: number) => assessFreshness(stateWith({ lastSuccessAt: ago(ageMs) }), hourly, NOW).status;
    expect(at(0)).toBe("PASS");
    expect(at(2 * HOUR)).toBe("PASS");
    expect(at(2 * HOUR + 1000)).toBe("WARN");
    expect(at(6 * HOUR)).toBe("WARN");
    expect(at(6 * HOUR + 1000)).toBe("FAIL");
    expect(at(30 * 24 * HOUR)).toBe("FAIL");
  });

  it("scales with the schedule", () => {
    const state = stateWith({ lastSuccessAt: ago(3 * HOUR) });
    expect(assessFreshness(state, "0 */5 * * * *", NOW).status).toBe("FAIL"); // 36 intervals of 5 min
    expect(assessFreshness(state, "0 5 * * * *", NOW).status).toBe("WARN");
    expect(assessFreshness(state, "0 0 2 * * *", NOW).status).toBe("PASS"); // daily
  });

  it("says how old the last success is, and the remediation on WARN/FAIL", () => {
    const result = assessFreshness(stateWith({ lastSuccessAt: ago(10 * HOUR) }), hourly, NOW);
    expect(result.status).toBe("FAIL");
    expect(result.detail).toContain(ago(10 * HOUR));
    expect(result.detail).toContain("10 h ago");
    expect(result.remediation).toMatch(/Application Insights/);
    expect(assessFreshness(stateWith({ lastSuccessAt: ago(10 * MIN) }), hourly, NOW).remediation).toBe("");
  });

  it("mentions a held lock and an expired one", () => {
    const held = assessFreshness(stateWith({ lastSuccessAt: ago(MIN), lock: { runId: "run-a", expiresAtMs: NOW + 10 * MIN } }), hourly, NOW);
    expect(held.status).toBe("PASS");
    expect(held.detail).toMatch(/run-a\) holds the export lock until/);
    const expired = assessFreshness(stateWith({ lastSuccessAt: ago(3 * HOUR), lock: { runId: "run-b", expiresAtMs: NOW - HOUR } }), hourly, NOW);
    expect(expired.status).toBe("WARN");
    expect(expired.detail).toMatch(/run-b\) stopped without releasing its lock/);
  });

  it("mentions the last error when it came after the last success, redacted", () => {
    const failing = stateWith({
      lastSuccessAt: ago(5 * HOUR),
      lastFailureAt: ago(HOUR),
      lastError: "upload failed: AccountKey=c2VjcmV0a2V5c2VjcmV0a2V5;EndpointSuffix=core.windows.net Bearer eyJhbGciOi.eyJzdWIiOi.sig",
    });
    const result = assessFreshness(failing, hourly, NOW);
    expect(result.status).toBe("WARN");
    expect(result.detail).toContain("last failure at");
    expect(result.detail).toContain("upload failed");
    expect(result.detail).not.toContain("c2VjcmV0a2V5");
    expect(result.detail).not.toContain("eyJhbGciOi");

    const recovered = stateWith({ lastSuccessAt: ago(MIN), lastFailureAt: ago(HOUR), lastError: "old trouble" });
    expect(assessFreshness(recovered, hourly, NOW).detail).not.toContain("old trouble");
  });

  it("warns when runs happened but none succeeded yet", () => {
    const result = assessFreshness(stateWith({ lastRunAt: ago(MIN), lastFailureAt: ago(MIN), lastError: "warehouse refused" }), hourly, NOW);
    expect(result.status).toBe("WARN");
    expect(result.detail).toMatch(/no export has succeeded yet/i);
    expect(result.detail).toContain("warehouse refused");
  });
});

describe("formatAge and worstStatus", () => {
  it("formats ages for people", () => {
    expect(formatAge(30_000)).toBe("30 s");
    expect(formatAge(90 * MIN)).toBe("90 min");
    expect(formatAge(10 * HOUR)).toBe("10 h");
    expect(formatAge(72 * HOUR)).toBe("3 days");
  });

  it("takes the worst status", () => {
    expect(worstStatus(["PASS", "PASS"])).toBe("PASS");
    expect(worstStatus(["PASS", "WARN"])).toBe("WARN");
    expect(worstStatus(["WARN", "FAIL", "PASS"])).toBe("FAIL");
  });
});

describe("auditColumnsCheck", () => {
  it("passes when every column the exporter reads is there, noting newer ones", () => {
    const result = auditColumnsCheck([...AUDIT_COLUMNS, "new_column"]);
    expect(result.status).toBe("PASS");
    expect(result.detail).toContain("new_column");
  });

  it("fails naming the missing columns", () => {
    const result = auditColumnsCheck(AUDIT_COLUMNS.filter((c) => c !== "event_id" && c !== "identity_metadata"));
    expect(result.status).toBe("FAIL");
    expect(result.detail).toContain("event_id, identity_metadata");
    expect(result.remediation).not.toBe("");
  });
});

describe("runChecks without any settings (no I/O is possible, none is attempted)", () => {
  it("fails configuration listing every problem and reports every other check", async () => {
    const report = await runChecks({ DATABRICKS_WORKSPACE_IDS: "abc", EXPORT_SCHEDULE: "hourly" }, {}, { budgetMs: 5_000 });
    expect(report.status).toBe("FAIL");
    expect(report.checks.map((c) => c.name)).toEqual([
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
    const byName = Object.fromEntries(report.checks.map((c) => [c.name, c]));
    expect(byName.configuration!.status).toBe("FAIL");
    for (const setting of ["DATABRICKS_SERVER_HOSTNAME", "DATABRICKS_HTTP_PATH", "DATABRICKS_WORKSPACE_IDS", "EXPORT_SCHEDULE"]) {
      expect(byName.configuration!.detail).toContain(setting);
      expect(byName.configuration!.remediation).toContain(setting);
    }
    expect(byName.warehouse_connectivity).toMatchObject({
      status: "FAIL",
      detail: expect.stringMatching(/^skipped: configuration failed \(DATABRICKS_SERVER_HOSTNAME, DATABRICKS_HTTP_PATH\)/),
    });
    // A dependency that was itself skipped passes on the root cause.
    expect(byName.system_table_access!.detail).toBe(byName.warehouse_connectivity!.detail);
    expect(byName.workspace_filter!.detail).toBe(byName.warehouse_connectivity!.detail);
    expect(byName.export_freshness).toMatchObject({ status: "FAIL", detail: expect.stringMatching(/^skipped: configuration failed \(EXPORT_SCHEDULE\)/) });
    // Checks that do not depend on the broken settings still ran.
    expect(byName.azure_authentication!.status).toBe("PASS");
    expect(byName.logs_ingestion!.status).toBe("PASS");
    expect(byName.blob_container!.status).toBe("WARN");
  });
});
