import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { SandboxStack } from "../../sandbox/stack";
import { Warehouse } from "../../shared/databricks";
import type { AlertLine } from "../../shared/detections/alerts";
import { BUILT_IN_DETECTIONS } from "../../shared/detections/catalog";
import { evaluateDetection } from "../../shared/detections/evaluate";
import { REPORTS, reportQuery } from "../../shared/detections/reports";
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

beforeAll(async () => {
  stack = await startStack();
  await stack.warehouse.appendRows(caseRows.flatMap((c) => c.rows));
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
