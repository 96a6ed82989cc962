import { readFileSync } from "node:fs";
import { join, relative } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import {
  descendants,
  literal,
  moduleProblems,
  objectProperties,
  parseBicepText,
  readTemplate,
  stringLiteral,
  syntaxProblems,
  valueAt,
  type BicepFile,
  type Problem,
} from "./support/bicep";

// infra/ checked here, where no Bicep compiler can be installed: every file parses with a real
// grammar, modules are wired to parameters and outputs that exist, role assignments name built-in
// roles by named constants, and the security settings the README promises are in the templates.
// Each check is a function over parsed files, and each is also run on a broken fixture to show it
// can fail.

const repo = join(__dirname, "..", "..");
const infra = join(repo, "infra");

/** Built-in role definition IDs (the same in every tenant) and the constant name each must have. */
const BUILT_IN_ROLES: Record<string, string> = {
  "b7e6dc6d-f1e8-4753-8033-0f276bb0955b": "storageBlobDataOwnerRoleId",
  "ba92f5b4-2d11-453d-a403-e96b0029c9fe": "storageBlobDataContributorRoleId",
  "974c5e8b-45b9-4653-ba55-5f855dd0fb88": "storageQueueDataContributorRoleId",
  "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3": "storageTableDataContributorRoleId",
  "3913510d-42f4-4e42-8a64-420c390055eb": "monitoringMetricsPublisherRoleId",
  "4633458b-17de-408a-b874-0445c86b69e6": "keyVaultSecretsUserRoleId",
};

function roleProblems(files: Iterable<BicepFile>, root: string): Problem[] {
  const problems: Problem[] = [];
  for (const file of files) {
    const where = relative(root, file.path);
    for (const resource of file.resources) {
      if (resource.type !== "Microsoft.Authorization/roleAssignments" || resource.existing) continue;
      const properties = valueAt(resource.body, "properties");
      const definition = valueAt(resource.body, "properties.roleDefinitionId");
      const args = definition?.type === "call_expression" ? definition.childForFieldName("arguments")?.namedChildren : undefined;
      const constant = args?.[1];
      if (
        definition?.type !== "call_expression" ||
        definition.childForFieldName("function")?.text !== "subscriptionResourceId" ||
        stringLiteral(args?.[0]) !== "Microsoft.Authorization/roleDefinitions" ||
        constant?.type !== "identifier"
      ) {
        problems.push({
          file: where,
          message: `${resource.symbol}: roleDefinitionId is not subscriptionResourceId('Microsoft.Authorization/roleDefinitions', <constant>)`,
        });
      } else {
        const guid = stringLiteral(file.vars.get(constant.text));
        const expectedName = guid === undefined ? undefined : BUILT_IN_ROLES[guid];
        if (expectedName === undefined) problems.push({ file: where, message: `${resource.symbol}: ${constant.text} is not a known built-in role ID` });
        else if (expectedName !== constant.text)
          problems.push({ file: where, message: `${resource.symbol}: ${guid} is ${expectedName}, not ${constant.text}` });
      }
      if (!objectProperties(properties).has("principalType")) problems.push({ file: where, message: `${resource.symbol}: no principalType` });
    }
  }
  return problems;
}

/** [resource type, property path, required literal value] for every resource of that type. */
const SECURITY_SETTINGS: [string, string, string | boolean][] = [
  ["Microsoft.Storage/storageAccounts", "properties.allowSharedKeyAccess", false],
  ["Microsoft.Storage/storageAccounts", "properties.minimumTlsVersion", "TLS1_2"],
  ["Microsoft.Storage/storageAccounts", "properties.allowBlobPublicAccess", false],
  ["Microsoft.Storage/storageAccounts", "properties.supportsHttpsTrafficOnly", true],
  ["Microsoft.Storage/storageAccounts", "properties.defaultToOAuthAuthentication", true],
  ["Microsoft.Storage/storageAccounts/blobServices/containers", "properties.publicAccess", "None"],
  ["Microsoft.OperationalInsights/workspaces", "properties.features.disableLocalAuth", true],
  ["Microsoft.Insights/components", "properties.DisableLocalAuth", true],
  ["Microsoft.Web/sites", "properties.httpsOnly", true],
  ["Microsoft.Web/sites", "properties.siteConfig.minTlsVersion", "1.2"],
  ["Microsoft.Web/sites", "properties.siteConfig.ftpsState", "Disabled"],
];

