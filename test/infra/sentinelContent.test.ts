import { readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import type { Node } from "web-tree-sitter";
import { declarationBody, literal, parseBicepText, readTemplate, stringLiteral, valueAt, type BicepFile, type ResourceDecl } from "./support/bicep";

// infra/app/sentinel-content.bicep as a first `azd up` with DEPLOY_SENTINEL_CONTENT=true meets it:
// Sentinel is onboarded on the workspace before any rule (the alertRules API refuses a workspace
// without it), the rules come after both tables exist (they query them), and the workbook resource
// carries the version Azure Monitor workbooks expect. Each check also runs on a broken copy.

const repo = join(__dirname, "..", "..");
const infra = join(repo, "infra");
const modulePath = join(infra, "app", "sentinel-content.bicep");
const moduleText = readFileSync(modulePath, "utf8");

const ONBOARDING = "Microsoft.SecurityInsights/onboardingStates";
const ALERT_RULES = "Microsoft.SecurityInsights/alertRules";
const TABLES = "Microsoft.OperationalInsights/workspaces/tables";

/** The symbols a declaration's `dependsOn` lists. */
function dependsOn(body: Node | undefined): string[] {
  const list = valueAt(body, "dependsOn");
  return list ? list.namedChildren.filter((child) => child?.type === "identifier").map((child) => child.text) : [];
}

function resourceOfType(file: BicepFile, type: string): ResourceDecl | undefined {
  return file.resources.find((resource) => resource.type === type && !resource.existing);
}

/** What keeps the rules from failing on a first deployment; empty when nothing does. */
function onboardingProblems(file: BicepFile, text: string): string[] {
  const problems: string[] = [];
  const onboarding = resourceOfType(file, ONBOARDING);
  const rules = resourceOfType(file, ALERT_RULES);
  if (!onboarding) return [`no ${ONBOARDING}: the alertRules API refuses a workspace where Sentinel is not onboarded`];
  if (stringLiteral(valueAt(onboarding.body, "name")) !== "default") problems.push(`${ONBOARDING} must be named 'default'`);
  const workspace = file.resources.find((resource) => resource.type === "Microsoft.OperationalInsights/workspaces");
  if (valueAt(onboarding.body, "scope")?.text !== workspace?.symbol) problems.push(`${ONBOARDING} must be scoped to the workspace (${workspace?.symbol})`);
  const version = new RegExp(`resource ${onboarding.symbol} '${ONBOARDING}@([^']+)'`).exec(text)?.[1];
  // 2024-03-01: the first stable version, and the one the rules use (Azure/bicep-types-az, generated/securityinsights).
  if (version !== "2024-03-01") problems.push(`${ONBOARDING}@${version}: use 2024-03-01, the rules' API version`);
  if (!rules || !dependsOn(rules.body).includes(onboarding.symbol)) problems.push(`${ALERT_RULES} must depend on ${onboarding.symbol}`);
  return problems;
}

/** The workbook resource's properties.version: 'Notebook/1.0', what Azure Monitor workbooks carry. */
function workbookVersionProblems(file: BicepFile): string[] {
  const workbook = resourceOfType(file, "Microsoft.Insights/workbooks");
  if (!workbook) return ["no Microsoft.Insights/workbooks resource"];
  const version = literal(valueAt(workbook.body, "properties.version"));
  return version === "Notebook/1.0" ? [] : [`workbook properties.version is ${JSON.stringify(version)}, not 'Notebook/1.0'`];
}

describe("infra/app/sentinel-content.bicep", () => {
  let files: Map<string, BicepFile>;
  let module: BicepFile;
  let main: BicepFile;

  beforeAll(async () => {
    files = await readTemplate(infra);
    module = files.get(modulePath)!;
    main = files.get(join(infra, "main.bicep"))!;
  });

  it("onboards Sentinel on the workspace, as 'default', before any rule", () => {
    expect(onboardingProblems(module, moduleText)).toEqual([]);
  });

  it.each([
    ["no onboarding at all", (text: string) => text.replace(/resource sentinelOnboarding [\s\S]*?\n}\n/, ""), "refuses a workspace"],
    ["another name", (text: string) => text.replace("name: 'default'", "name: 'sentinel'"), "named 'default'"],
    ["no scope", (text: string) => text.replace(/(sentinelOnboarding[^\n]*\n)\s*scope: workspace\n/, "$1"), "scoped to the workspace"],
    ["an old preview API", (text: string) => text.replace(`${ONBOARDING}@2024-03-01`, `${ONBOARDING}@2022-12-01-preview`), "use 2024-03-01"],
    ["rules that do not wait for it", (text: string) => text.replace(/dependsOn: \[\s*sentinelOnboarding\s*\]/, ""), "must depend on"],
  ])("reports a module with %s", async (_name, breakText, expected) => {
    const broken = breakText(moduleText);
    expect(broken).not.toBe(moduleText);
    const file = await parseBicepText(broken, modulePath);
    expect(onboardingProblems(file, broken).join("\n")).toContain(expected);
  });

  it("is the only place that onboards Sentinel, and main.bicep deploys it only with DEPLOY_SENTINEL_CONTENT", () => {
    const onboarding = [...files.values()].filter((file) => resourceOfType(file, ONBOARDING)).map((file) => file.path);
    expect(onboarding).toEqual([modulePath]);
    const sentinel = main.modules.filter((decl) => resolve(infra, decl.path) === modulePath);
    expect(sentinel).toHaveLength(1);
    const condition = sentinel[0]!.node.namedChildren.find((child) => child?.type === "if_statement")?.namedChildren[0];
    expect(condition?.text).toBe("(deploySentinelContent)");
    const parameters = JSON.parse(readFileSync(join(infra, "main.parameters.json"), "utf8")) as { parameters: Record<string, { value: unknown }> };
    expect(parameters.parameters.deploySentinelContent?.value).toBe("${DEPLOY_SENTINEL_CONTENT=false}");
  });

  it("runs the rules after both tables exist: main.bicep orders the module after the one that creates them", () => {
    const sentinel = main.modules.find((decl) => resolve(infra, decl.path) === modulePath)!;
    const after = dependsOn(declarationBody(sentinel.node)).map((symbol) => main.modules.find((decl) => decl.symbol === symbol));
    const creators = after.filter((decl) => {
      const target = decl && files.get(resolve(dirname(main.path), decl.path));
      return target !== undefined && resourceOfType(target, TABLES) !== undefined;
    });
    expect(creators.map((decl) => decl!.symbol)).toEqual(["logsIngestion"]);
    // That module creates both tables the rules read, from infra/tables.json.
    expect(readFileSync(join(infra, "app", "logs-ingestion.bicep"), "utf8")).toContain("loadJsonContent('../tables.json')");
    const tables = JSON.parse(readFileSync(join(infra, "tables.json"), "utf8")) as { tables: Record<string, unknown> };
    expect(Object.keys(tables.tables).sort()).toEqual(["DatabricksAuditAlerts_CL", "DatabricksAudit_CL"]);
  });

  it("gives the workbook resource the version 'Notebook/1.0', as the workbook itself", async () => {
    expect(workbookVersionProblems(module)).toEqual([]);
    const workbook = JSON.parse(readFileSync(join(repo, "sentinel", "workbooks", "DatabricksAudit.json"), "utf8")) as { version: string };
    expect(workbook.version).toBe("Notebook/1.0");
    const broken = await parseBicepText(moduleText.replace("version: 'Notebook/1.0'", "version: '1.0'"), modulePath);
    expect(workbookVersionProblems(broken).join()).toContain(`"1.0"`);
  });
});
