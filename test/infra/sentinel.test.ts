import { execFileSync, spawnSync } from "node:child_process";
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse } from "yaml";
import { descendants, evaluate, readTemplate, stringLiteral, valueAt, type BicepValue } from "./support/bicep";
import { analyse, globalsFor, readTables, type KustoGlobals } from "./support/kusto";
import { BUILT_IN_DETECTIONS } from "../../shared/detections/catalog";
import { armRuleProblems, ATTACK_TACTICS, tacticsOf, templateProblems, VALIDATION_SOURCE, type ArmRuleProperties } from "./support/sentinelValidation";

// The Sentinel content of sentinel/: analytic rules in the Azure-Sentinel repository's schema and a
// workbook. Every KQL query is parsed and analysed against the two tables' schemas from
// infra/tables.json; the rules' entity mappings and custom details must name columns the query returns.

const repo = join(__dirname, "..", "..");
const rulesDir = join(repo, "sentinel", "analytic-rules");
const workbookPath = join(repo, "sentinel", "workbooks", "DatabricksAudit.json");
const generator = join(repo, "scripts", "sentinel-content.mjs");

interface FieldMapping {
  identifier: string;
  columnName: string;
}
interface Rule {
  id: string;
  name: string;
  description: string;
  severity: string;
  requiredDataConnectors: unknown[];
  queryFrequency: string;
  queryPeriod: string;
  triggerOperator: string;
  triggerThreshold: number;
  tactics: string[];
  relevantTechniques: string[];
  query: string;
  entityMappings: { entityType: string; fieldMappings: FieldMapping[] }[];
  customDetails?: Record<string, string>;
  alertDetailsOverride?: {
    alertSeverityColumnName?: string;
    alertTacticsColumnName?: string;
    alertDynamicProperties?: { alertProperty: string; value: string }[];
  };
  eventGroupingSettings: { aggregationKind: string };
  incidentConfiguration: {
    createIncident: boolean;
    groupingConfiguration: { enabled: boolean; reopenClosedIncident: boolean; matchingMethod: string; groupByCustomDetails: string[] };
  };
  version: string;
  kind: string;
}

/** The Sentinel solution for Databricks' four rules, as this project runs them on its own table. */
const SOLUTION_RULES = [
  "Databricks - Account admin privilege granted",
  "Databricks - IP access list changed",
  "Databricks - Repeated failed logins from one IP address",
  "Databricks - Token created with a lifetime over 90 days or none",
];

const rules: { file: string; rule: Rule }[] = readdirSync(rulesDir)
  .filter((name) => name.endsWith(".yaml"))
  .sort()
  .map((file) => ({ file, rule: parse(readFileSync(join(rulesDir, file), "utf8")) as Rule }));

/** Workbook parameters replaced the way the workbook would before it runs a query. */
function withWorkbookParameters(query: string): string {
  return query
    .replaceAll("{TimeRange:grain}", "1h")
    .replaceAll("{TimeRange:start}", "ago(1d)")
    .replaceAll("{TimeRange:end}", "now()")
    .replaceAll("{TimeRange}", "between (ago(1d) .. now())");
}