function securityProblems(files: Iterable<BicepFile>, root: string): Problem[] {
  const problems: Problem[] = [];
  for (const file of files) {
    const where = relative(root, file.path);
    for (const resource of file.resources) {
      if (resource.existing) continue;
      for (const [type, path, wanted] of SECURITY_SETTINGS) {
        if (resource.type !== type) continue;
        const actual = literal(valueAt(resource.body, path));
        if (actual !== wanted) problems.push({ file: where, message: `${resource.symbol}: ${path} is ${String(actual)}, not ${String(wanted)}` });
      }
      if (resource.type === "Microsoft.Web/sites") {
        const policies = file.resources.filter((r) => r.type === "Microsoft.Web/sites/basicPublishingCredentialsPolicies");
        for (const kind of ["ftp", "scm"]) {
          const policy = policies.find((p) => stringLiteral(valueAt(p.body, "name")) === kind);
          if (!policy || literal(valueAt(policy.body, "properties.allow")) !== false) {
            problems.push({ file: where, message: `${resource.symbol}: ${kind} basic publishing credentials are not turned off` });
          }
        }
      }
    }
    // No key is ever read: listKeys and friends would put a secret into a deployment.
    for (const node of descendants(file.tree.rootNode)) {
      const called = node.type === "call_expression" ? (node.childForFieldName("function")?.text ?? "") : "";
      if (/(^|\.)list[A-Za-z]*$/.test(called)) {
        problems.push({ file: where, message: `line ${node.startPosition.row + 1}: ${called}() reads a secret` });
      }
    }
  }
  return problems;
}

