import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { SandboxStack } from "../../sandbox/stack";
import { Warehouse } from "../../shared/databricks";
import type { AlertLine } from "../../shared/detections/alerts";
import { BUILT_IN_DETECTIONS } from "../../shared/detections/catalog";
import { evaluateDetection } from "../../shared/detections/evaluate";
import { REPORTS, reportQuery } from "../../shared/detections/reports";
import { CONTEXT_VALUE_CHARS } from "../../shared/detections/sql";
import { auditRow, isoMicros } from "../support/auditRows";
import { startStack, warehouseSettings } from "../support/exportHarness";
import { alertsOfVariant, buildCaseRows, CASES, type Variant } from "./cases";

/**
 * Every built-in detection against the SQL warehouse stand-in through the real driver: each
 * case's firing rows raise exactly one alert, at the threshold's boundary, and each near miss
 * raises none. All cases share one day and are evaluated together, one query per detection.
 */
let stack: SandboxStack;
let warehouse: Warehouse;
const DAY = Date.parse("2025-10-01T00:00:00Z");
const caseRows = buildCaseRows(DAY);
const alerts: AlertLine[] = [];
/** The next day: one ClamAV scan on each of two hosts of one workspace. */
const NEXT_DAY = DAY + 86_400_000;
const twoHosts = ["i-0a1", "i-0b2"].map((host, i) =>
  auditRow(isoMicros((NEXT_DAY + 3_600_000 + i) * 1000), {
    service_name: "clamAVScanService-dataplane",
    action_name: "clamAVScanAction",
    request_params: { instanceId: host },
    response: { status_code: 200, error_message: null, result: `Infected files: ${i + 3}` },
  }),
);

beforeAll(async () => {
  stack = await startStack();
  await stack.warehouse.appendRows([...caseRows.flatMap((c) => c.rows), ...twoHosts]);
  warehouse = await Warehouse.connect(warehouseSettings(stack.contract.databricks), undefined);
  for (const detection of BUILT_IN_DETECTIONS) {
    const evaluation = await evaluateDetection(warehouse, detection, { fromUs: DAY * 1000, toUs: (DAY + 86_400_000) * 1000 }, [], Date.now);
    alerts.push(...evaluation.alerts);
  }
});

afterAll(async () => {
  await warehouse?.close();
  await stack?.close();
});

function alertOf(detection: string, why: string): AlertLine {
  const rows = caseRows.find((c) => c.testCase.detection === detection && c.variant.why === why)!;
  const found = alertsOfVariant(alerts, rows);
  expect(found, `${detection}: ${why}`).toHaveLength(1);
  return found[0]!;
}

function alertsOf(variant: Variant): AlertLine[] {
  return alertsOfVariant(
    alerts,
    caseRows.find((c) => c.variant === variant)!,
  );
}