describe("Sentinel content", () => {
  let globals: KustoGlobals;

  beforeAll(() => {
    globals = globalsFor(readTables(repo));
  });

  it("finds an unknown column, a misspelt operator and a wrong type in KQL (the check can fail)", () => {
    expect(analyse("DatabricksAudit_CL | where EventTime > ago(1h) | summarize count() by UserEmail", globals).errors).toEqual([]);
    expect(analyse("DatabricksAudit_CL | where ClusterName == 'x'", globals).errors.join()).toContain("ClusterName");
    expect(analyse("DatabricksAudit_CL | summarise count() by UserEmail", globals).errors.length).toBeGreaterThan(0);
    expect(analyse("DatabricksAuditAlerts_CL | where EventCount > 'ten'", globals).errors.length).toBeGreaterThan(0);
    expect(analyse("DatabricksAudit_CL | where AlertId != ''", globals).errors.join()).toContain("AlertId");
  });

  describe.each(rules)("analytic rule $file", ({ rule }) => {
    it("follows the Azure-Sentinel schema", () => {
      expect(rule.id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
      expect(rule.kind).toBe("Scheduled");
      expect(rule.version).toMatch(/^\d+\.\d+\.\d+$/);
      expect(["Informational", "Low", "Medium", "High"]).toContain(rule.severity);
      expect(rule.name).toMatch(/^Databricks - /);
      expect(rule.description.length).toBeGreaterThan(50);
      expect(rule.queryFrequency).toMatch(/^\d+[mhd]$/);
      expect(rule.queryPeriod).toMatch(/^\d+[mhd]$/);
      expect(["gt", "lt", "eq", "ne"]).toContain(rule.triggerOperator);
      expect(typeof rule.triggerThreshold).toBe("number");
      expect(rule.tactics.length).toBeGreaterThan(0);
      for (const tactic of rule.tactics) expect(ATTACK_TACTICS).toContain(tactic);
      for (const technique of rule.relevantTechniques) expect(technique).toMatch(/^T\d{4}$/);
      expect(rule.incidentConfiguration.createIncident).toBe(true);
    });

    it(`passes the checks of ${VALIDATION_SOURCE}`, () => {
      expect(templateProblems(rule)).toEqual([]);
    });

    it("is a query Log Analytics accepts on the tables of infra/tables.json", () => {
      expect(analyse(rule.query, globals).errors).toEqual([]);
    });

    it("maps the account, the IP address and the workspace to columns the query returns", () => {
      const { columns } = analyse(rule.query, globals);
      expect(rule.entityMappings.map((mapping) => mapping.entityType)).toEqual(["Account", "IP", "CloudApplication"]);
      const mapped = rule.entityMappings.flatMap((mapping) => mapping.fieldMappings.map((field) => field.columnName));
      const named = [
        ...mapped,
        ...Object.values(rule.customDetails ?? {}),
        ...[rule.alertDetailsOverride?.alertSeverityColumnName, rule.alertDetailsOverride?.alertTacticsColumnName].filter((c) => c !== undefined),
        ...(rule.alertDetailsOverride?.alertDynamicProperties ?? []).map((dynamic) => dynamic.value),
      ];
      expect(named.filter((column) => !columns.has(column))).toEqual([]);
      expect(rule.entityMappings.find((m) => m.entityType === "CloudApplication")?.fieldMappings).toContainEqual({
        identifier: "InstanceName",
        columnName: "WorkspaceId",
      });
      for (const field of rule.incidentConfiguration.groupingConfiguration.groupByCustomDetails) {
        expect(Object.keys(rule.customDetails ?? {})).toContain(field);
      }
    });
  });

  it("turns each DatabricksAuditAlerts_CL row into one incident per AlertId, however often it is sent", () => {
    const alerts = rules.filter(({ rule }) => rule.query.includes("DatabricksAuditAlerts_CL"));
    expect(alerts).toHaveLength(1);
    const { rule } = alerts[0]!;
    // The query keeps each AlertId once, at its first arrival ...
    expect(rule.query).toMatch(/summarize arg_min\(Ingested, \*\) by AlertId\s*\n\s*\| where Ingested > ago\(1h\)/);
    expect(rule.queryFrequency).toBe("1h");
    // ... one alert per row, and alerts of the same AlertId join one incident, never reopened.
    expect(rule.eventGroupingSettings.aggregationKind).toBe("AlertPerResult");
    expect(rule.customDetails?.AlertId).toBe("AlertId");
    expect(rule.incidentConfiguration.groupingConfiguration).toMatchObject({
      enabled: true,
      reopenClosedIncident: false,
      matchingMethod: "Selected",
      groupByCustomDetails: ["AlertId"],
    });
    expect(rule.alertDetailsOverride).toMatchObject({ alertSeverityColumnName: "Severity", alertTacticsColumnName: "Tactic" });
    expect(analyse(rule.query, globals).columns.get("Severity")).toBe("string");
  });

  it("gives each alert the tactic and technique of its row, and lists every one the detection catalog emits", () => {
    const { rule } = rules.find(({ rule }) => rule.query.includes("DatabricksAuditAlerts_CL"))!;
    const parent = (technique: string): string => technique.slice(0, 5);
    // The rule's own lists, Sentinel's defaults for a row without a usable value: the catalog's, no more.
    expect([...rule.tactics].sort()).toEqual([...new Set(BUILT_IN_DETECTIONS.map((d) => d.tactic))].sort());
    expect([...rule.relevantTechniques].sort()).toEqual([...new Set(BUILT_IN_DETECTIONS.map((d) => parent(d.technique)))].sort());
    // Per alert: the tactic from the Tactic column, the technique from AlertTechniques, made from Technique.
    expect(rule.alertDetailsOverride?.alertTacticsColumnName).toBe("Tactic");
    expect(rule.alertDetailsOverride?.alertDynamicProperties).toEqual([{ alertProperty: "Techniques", value: "AlertTechniques" }]);
    expect(analyse(rule.query, globals).columns.get("AlertTechniques")).toBe("string");
    const mapping = /\| extend AlertTechniques = iff\(Technique matches regex @"([^"]+)", tostring\(pack_array\(substring\(Technique, 0, 5\)\)\), ""\)/.exec(
      rule.query,
    );
    expect(mapping, "AlertTechniques made from the row's Technique").not.toBeNull();
    const accepted = new RegExp(mapping![1]!);
    for (const detection of BUILT_IN_DETECTIONS) {
      // What the query gives this detection's alerts: Sentinel shows these, not the rule's whole list.
      expect(accepted.test(detection.technique), detection.name).toBe(true);
      expect(rule.relevantTechniques, detection.name).toContain(parent(detection.technique));
      expect(rule.tactics, detection.name).toContain(detection.tactic);
      expect(tacticsOf(detection.technique).length, `${detection.name}: ${detection.technique} is a technique Sentinel knows`).toBeGreaterThan(0);
    }
    expect(accepted.test("")).toBe(false);
    expect(accepted.test("T1562.007")).toBe(true);
    expect(rule.customDetails?.Technique).toBe("Technique");
  });

  it("runs the Sentinel Databricks solution's four rules on DatabricksAudit_CL by EventTime", () => {
    const solution = rules.filter(({ rule }) => rule.query.includes("DatabricksAudit_CL"));
    expect(solution.map(({ rule }) => rule.name).sort()).toEqual(SOLUTION_RULES);
    for (const { rule } of solution) {
      // The event's own time: Log Analytics replaces an old TimeGenerated with the receive time,
      // so a backfill would otherwise look like new activity.
      expect(rule.query, rule.name).toMatch(/\| where EventTime > ago\(1d\)/);
      expect(rule.query, rule.name).not.toMatch(/TimeGenerated/);
    }
  });

  it("has stable, distinct rule IDs", () => {
    const ids = rules.map(({ rule }) => rule.id);
    expect(new Set(ids).size).toBe(ids.length);
    expect(rules).toHaveLength(5);
  });

  describe("workbook", () => {
    const workbook = JSON.parse(readFileSync(workbookPath, "utf8")) as {
      version: string;
      items: { type: number; name: string; content: { query?: string; title?: string; parameters?: { name: string }[] } }[];
    };
    const queries = workbook.items.filter((item) => item.type === 3);

    it("is a workbook with a time range and the views it promises", () => {
      expect(workbook.version).toBe("Notebook/1.0");
      expect(workbook.items.find((item) => item.type === 9)?.content.parameters?.map((p) => p.name)).toEqual(["TimeRange"]);
      expect(queries.map((item) => item.name)).toEqual(
        expect.arrayContaining(["events-by-service", "events-by-workspace", "top-principals", "failed-logins-denied", "alerts-by-detection", "lag"]),
      );
      expect(new Set(workbook.items.map((item) => item.name)).size).toBe(workbook.items.length);
    });

    it.each(queries.map((item) => [item.name, item.content.query ?? ""]))("query %s is valid KQL on both tables", (_name, query) => {
      expect(analyse(withWorkbookParameters(query), globals).errors).toEqual([]);
    });
  });

  describe("sentinel/analytic-rules.json, the rules as Bicep deploys them", () => {
    let work: string;

    beforeAll(() => {
      work = mkdtempSync(join(tmpdir(), "dbx-audit-sentinel-"));
    });
    afterAll(() => {
      rmSync(work, { recursive: true, force: true });
    });

    it("is generated from the YAML rules as they are now", () => {
      execFileSync(process.execPath, [generator, "--check"], { cwd: repo, stdio: "pipe" });
      const generated = JSON.parse(readFileSync(join(repo, "sentinel", "analytic-rules.json"), "utf8")) as {
        id: string;
        kind: string;
        properties: { displayName: string; queryFrequency: string; query: string };
      }[];
      expect(generated.map((rule) => rule.id).sort()).toEqual(rules.map(({ rule }) => rule.id).sort());
      for (const rule of generated) {
        expect(rule.kind).toBe("Scheduled");
        expect(rule.properties.queryFrequency).toBe("PT1H");
      }
    });

    it(`passes the service's checks as Bicep deploys each rule (${VALIDATION_SOURCE}, NoTemplateVersionWithoutTemplateName)`, async () => {
      const generated = JSON.parse(readFileSync(join(repo, "sentinel", "analytic-rules.json"), "utf8")) as { properties: BicepValue }[];
      const files = await readTemplate(join(repo, "infra"));
      const module = files.get(join(repo, "infra", "app", "sentinel-content.bicep"))!;
      const alertRules = module.resources.find((resource) => resource.type === "Microsoft.SecurityInsights/alertRules")!;
      const properties = valueAt(alertRules.body, "properties")!;
      for (const rule of generated) {
        for (const enableRules of [true, false]) {
          const deployed = evaluate(properties, module, { rule, enableRules }) as unknown as ArmRuleProperties;
          expect(armRuleProblems(deployed), deployed.displayName).toEqual([]);
          expect(deployed.enabled).toBe(enableRules);
        }
      }
    });

    it("is reported stale when a rule changes and the JSON does not", () => {
      const changed = join(work, "rules");
      cpSync(rulesDir, changed, { recursive: true });
      const file = join(changed, rules[0]!.file);
      writeFileSync(file, readFileSync(file, "utf8").replace("triggerThreshold: 0", "triggerThreshold: 1"));
      const result = spawnSync(process.execPath, [generator, "--check", "--rules", changed], { cwd: repo, encoding: "utf8" });
      expect(result.status).toBe(1);
      expect(result.stderr).toContain("run npm run sentinel");
    });

    it("and the workbook are the files the Bicep module loads", async () => {
      const files = await readTemplate(join(repo, "infra"));
      const loaded: string[] = [];
      for (const file of files.values()) {
        for (const node of descendants(file.tree.rootNode)) {
          const fn = node.type === "call_expression" ? node.childForFieldName("function")?.text : undefined;
          if (fn !== "loadJsonContent" && fn !== "loadTextContent") continue;
          const path = resolve(dirname(file.path), stringLiteral(node.childForFieldName("arguments")?.namedChildren[0]) ?? "");
          expect(existsSync(path), path).toBe(true);
          loaded.push(path);
        }
      }
      expect(loaded).toEqual(expect.arrayContaining([join(repo, "sentinel", "analytic-rules.json"), workbookPath]));
    });
  });
});