describe("infra/ Bicep", () => {
  let files: Map<string, BicepFile>;
  const file = (path: string): BicepFile => files.get(join(infra, path))!;

  beforeAll(async () => {
    files = await readTemplate(infra);
  });

  it("parses every file with the Bicep grammar: no ERROR or MISSING node", () => {
    expect(files.size).toBeGreaterThanOrEqual(10);
    const problems = [...files.values()].flatMap((f) =>
      syntaxProblems(f.tree).map((p) => `${relative(infra, f.path)}:${p.line}:${p.column} ${p.kind} ${p.text}`),
    );
    expect(problems).toEqual([]);
  });

  it("reports a syntax error in a broken file", async () => {
    const broken = await parseBicepText("param name string =\nresource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {\n  name: \n");
    expect(syntaxProblems(broken.tree).length).toBeGreaterThan(0);
    const missingBrace = await parseBicepText("var settings = {\n  a: 'b'\n");
    expect(syntaxProblems(missingBrace.tree).length).toBeGreaterThan(0);
  });

  it("wires every module: its parameters exist, the required ones are passed, the outputs read exist", () => {
    expect(moduleProblems(files, infra)).toEqual([]);
    expect(file("main.bicep").modules.length).toBeGreaterThanOrEqual(10);
  });

  it("reports a module given an unknown parameter, one missing a required parameter, and a missing output", async () => {
    const main = await parseBicepText(
      [
        "module identity 'app/identity.bicep' = {",
        "  name: 'identity'",
        "  params: {",
        "    name: 'id-x'",
        "    locaton: 'westeurope'",
        "  }",
        "}",
        "output x string = identity.outputs.clientSecret",
      ].join("\n"),
      join(infra, "main.bicep"),
    );
    const fixture = new Map(files);
    fixture.set(main.path, main);
    const messages = moduleProblems(fixture, infra).map((p) => p.message);
    expect(messages).toEqual(
      expect.arrayContaining([
        "module identity passes locaton, which app/identity.bicep does not declare",
        "module identity does not pass location, which app/identity.bicep requires",
        expect.stringContaining("identity.outputs.clientSecret is not an output of app/identity.bicep"),
      ]),
    );
  });

  it("assigns built-in roles through named constants, each with a principalType", () => {
    expect(roleProblems(files.values(), infra)).toEqual([]);
    const assignments = [...files.values()].flatMap((f) => f.resources.filter((r) => r.type === "Microsoft.Authorization/roleAssignments"));
    expect(assignments.length).toBeGreaterThanOrEqual(6);
  });

  it("reports a misnamed role constant, an unknown role ID and a missing principalType", async () => {
    const fixture = await parseBicepText(
      [
        "var storageBlobDataOwnerRoleId = 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'",
        "var ownerRoleId = '8e3af657-a8ff-443c-a75c-2fe8c4bcb635'",
        "resource a 'Microsoft.Authorization/roleAssignments@2022-04-01' = {",
        "  name: guid('a')",
        "  properties: {",
        "    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataOwnerRoleId)",
        "    principalId: 'p'",
        "    principalType: 'ServicePrincipal'",
        "  }",
        "}",
        "resource b 'Microsoft.Authorization/roleAssignments@2022-04-01' = {",
        "  name: guid('b')",
        "  properties: {",
        "    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', ownerRoleId)",
        "    principalId: 'p'",
        "  }",
        "}",
      ].join("\n"),
      join(infra, "fixture.bicep"),
    );
    expect(roleProblems([fixture], infra).map((p) => p.message)).toEqual([
      "a: ba92f5b4-2d11-453d-a403-e96b0029c9fe is storageBlobDataContributorRoleId, not storageBlobDataOwnerRoleId",
      "b: ownerRoleId is not a known built-in role ID",
      "b: no principalType",
    ]);
  });

  it("keeps keys off and TLS 1.2 on: storage, Log Analytics, Application Insights and the Function App", () => {
    expect(securityProblems(files.values(), infra)).toEqual([]);
    const types = new Set([...files.values()].flatMap((f) => f.resources.filter((r) => !r.existing).map((r) => r.type)));
    for (const [type] of SECURITY_SETTINGS) expect(types).toContain(type);
  });

  it("reports shared keys left on, public blob access and FTP left on", async () => {
    const fixture = await parseBicepText(
      [
        "resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {",
        "  name: 'st'",
        "  properties: {",
        "    allowSharedKeyAccess: true",
        "    minimumTlsVersion: 'TLS1_2'",
        "    allowBlobPublicAccess: true",
        "    supportsHttpsTrafficOnly: true",
        "    defaultToOAuthAuthentication: true",
        "  }",
        "}",
        "resource site 'Microsoft.Web/sites@2024-04-01' = {",
        "  name: 'func'",
        "  properties: {",
        "    httpsOnly: true",
        "    siteConfig: {",
        "      minTlsVersion: '1.2'",
        "      ftpsState: 'AllAllowed'",
        "    }",
        "  }",
        "}",
        "output key string = storage.listKeys().keys[0].value",
      ].join("\n"),
      join(infra, "fixture.bicep"),
    );
    expect(securityProblems([fixture], infra).map((p) => p.message)).toEqual([
      "storage: properties.allowSharedKeyAccess is true, not false",
      "storage: properties.allowBlobPublicAccess is true, not false",
      "site: properties.siteConfig.ftpsState is AllAllowed, not Disabled",
      "site: ftp basic publishing credentials are not turned off",
      "site: scm basic publishing credentials are not turned off",
      "line 21: storage.listKeys() reads a secret",
    ]);
  });

  it("gives the Functions host its blob endpoint only, through the identity", () => {
    const settings = valueAt(file("app/api.bicep").resources.find((r) => r.type === "Microsoft.Web/sites/config")?.body, "properties");
    expect(settings?.type).toBe("call_expression");
    const keys = [...descendants(settings!)].filter((n) => n.type === "object_property").map((n) => n.namedChildren[0]!.text);
    expect(keys).toEqual(expect.arrayContaining(["AzureWebJobsStorage__blobServiceUri", "AzureWebJobsStorage__credential", "AzureWebJobsStorage__clientId"]));
    expect(keys).not.toContain("AzureWebJobsStorage");
    expect(keys).not.toContain("AzureWebJobsStorage__accountName");
  });

  it("builds both tables, their stream declarations and data flows from infra/tables.json", () => {
    const logs = file("app/logs-ingestion.bicep");
    const loads = [...descendants(logs.tree.rootNode)].filter(
      (n) => n.type === "call_expression" && n.childForFieldName("function")?.text === "loadJsonContent",
    );
    expect(loads.map((n) => stringLiteral(n.childForFieldName("arguments")?.namedChildren[0]))).toEqual(["../tables.json"]);
    const tables = logs.resources.find((r) => r.type === "Microsoft.OperationalInsights/workspaces/tables");
    expect(tables?.body.parent?.type).toBe("for_statement");
    const rule = logs.resources.find((r) => r.type === "Microsoft.Insights/dataCollectionRules");
    for (const path of ["properties.streamDeclarations", "properties.dataFlows"]) {
      expect(valueAt(rule?.body, path)?.text).toContain("items(tableDefinitions)");
    }
    // No column list of its own anywhere in the template: the JSON is the only one.
    for (const f of files.values()) {
      const columnNames = [...descendants(f.tree.rootNode)].filter((n) => n.type === "string" && stringLiteral(n) === "TimeGenerated");
      expect(columnNames, relative(infra, f.path)).toEqual([]);
    }
    expect([...logs.outputs]).toEqual(expect.arrayContaining(["streamName", "alertsStreamName", "alertsTableName"]));
  });

  it("sets the app settings of the alerts stream and the detections' schedule", () => {
    const main = file("main.bicep");
    const required = objectProperties(main.vars.get("requiredAppSettings"));
    expect(required.get("LOGS_INGESTION_ALERTS_STREAM")?.text).toBe("logsIngestion.outputs.alertsStreamName");
    const optional = objectProperties(main.vars.get("optionalAppSettings"));
    expect(optional.get("DETECTIONS_SCHEDULE")?.text).toBe("detectionsSchedule");
    expect(stringLiteral(main.params.get("detectionsSchedule")?.defaultValue)).toBe("0 15 * * * *");
  });

  it("runs Node 22 on Flex Consumption, in a region that offers it", () => {
    const main = file("main.bicep");
    expect(stringLiteral(main.params.get("nodeVersion")?.defaultValue)).toBe("22");
    expect(stringLiteral(file("app/api.bicep").params.get("nodeVersion")?.defaultValue)).toBe("22");
    const regions = main.params
      .get("location")
      ?.decorators.get("allowed")?.[0]
      ?.namedChildren.map((n) => stringLiteral(n));
    expect(regions).toEqual(expect.arrayContaining(["westeurope", "eastus", "swedencentral"]));
    expect(regions!.length).toBeGreaterThan(20);
  });

  it("closes both storage accounts' public endpoints and integrates the app when the private network is on", () => {
    for (const path of ["app/function-storage.bicep", "app/export-storage.bicep"]) {
      const account = file(path).resources.find((r) => r.type === "Microsoft.Storage/storageAccounts")!;
      const access = valueAt(account.body, "properties.publicNetworkAccess");
      expect(access?.type, path).toBe("ternary_expression");
      expect(access?.childForFieldName("condition")?.text, path).toBe("vnetEnabled");
      expect(literal(access?.childForFieldName("consequence")), path).toBe("Disabled");
      expect(literal(valueAt(account.body, "properties.networkAcls.defaultAction")?.childForFieldName("consequence")), path).toBe("Deny");
    }
    const main = file("main.bicep");
    const modules = new Map(main.modules.map((m) => [m.symbol, m]));
    for (const name of ["network", "functionStoragePrivateEndpoint", "exportStoragePrivateEndpoint"]) {
      expect(
        modules.get(name)?.node.namedChildren.some((n) => n?.type === "if_statement" && n.namedChildren[0]?.text === "(vnetEnabled)"),
        name,
      ).toBe(true);
    }
    for (const name of ["functionStorage", "exportStorage"]) expect(modules.get(name)?.params.get("vnetEnabled")?.text).toBe("vnetEnabled");
    expect(modules.get("api")?.params.get("virtualNetworkSubnetId")?.text).toBe("vnetEnabled ? network!.outputs.appSubnetId : ''");
    const groups = file("app/storage-private-endpoint.bicep").resources.find((r) => r.type === "Microsoft.Network/privateEndpoints");
    expect(valueAt(groups?.body, "properties.privateLinkServiceConnections")?.text).toContain("'blob'");
  });

  it("stops a deployment whose total retention is shorter than its interactive retention", () => {
    const logs = file("app/logs-ingestion.bicep");
    const retention = objectProperties(logs.vars.get("retentionByTable"));
    expect(retention.size).toBe(2);
    for (const [table, value] of retention) {
      const total = valueAt(value, "total");
      expect(total?.type, table).toBe("ternary_expression");
      expect(total?.childForFieldName("alternative")?.childForFieldName("function")?.text, table).toBe("fail");
    }
  });

  it("maps main.parameters.json to parameters that exist, with defaults they accept, and passes every required one", () => {
    const main = file("main.bicep");
    const parameters = (JSON.parse(readFileSync(join(infra, "main.parameters.json"), "utf8")) as { parameters: Record<string, { value: unknown }> }).parameters;
    const problems: string[] = [];
    for (const [name, { value }] of Object.entries(parameters)) {
      const param = main.params.get(name);
      if (!param) {
        problems.push(`${name} is not a parameter of main.bicep`);
        continue;
      }
      const match = typeof value === "string" ? /^\$\{([A-Z0-9_]+)(?:=(.*))?\}$/.exec(value) : null;
      if (!match) {
        problems.push(`${name}: ${JSON.stringify(value)} is not \${ENV_NAME} or \${ENV_NAME=default}`);
        continue;
      }
      const fallback = match[2];
      if (fallback === undefined) continue;
      const allowed = param.decorators.get("allowed")?.[0]?.namedChildren.map((n) => String(literal(n)));
      if (allowed && !allowed.includes(fallback)) problems.push(`${name}: default ${fallback} is not one of ${allowed.join(", ")}`);
      if (param.type === "int") {
        const number = Number(fallback);
        const min = literal(param.decorators.get("minValue")?.[0]);
        const max = literal(param.decorators.get("maxValue")?.[0]);
        if (!Number.isInteger(number)) problems.push(`${name}: default ${fallback} is not an int`);
        if (typeof min === "number" && number < min) problems.push(`${name}: default ${fallback} is below ${min}`);
        if (typeof max === "number" && number > max) problems.push(`${name}: default ${fallback} is above ${max}`);
        const declared = literal(param.defaultValue);
        if (typeof declared === "number" && declared !== number) problems.push(`${name}: default ${fallback} differs from main.bicep's ${declared}`);
      }
      if (param.type === "bool" && !["true", "false"].includes(fallback)) problems.push(`${name}: default ${fallback} is not a bool`);
    }
    for (const param of main.params.values()) {
      if (!param.defaultValue && !(param.name in parameters)) problems.push(`${param.name} is required by main.bicep but not mapped`);
    }
    expect(problems).toEqual([]);
    for (const name of [
      "instanceMemoryMB",
      "maximumInstanceCount",
      "auditTableRetentionInDays",
      "alertsTableTotalRetentionInDays",
      "vnetEnabled",
      "principalType",
    ]) {
      expect(parameters, name).toHaveProperty(name);
    }
  });

  it("names resources only with prefixes abbreviations.json defines", () => {
    const abbreviations = JSON.parse(readFileSync(join(infra, "abbreviations.json"), "utf8")) as Record<string, string>;
    const used = [...descendants(file("main.bicep").tree.rootNode)]
      .filter((n) => n.type === "member_expression" && n.childForFieldName("object")?.text === "abbrs")
      .map((n) => n.childForFieldName("property")!.text);
    expect(used.length).toBeGreaterThan(5);
    expect(used.filter((name) => !(name in abbreviations))).toEqual([]);
  });
});
