import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Warehouse } from "../../shared/databricks";
import type { AlertLine } from "../../shared/detections/alerts";
import { BUILT_IN_DETECTIONS } from "../../shared/detections/catalog";
import { sourceCombination } from "../../shared/detections/combination";
import { evaluateOverSources } from "../../shared/detections/evaluate";
import type { AuditRow } from "../support/auditRows";
import { alertsOfVariant, buildCaseRows, CASES, type CaseRows } from "./cases";
import { startTwoRegions, type TwoRegions } from "./regions";
import { warehouseSettings } from "../support/exportHarness";

/**
 * The whole built-in catalog over two regions raises what it raises over one: every case's rows
 * split between two warehouse stand-ins (account-level rows in both, as Databricks has them; the
 * others alternately, so thresholds are only reached together; whole groups where a detection
 * keeps its groups within one region) must fire exactly as catalog.test.ts's single warehouse.
 */
let regions: TwoRegions;
const sessions: Warehouse[] = [];
const DAY = Date.parse("2025-10-01T00:00:00Z");
const caseRows = buildCaseRows(DAY);
const alerts: AlertLine[] = [];
const attemptErrors: string[] = [];

/** Whether a detection needs each group's rows in one region: grouped per workspace, or measured within each region. */
function keepsGroupsInOneRegion(detection: string): boolean {
  const combination = sourceCombination(BUILT_IN_DETECTIONS.find((d) => d.name === detection)!);
  return combination === "concatenate" || combination === "per-source";
}

function split(cases: readonly CaseRows[]): [AuditRow[], AuditRow[]] {
  const regionRows: [AuditRow[], AuditRow[]] = [[], []];
  cases.forEach((c, variantIndex) => {
    c.rows.forEach((row, i) => {
      if (row.workspace_id === "0") {
        regionRows[0].push(row);
        regionRows[1].push(row);
      } else {
        regionRows[(keepsGroupsInOneRegion(c.testCase.detection) ? variantIndex : i) % 2]!.push(row);
      }
    });
  });
  return regionRows;
}

beforeAll(async () => {
  regions = await startTwoRegions();
  const { stack } = regions;
  const [first, second] = split(caseRows);
  await stack.warehouses[0]!.appendRows(first);
  await stack.warehouses[1]!.appendRows(second);
  for (const source of stack.contract.databricksSources) {
    sessions.push(await Warehouse.connect(warehouseSettings(source), undefined));
  }
  const named = sessions.map((source, i) => ({ name: `region${i + 1}`, source }));
  for (const detection of BUILT_IN_DETECTIONS) {
    const evaluation = await evaluateOverSources(named, detection, { fromUs: DAY * 1000, toUs: (DAY + 86_400_000) * 1000 }, [], Date.now);
    alerts.push(...evaluation.alerts);
    attemptErrors.push(...evaluation.attempts.flatMap((a) => (a.error ? [`${detection.name} on ${a.source}: ${a.error}`] : [])));
  }
});

afterAll(async () => {
  await Promise.all(sessions.map((s) => s.close()));
  await regions?.close();
});

describe("the built-in catalog over two regions", () => {
  it("runs every detection on both warehouses", () => {
    expect(attemptErrors).toEqual([]);
    expect(CASES.map((c) => c.detection).sort()).toEqual(BUILT_IN_DETECTIONS.map((d) => d.name).sort());
  });

  it.each(caseRows.map((c) => [`${c.testCase.detection}: ${c.variant.why}`, c] as const))("%s", (_name, c) => {
    const found = alertsOfVariant(alerts, c);
    if (!c.fires) {
      expect(found).toEqual([]);
      return;
    }
    expect(found).toHaveLength(1);
    expect(found[0]!.count).toBe(c.variant.n);
    const accountLevelOnly = c.rows.every((r) => r.workspace_id === "0");
    const spread = !accountLevelOnly && !keepsGroupsInOneRegion(c.testCase.detection) && c.rows.filter((r) => r.workspace_id !== "0").length > 1;
    expect(found[0]!.sources).toEqual(spread ? ["region1", "region2"] : [expect.stringMatching(/^region[12]$/)]);
  });
});