describe("the built-in catalog on the SQL warehouse stand-in", () => {
  it("has a case for every built-in detection", () => {
    expect(CASES.map((c) => c.detection).sort()).toEqual(BUILT_IN_DETECTIONS.map((d) => d.name).sort());
  });

  describe.each(CASES)("$detection", (testCase) => {
    const detection = BUILT_IN_DETECTIONS.find((d) => d.name === testCase.detection)!;

    it.each(testCase.fires.map((v) => [v.why, v] as const))("fires once on %s", (_why, variant) => {
      const found = alertsOf(variant);
      expect(found).toHaveLength(1);
      const alert = found[0]!;
      expect(alert.count).toBe(variant.n);
      expect(alert.value > detection.threshold || (detection.operator === ">=" && alert.value === detection.threshold)).toBe(true);
      expect(alert.sample_event_ids.length).toBe(Math.min(10, variant.n));
      expect(alert.sample_event_ids.every((id) => caseRows.find((c) => c.variant === variant)!.eventIds.has(id))).toBe(true);
      expect(alert).toMatchObject({ detection: detection.name, severity: detection.severity, tactic: detection.tactic, technique: detection.technique });
      if (detection.groupBy.includes("email")) {
        expect(alert.email).toBeTruthy();
        expect(alert.user).toBe(alert.email);
      }
      const windowMs = Date.parse(alert.window_end) - Date.parse(alert.window_start);
      expect(windowMs).toBe(detection.windowMinutes * 60_000);
      expect(alert.principals.length + alert.source_ips.length + alert.workspaces.length).toBeGreaterThan(0);
    });

    it.each(testCase.misses.map((v) => [v.why, v] as const))("does not fire on %s", (_why, variant) => {
      expect(alertsOf(variant)).toEqual([]);
    });
  });

  it("strips the port from source IPs and lists the principals involved", () => {
    const alert = alerts.find((a) => a.detection === "ip_access_list_failures")!;
    expect(alert.source_ip).toMatch(/^10\.\d+\.\d+\.7$/);
    expect(alert.source_ips).toEqual([alert.source_ip]);
    expect(alert.principals).toEqual([alert.email]);
    expect(alert.workspace_id).toBe(alert.workspaces[0]);
  });

  describe("alerts say what happened", () => {
    it("name the measured value that passed and the comparison it passed", () => {
      expect(alertOf("destructive_activities", "51 deletes in a day (> 50)")).toMatchObject({
        value: 51,
        measure_name: "num_destructive_activities",
        condition: "> 50",
      });
      expect(alertOf("repeated_access_to_secrets", "10 different secrets (>= 10)")).toMatchObject({
        value: 10,
        measure_name: "num_keys_accessed",
        condition: ">= 10",
      });
      expect(alertOf("clam_av_infected_files_detected", "2 infected files")).toMatchObject({ value: 2, measure_name: "infected_files", condition: "> 0" });
      expect(alertOf("mount_point_creation", "mount")).toMatchObject({ value: 1, measure_name: "total", count: 1 });
    });

    it("list the actions and services involved", () => {
      expect(alertOf("repeated_failed_login_attempts", "2 failed logins with the email in request_params.user")).toMatchObject({
        actions: ["samlLogin"],
        services: ["accounts"],
        context: { status_codes: ["403"] },
      });
      expect(alertOf("destructive_activities", "51 deletes in a day (> 50)")).toMatchObject({ actions: ["deleteCluster"], services: ["clusters"] });
    });

    it("carry the context upstream shows for each entry", () => {
      expect(alertOf("changes_to_admin_users", "added to admins").context).toMatchObject({
        target_user: [expect.stringMatching(/^new-admin\.case\d+@example\.com$/)],
        target_group: ["admins"],
        account_or_workspace: ["workspace"],
      });
      expect(alertOf("changes_to_workspace_configuration", "workspaceConfEdit").context).toEqual({
        workspace_conf_keys: ["enableExportNotebook"],
        workspace_conf_values: ["true"],
      });
      expect(alertOf("account_settings_changes", "account setSetting").context).toEqual({
        setting_name: ["EnableResultsDownloading"],
        setting_value: ['{"enabled":true}'],
      });
      expect(alertOf("mount_point_creation", "mount").context).toEqual({ mount_point: ["/mnt/x"] });
      expect(alertOf("long_lifetime_token_generation", "a 73 h token").context.token_lifetime_hours).toEqual(["73"]);
      expect(alertOf("sentinel_long_lived_tokens", "90 days 20 h: 91 calendar days").context.lifetime_days).toEqual(["91"]);
      expect(alertOf("databricks_access_to_customer_workspaces", "databricksAccess").context).toMatchObject({
        support_user: ["support@databricks.com"],
        reason: ["ES-1234"],
        approver: [expect.stringMatching(/^case\d+@example\.com$/)],
      });
      expect(alertOf("sentinel_ip_access_list_changed", "workspaceConfEdit of enableIpAccessLists").context).toMatchObject({
        workspace_conf_keys: ["enableIpAccessLists"],
        workspace_conf_values: ["false"],
      });
      expect(alertOf("clam_av_infected_files_found", "a FOUND line").context).toEqual({ signatures: ["Eicar-Signature"], file_paths: ["/tmp/x"] });
      expect(alertOf("repeated_access_to_secrets", "10 different secrets (>= 10)").context.secret_keys).toHaveLength(10);
    });

    it("cap a long command's text", () => {
      const commands = alertOf("use_of_print_statements", "print( in a long command").context.commands!;
      expect(commands).toHaveLength(1);
      expect(commands[0]).toHaveLength(CONTEXT_VALUE_CHARS);
      expect(commands[0]!.startsWith("print(1)\nx = 1")).toBe(true);
      expect(alertOf("use_of_print_statements", "print (").context.commands).toEqual(["x = 1\nprint (x)"]);
    });

    it("name the workspace from request_params.workspace_id where upstream does", () => {
      const rows = caseRows.find((c) => c.variant.why === "acceptTos at account level naming its workspace")!;
      expect(rows.rows[0]!.workspace_id).toBe("0");
      expect(alertOf("terms_of_service_changes", "acceptTos at account level naming its workspace").workspaces).toEqual([
        (rows.rows[0]!.request_params as Record<string, string>).workspace_id,
      ]);
    });

    it("group data plane alerts by host (request_params.instanceId)", async () => {
      const detection = BUILT_IN_DETECTIONS.find((d) => d.name === "clam_av_infected_files_detected")!;
      const evaluation = await evaluateDetection(warehouse, detection, { fromUs: NEXT_DAY * 1000, toUs: (NEXT_DAY + 86_400_000) * 1000 }, [], Date.now);
      expect(evaluation.alerts.map((a) => [a.instance_id, a.workspace_id, a.value])).toEqual(
        expect.arrayContaining([
          ["i-0a1", "1234567890123456", 3],
          ["i-0b2", "1234567890123456", 4],
        ]),
      );
      expect(evaluation.alerts).toHaveLength(2);
    });
  });

  it("runs every report that reads the audit log", async () => {
    const nowMs = DAY + 2 * 86_400_000;
    for (const report of REPORTS.filter((r) => r.name !== "most_privileged_users")) {
      const rows = await warehouse.all(reportQuery(report, nowMs, 90));
      expect(Array.isArray(rows), report.name).toBe(true);
    }
    const failed = await warehouse.all(
      reportQuery(
        REPORTS.find((r) => r.name === "failed_login_attempts_last_90_days")!,
        nowMs,
        90,
      ),
    );
    expect(failed.reduce((sum, row) => sum + Number(row.total), 0)).toBeGreaterThanOrEqual(5);
  });
});
