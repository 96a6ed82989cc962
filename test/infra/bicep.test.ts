import { readFileSync } from "node:fs";
import { join, relative } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "../../shared/config";
import {
  BicepFailure,
  declarationBody,
  descendants,
  evaluate,
  literal,
  moduleProblems,
  objectProperties,
  parseBicepText,
  readTemplate,
  stringLiteral,
  syntaxProblems,
  valueAt,
  type BicepFile,
  type BicepValue,
  type Problem,
  type ResourceDecl,
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
  "73c42c96-874c-492b-b04d-ab87d138a893": "logAnalyticsReaderRoleId",
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

/** Two regions' warehouses, the first the one the single-source parameters name. */
const SOURCES = [
  {
    name: "westeurope",
    serverHostname: "adb-1111111111111111.11.azuredatabricks.net",
    httpPath: "/sql/1.0/warehouses/aaaa1111",
    workspaceIds: ["1111111111111111"],
  },
  {
    name: "eastus",
    serverHostname: "adb-2222222222222222.2.azuredatabricks.net",
    httpPath: "/sql/1.0/warehouses/bbbb2222",
    workspaceIds: ["2222222222222222"],
  },
];
const SINGLE_SOURCE = { databricksServerHostname: SOURCES[0]!.serverHostname, databricksHttpPath: SOURCES[0]!.httpPath };

/** app/api.bicep's app settings as the template computes them, for a given list and main.bicep's settings. */
function apiAppSettings(
  api: BicepFile,
  sources: BicepValue[],
  appSettings: Record<string, string> = {},
  parameters: Record<string, BicepValue> = {},
): Record<string, string> {
  const config = api.resources.find((r) => r.type === "Microsoft.Web/sites/config");
  const properties = valueAt(config?.body, "properties");
  if (!properties) throw new Error("app/api.bicep has no appsettings");
  const settings = evaluate(properties, api, {
    ...parameters,
    appSettings,
    databricksSources: sources,
    // What the host's own settings read: the identity and the storage account resource.
    identityClientId: "00000000-0000-0000-0000-000000000001",
    applicationInsightsConnectionString: "InstrumentationKey=x",
    storage: { properties: { primaryEndpoints: { blob: "https://st.blob.core.windows.net/", queue: "https://st.queue.core.windows.net/" } } },
  });
  // App settings are strings: anything else is a template that cannot deploy.
  const notText = Object.entries(settings as Record<string, BicepValue>).filter(([, value]) => typeof value !== "string");
  if (notText.length > 0) throw new Error(`app settings that are not strings: ${notText.map(([key]) => key).join(", ")}`);
  return settings as Record<string, string>;
}

/**
 * DATABRICKS_SOURCES through the template, evaluated rather than read: main.bicep's list parameter (an
 * array, empty by default) reaches app/api.bicep unchanged, which sets the app setting to the list's JSON
 * only when the list has entries; a first entry that is not the single-source warehouse stops the
 * deployment (the app would refuse it on every run).
 */
function databricksSourcesProblems(main: BicepFile, api: BicepFile): string[] {
  const problems: string[] = [];
  for (const [where, file] of [
    ["main.bicep", main],
    ["app/api.bicep", api],
  ] as const) {
    const param = file.params.get("databricksSources");
    if (param?.type !== "array" || param.defaultValue?.type !== "array" || param.defaultValue.namedChildCount !== 0) {
      problems.push(`${where}: databricksSources is not an array parameter that defaults to []`);
    }
  }
  for (const name of ["requiredAppSettings", "optionalAppSettings"]) {
    if (objectProperties(main.vars.get(name)).has("DATABRICKS_SOURCES")) problems.push(`main.bicep: ${name} passes DATABRICKS_SOURCES to the module as text`);
  }

  const passed = main.modules.find((m) => m.symbol === "api")?.params.get("databricksSources");
  if (!passed) {
    problems.push("main.bicep: module api is not given databricksSources");
  } else {
    const passedFor = (sources: BicepValue[], single: Record<string, string> = SINGLE_SOURCE): BicepValue =>
      evaluate(passed, main, { ...single, databricksSources: sources });
    for (const sources of [[], SOURCES]) {
      if (JSON.stringify(passedFor(sources)) !== JSON.stringify(sources)) problems.push(`main.bicep: module api is not given the list of ${sources.length}`);
    }
    for (const [name, other] of [
      ["databricksServerHostname", "adb-3333333333333333.3.azuredatabricks.net"],
      ["databricksHttpPath", "/sql/1.0/warehouses/cccc3333"],
    ] as const) {
      try {
        passedFor(SOURCES, { ...SINGLE_SOURCE, [name]: other });
        problems.push(`main.bicep: a first source other than ${name}'s warehouse does not stop the deployment`);
      } catch (error) {
        if (!(error instanceof BicepFailure)) throw error;
      }
    }
  }

  const none = apiAppSettings(api, [], { FROM_MAIN: "kept" });
  const some = apiAppSettings(api, SOURCES, { FROM_MAIN: "kept" });
  if ("DATABRICKS_SOURCES" in none) problems.push("app/api.bicep: DATABRICKS_SOURCES is set for an empty list");
  if (some.DATABRICKS_SOURCES !== JSON.stringify(SOURCES)) problems.push("app/api.bicep: DATABRICKS_SOURCES is not the list's JSON");
  if (none.FROM_MAIN !== "kept" || some.FROM_MAIN !== "kept") problems.push("app/api.bicep: main.bicep's appSettings are lost");
  return problems;
}

/** What Storage allows of a queue name: 3-63 characters; the host adds this to name the poison queue. */
const QUEUE_NAME_MAX = 63;
const POISON_SUFFIX = "-poison";
const STORAGE_QUEUE_DATA_CONTRIBUTOR = "974c5e8b-45b9-4653-ba55-5f855dd0fb88";

/** A resource's `if (...)` condition, without the parentheses; undefined when it has none. */
function conditionOf(resource: ResourceDecl): string | undefined {
  const parent = resource.body.parent;
  return parent?.type === "if_statement" ? parent.namedChildren[0]?.text.replace(/^\((.*)\)$/s, "$1") : undefined;
}

/**
 * The backfill queue through the template: app/function-storage.bicep creates the queue main.bicep's
 * backfillQueueName names and its '<name>-poison' queue; the name's length limits leave the poison
 * queue's name valid; BACKFILL_QUEUE is the same parameter; app/rbac.bicep grants Storage Queue Data
 * Contributor on that account to the app's identity, and to the operator when there is one.
 */
function backfillQueueProblems(main: BicepFile, storage: BicepFile, rbac: BicepFile): string[] {
  const problems: string[] = [];
  for (const [where, file] of [
    ["main.bicep", main],
    ["app/function-storage.bicep", storage],
  ] as const) {
    const param = file.params.get("backfillQueueName");
    const min = literal(param?.decorators.get("minLength")?.[0]);
    const max = literal(param?.decorators.get("maxLength")?.[0]);
    if (param?.type !== "string") problems.push(`${where}: no string parameter backfillQueueName`);
    else if (min !== 3 || typeof max !== "number" || max + POISON_SUFFIX.length > QUEUE_NAME_MAX)
      problems.push(
        `${where}: backfillQueueName's length limits (${String(min)}-${String(max)}) allow a name Storage refuses, or whose poison queue it refuses`,
      );
    if (param && !stringLiteral(param.decorators.get("description")?.[0])) problems.push(`${where}: backfillQueueName has no description`);
  }
  if (stringLiteral(main.params.get("backfillQueueName")?.defaultValue) !== "dbx-audit-backfill")
    problems.push("main.bicep: backfillQueueName does not default to dbx-audit-backfill");

  const queueServices = storage.resources.filter((r) => r.type === "Microsoft.Storage/storageAccounts/queueServices" && !r.existing);
  if (queueServices.length !== 1 || stringLiteral(valueAt(queueServices[0]!.body, "name")) !== "default")
    problems.push("app/function-storage.bicep: no queueServices 'default' on the account");
  const queues = storage.resources.filter((r) => r.type === "Microsoft.Storage/storageAccounts/queueServices/queues" && !r.existing);
  const named = queues.map((q) => evaluate(valueAt(q.body, "name")!, storage, { backfillQueueName: "slices-x" })).sort();
  if (JSON.stringify(named) !== JSON.stringify(["slices-x", `slices-x${POISON_SUFFIX}`]))
    problems.push(`app/function-storage.bicep: the queues are ${JSON.stringify(named)}, not the parameter's queue and its poison queue`);

  const given = main.modules.find((m) => m.symbol === "functionStorage")?.params.get("backfillQueueName")?.text;
  if (given !== "backfillQueueName") problems.push("main.bicep: module functionStorage is not given backfillQueueName");
  const setting = objectProperties(main.vars.get("requiredAppSettings")).get("BACKFILL_QUEUE");
  if (!setting || evaluate(setting, main, { backfillQueueName: "slices-x" }) !== "slices-x")
    problems.push("main.bicep: BACKFILL_QUEUE is not backfillQueueName");

  if (stringLiteral(rbac.vars.get("storageQueueDataContributorRoleId")) !== STORAGE_QUEUE_DATA_CONTRIBUTOR)
    problems.push(`app/rbac.bicep: storageQueueDataContributorRoleId is not ${STORAGE_QUEUE_DATA_CONTRIBUTOR}`);
  const queueRoles = rbac.resources.filter(
    (r) =>
      r.type === "Microsoft.Authorization/roleAssignments" &&
      !r.existing &&
      valueAt(r.body, "properties.roleDefinitionId")?.text.includes("storageQueueDataContributorRoleId"),
  );
  const grantedTo = (principal: string): ResourceDecl | undefined => queueRoles.find((r) => valueAt(r.body, "properties.principalId")?.text === principal);
  const app = grantedTo("principalId");
  if (!app || valueAt(app.body, "scope")?.text !== "functionStorage" || conditionOf(app) !== undefined)
    problems.push("app/rbac.bicep: the app's identity has no Storage Queue Data Contributor on the function storage account");
  else if (stringLiteral(valueAt(app.body, "properties.principalType")) !== "ServicePrincipal")
    problems.push("app/rbac.bicep: the app's queue role does not name principalType ServicePrincipal");
  const operator = grantedTo("operatorPrincipalId");
  if (!operator || valueAt(operator.body, "scope")?.text !== "functionStorage" || conditionOf(operator) !== "!empty(operatorPrincipalId)")
    problems.push("app/rbac.bicep: the operator has no Storage Queue Data Contributor on the function storage account when there is one");
  if (queueRoles.length !== 2) problems.push(`app/rbac.bicep: ${queueRoles.length} queue role assignments, not the app's and the operator's`);
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

  it("gives the Functions host its blob and queue endpoints only, through the identity: no account name, no connection string", () => {
    const settings = apiAppSettings(file("app/api.bicep"), []);
    const keys = Object.keys(settings);
    expect(keys).toEqual(
      expect.arrayContaining([
        "AzureWebJobsStorage__blobServiceUri",
        "AzureWebJobsStorage__queueServiceUri",
        "AzureWebJobsStorage__credential",
        "AzureWebJobsStorage__clientId",
      ]),
    );
    expect(settings.AzureWebJobsStorage__queueServiceUri).toBe("https://st.queue.core.windows.net/");
    expect(settings.AzureWebJobsStorage__blobServiceUri).toBe("https://st.blob.core.windows.net/");
    expect(settings.AzureWebJobsStorage__credential).toBe("managedidentity");
    // The host storage's setting names that would bring a key or the table probes back.
    for (const name of ["AzureWebJobsStorage", "AzureWebJobsStorage__accountName", "AzureWebJobsStorage__tableServiceUri"]) expect(keys).not.toContain(name);
    expect(Object.values(settings).filter((value) => /AccountKey=|SharedAccessSignature=|DefaultEndpointsProtocol=/i.test(value))).toEqual([]);
  });

  it("creates the backfill queue and its poison queue on the host's storage, names BACKFILL_QUEUE after them, and grants Storage Queue Data Contributor there", () => {
    expect(backfillQueueProblems(file("main.bicep"), file("app/function-storage.bicep"), file("app/rbac.bicep"))).toEqual([]);
    expect(BUILT_IN_ROLES[STORAGE_QUEUE_DATA_CONTRIBUTOR]).toBe("storageQueueDataContributorRoleId");
    const outputs = file("app/function-storage.bicep").outputs;
    for (const output of ["queueEndpoint", "backfillQueueName", "backfillPoisonQueueName"]) expect(outputs, output).toContain(output);
    // The admin shell's CLI finds the queue under the names it reads.
    const main = file("main.bicep");
    expect(main.outputs).toContain("BACKFILL_QUEUE");
    expect(main.outputs).toContain("AzureWebJobsStorage__queueServiceUri");
    expect(main.tree.rootNode.text).toMatch(/output AzureWebJobsStorage__queueServiceUri string = functionStorage\.outputs\.queueEndpoint/);
  });

  it("reports a missing poison queue, a queue name the poison suffix would push past 63, the role on another account, and no operator role", async () => {
    const broken = async (path: string, from: string, to: string): Promise<BicepFile> => {
      const text = readFileSync(join(infra, path), "utf8");
      expect(text, path).toContain(from);
      const fixture = await parseBicepText(text.replace(from, to), join(infra, path));
      expect(syntaxProblems(fixture.tree), `${path}: ${to}`).toEqual([]);
      return fixture;
    };
    const problemsWith = (changed: BicepFile): string[] => {
      const pick = (path: string): BicepFile => (changed.path === join(infra, path) ? changed : file(path));
      return backfillQueueProblems(pick("main.bicep"), pick("app/function-storage.bicep"), pick("app/rbac.bicep"));
    };
    const cases: [string, string, string, string[]][] = [
      [
        "app/function-storage.bicep",
        "      name: backfillPoisonQueueName\n",
        "      name: backfillQueueName\n",
        ['app/function-storage.bicep: the queues are ["slices-x","slices-x"], not the parameter\'s queue and its poison queue'],
      ],
      [
        "main.bicep",
        "@maxLength(56)\n",
        "@maxLength(63)\n",
        ["main.bicep: backfillQueueName's length limits (3-63) allow a name Storage refuses, or whose poison queue it refuses"],
      ],
      [
        "main.bicep",
        "  BACKFILL_QUEUE: backfillQueueName\n",
        "  BACKFILL_QUEUE: 'dbx-audit-backfill'\n",
        ["main.bicep: BACKFILL_QUEUE is not backfillQueueName"],
      ],
      [
        "app/rbac.bicep",
        "  name: guid(functionStorage.id, principalId, storageQueueDataContributorRoleId)\n  scope: functionStorage\n",
        "  name: guid(exportStorage.id, principalId, storageQueueDataContributorRoleId)\n  scope: exportStorage\n",
        ["app/rbac.bicep: the app's identity has no Storage Queue Data Contributor on the function storage account"],
      ],
      [
        "app/rbac.bicep",
        "resource operatorBackfillQueueRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(operatorPrincipalId)) {",
        "resource operatorBackfillQueueRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {",
        ["app/rbac.bicep: the operator has no Storage Queue Data Contributor on the function storage account when there is one"],
      ],
    ];
    for (const [path, from, to, expected] of cases) expect(problemsWith(await broken(path, from, to)), `${path}: ${to}`).toEqual(expected);
  });

  it("says maximumInstanceCount bounds the backfill slices running at once, and so their share of the DCR and the warehouse", () => {
    const description = stringLiteral(file("main.bicep").params.get("maximumInstanceCount")?.decorators.get("description")?.[0]) ?? "";
    for (const part of [
      "backfill slices running at once",
      "one per instance by default",
      "2 GB/min",
      "12,000 requests/min",
      "--sinks both",
      "concurrent queries",
    ])
      expect(description).toContain(part);
    const perInstance = file("main.bicep").params.get("backfillSlicesPerInstance");
    expect(perInstance?.type).toBe("int");
    expect([perInstance?.defaultValue, ...["minValue", "maxValue"].map((d) => perInstance?.decorators.get(d)?.[0])].map((n) => literal(n))).toEqual([1, 1, 8]);
    const apiParam = file("app/api.bicep").params.get("backfillSlicesPerInstance");
    expect([apiParam?.defaultValue, ...["minValue", "maxValue"].map((d) => apiParam?.decorators.get(d)?.[0])].map((n) => literal(n))).toEqual([1, 1, 8]);
    expect(
      file("main.bicep")
        .modules.find((m) => m.symbol === "api")
        ?.params.get("backfillSlicesPerInstance")?.text,
    ).toBe("backfillSlicesPerInstance");
    expect(apiAppSettings(file("app/api.bicep"), [], {}, { backfillSlicesPerInstance: 3 }).AzureFunctionsJobHost__extensions__queues__batchSize).toBe("3");
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

  it("grants the app's identity Log Analytics Reader on the app's workspace, and sets the workspace ID (the GUID) reconciliation queries", () => {
    const rbac = file("app/rbac.bicep");
    const readers = rbac.resources.filter(
      (r) => r.type === "Microsoft.Authorization/roleAssignments" && valueAt(r.body, "properties.roleDefinitionId")?.text.includes("logAnalyticsReaderRoleId"),
    );
    expect(readers).toHaveLength(1);
    expect(valueAt(readers[0]!.body, "scope")?.text).toBe("logAnalytics");
    expect(valueAt(readers[0]!.body, "properties.principalId")?.text).toBe("principalId");
    const workspace = rbac.resources.find((r) => r.symbol === "logAnalytics");
    expect(workspace).toMatchObject({ type: "Microsoft.OperationalInsights/workspaces", existing: true });
    const main = file("main.bicep");
    const optional = objectProperties(main.vars.get("optionalAppSettings"));
    expect(optional.get("LOG_ANALYTICS_WORKSPACE_ID")?.text).toBe("empty(logAnalyticsWorkspaceId) ? defaultLogAnalyticsWorkspaceId : logAnalyticsWorkspaceId");
    expect(main.vars.get("defaultLogAnalyticsWorkspaceId")?.text).toBe("useExternalLogsIngestion ? '' : (monitoring.outputs.logAnalyticsCustomerId)");
    expect(optional.get("LOG_ANALYTICS_QUERY_ENDPOINT")?.text).toBe("logAnalyticsQueryEndpoint");
    const monitoring = file("app/monitoring.bicep");
    expect(monitoring.outputs).toContain("logAnalyticsCustomerId");
    expect(monitoring.tree.rootNode.text).toMatch(/output logAnalyticsCustomerId string = logAnalytics\.properties\.customerId/);
  });

  it("sets the app settings of the alerts stream and the detections' schedule", () => {
    const main = file("main.bicep");
    const required = objectProperties(main.vars.get("requiredAppSettings"));
    expect(required.get("LOGS_INGESTION_ALERTS_STREAM")?.text).toBe("logsIngestion.outputs.alertsStreamName");
    const optional = objectProperties(main.vars.get("optionalAppSettings"));
    expect(optional.get("DETECTIONS_SCHEDULE")?.text).toBe("detectionsSchedule");
    expect(stringLiteral(main.params.get("detectionsSchedule")?.defaultValue)).toBe("0 15 * * * *");
  });

  it("takes DATABRICKS_SOURCES as a list parameter, empty by default, and sets the app setting to its JSON only when it lists any", () => {
    expect(databricksSourcesProblems(file("main.bicep"), file("app/api.bicep"))).toEqual([]);
    const param = file("main.bicep").params.get("databricksSources")!;
    // The description shows every field of a source, and the limit is the app's (shared/config.ts).
    const description = stringLiteral(param.decorators.get("description")?.[0]) ?? "";
    for (const field of ["name", "serverHostname", "httpPath", "workspaceIds", "accessTokenSetting"]) expect(description).toContain(`"${field}"`);
    expect(literal(param.decorators.get("maxLength")?.[0])).toBe(16);
  });

  it("writes DATABRICKS_SOURCES as the app reads it: one source per warehouse, the first the single-source one", () => {
    const settings = apiAppSettings(file("app/api.bicep"), SOURCES, {
      DATABRICKS_SERVER_HOSTNAME: SOURCES[0]!.serverHostname,
      DATABRICKS_HTTP_PATH: SOURCES[0]!.httpPath,
    });
    const config = loadConfig(settings, { storage: false });
    expect(config.sources.map((s) => [s.name, s.databricks.serverHostname, s.databricks.httpPath, s.filter.workspaceIds])).toEqual(
      SOURCES.map((s) => [s.name, s.serverHostname, s.httpPath, s.workspaceIds]),
    );
    const single = apiAppSettings(file("app/api.bicep"), [], {
      DATABRICKS_SERVER_HOSTNAME: "adb-1.1.azuredatabricks.net",
      DATABRICKS_HTTP_PATH: "/sql/1.0/warehouses/x",
    });
    const one = loadConfig(single, { storage: false });
    expect(one.sources.map((s) => s.databricks.serverHostname)).toEqual(["adb-1.1.azuredatabricks.net"]);
  });

  it("reports DATABRICKS_SOURCES set for an empty list, not as the list's JSON, a non-list parameter, a list not passed on, and no stop for a disagreeing first source", async () => {
    const broken = async (path: string, from: string, to: string): Promise<BicepFile> => {
      const text = readFileSync(join(infra, path), "utf8");
      expect(text, path).toContain(from);
      return parseBicepText(text.replace(from, to), join(infra, path));
    };
    const apiSetting = "empty(databricksSources) ? {} : { DATABRICKS_SOURCES: string(databricksSources) }";
    const cases: [string, string, string, string[]][] = [
      ["app/api.bicep", apiSetting, "{ DATABRICKS_SOURCES: string(databricksSources) }", ["app/api.bicep: DATABRICKS_SOURCES is set for an empty list"]],
      [
        "app/api.bicep",
        apiSetting,
        "empty(databricksSources) ? {} : { DATABRICKS_SOURCES: string(databricksSources[0]) }",
        ["app/api.bicep: DATABRICKS_SOURCES is not the list's JSON"],
      ],
      [
        "main.bicep",
        "param databricksSources array = []",
        "param databricksSources string = ''",
        ["main.bicep: databricksSources is not an array parameter that defaults to []"],
      ],
      ["main.bicep", "    databricksSources: checkedDatabricksSources\n", "", ["main.bicep: module api is not given databricksSources"]],
      [
        "main.bicep",
        "var checkedDatabricksSources = firstSourceAgrees ?",
        "var checkedDatabricksSources = true ?",
        [
          "main.bicep: a first source other than databricksServerHostname's warehouse does not stop the deployment",
          "main.bicep: a first source other than databricksHttpPath's warehouse does not stop the deployment",
        ],
      ],
    ];
    for (const [path, from, to, expected] of cases) {
      const fixture = await broken(path, from, to);
      expect(syntaxProblems(fixture.tree), `${path}: ${to}`).toEqual([]);
      const main = path === "main.bicep" ? fixture : file("main.bicep");
      const api = path === "app/api.bicep" ? fixture : file("app/api.bicep");
      expect(databricksSourcesProblems(main, api), `${path}: ${to}`).toEqual(expected);
    }
  });

  it("shows DATABRICKS_SOURCES in infra/README.md as lists the app accepts, for azd and in a parameters file", () => {
    const readme = readFileSync(join(infra, "README.md"), "utf8");
    const fromAzd = /azd env set DATABRICKS_SOURCES '(.*)'/.exec(readme)?.[1];
    const fromFile = /"databricksSources": (\{[\s\S]*?\n\})/.exec(readme)?.[1];
    expect(fromAzd).toBeDefined();
    expect(fromFile).toBeDefined();
    const lists = [JSON.parse(fromAzd!) as unknown, (JSON.parse(fromFile!) as { value: unknown }).value];
    expect(lists[1]).toEqual(lists[0]);
    const config = loadConfig({ DATABRICKS_SOURCES: JSON.stringify(lists[0]) }, { storage: false });
    expect(config.sources.map((source) => source.name)).toEqual(["westeurope", "eastus"]);
  });

  it("evaluates interpolated strings, and refuses expressions the Bicep grammar groups differently from Bicep", async () => {
    const fixture = await parseBicepText(
      [
        "param list array = []",
        "var greeting = 'id=${string(list)};n=${length(list)}'",
        "var unparenthesized = empty(list) ? true : list[0].a == 'x' && list[0].b == 'y'",
        "var parenthesized = empty(list) ? true : ((list[0].a == 'x') && (list[0].b == 'y'))",
      ].join("\n"),
    );
    const value = (name: string, list: BicepValue[]): BicepValue => evaluate(fixture.vars.get(name)!, fixture, { list });
    expect(value("greeting", ["a"])).toBe('id=["a"];n=1');
    expect(value("parenthesized", [{ a: "x", b: "y" }])).toBe(true);
    expect(value("parenthesized", [{ a: "x", b: "z" }])).toBe(false);
    for (const list of [[], [{ a: "x", b: "y" }]]) expect(() => value("unparenthesized", list)).toThrow(/parenthesize/);
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
    for (const name of ["network", "functionStoragePrivateEndpoint", "functionStorageQueuePrivateEndpoint", "exportStoragePrivateEndpoint"]) {
      expect(
        modules.get(name)?.node.namedChildren.some((n) => n?.type === "if_statement" && n.namedChildren[0]?.text === "(vnetEnabled)"),
        name,
      ).toBe(true);
    }
    for (const name of ["functionStorage", "exportStorage"]) expect(modules.get(name)?.params.get("vnetEnabled")?.text).toBe("vnetEnabled");
    expect(modules.get("api")?.params.get("virtualNetworkSubnetId")?.text).toBe("vnetEnabled ? network!.outputs.appSubnetId : ''");
    // One endpoint module for both services: blob unless told, queue for the host's backfill queue trigger.
    const endpoint = file("app/storage-private-endpoint.bicep");
    const groupId = endpoint.params.get("groupId");
    expect(stringLiteral(groupId?.defaultValue)).toBe("blob");
    expect(groupId?.decorators.get("allowed")?.[0]?.namedChildren.map((n) => stringLiteral(n))).toEqual(["blob", "queue"]);
    const groups = endpoint.resources.find((r) => r.type === "Microsoft.Network/privateEndpoints");
    expect(valueAt(groups?.body, "properties.privateLinkServiceConnections")?.text).toMatch(/groupIds: \[\s*groupId\s*\]/);
    const zoneGroup = endpoint.resources.find((r) => r.type === "Microsoft.Network/privateEndpoints/privateDnsZoneGroups");
    expect(valueAt(zoneGroup?.body, "name")?.text).toBe("groupId");
    for (const name of ["functionStoragePrivateEndpoint", "exportStoragePrivateEndpoint"]) {
      expect(modules.get(name)?.params.has("groupId"), name).toBe(false);
      expect(modules.get(name)?.params.get("privateDnsZoneId")?.text, name).toBe("network!.outputs.blobPrivateDnsZoneId");
    }
    const queueEndpoint = modules.get("functionStorageQueuePrivateEndpoint")!;
    expect(stringLiteral(queueEndpoint.params.get("groupId"))).toBe("queue");
    expect(queueEndpoint.params.get("storageAccountName")?.text).toBe("functionStorage.outputs.name");
    expect(queueEndpoint.params.get("privateDnsZoneId")?.text).toBe("network!.outputs.queuePrivateDnsZoneId");
    const zones = file("app/vnet.bicep").resources.filter((r) => r.type === "Microsoft.Network/privateDnsZones");
    expect(zones.map((zone) => file("app/vnet.bicep").vars.get(valueAt(zone.body, "name")?.text ?? "")?.text)).toEqual([
      "'privatelink.blob.${environment().suffixes.storage}'",
      "'privatelink.queue.${environment().suffixes.storage}'",
    ]);
    // The app starts after the queue endpoint exists, as after the blob ones.
    const dependsOn = valueAt(declarationBody(modules.get("api")!.node), "dependsOn")?.text ?? "";
    expect(dependsOn).toContain("functionStorageQueuePrivateEndpoint");
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
      // azd (1.23.4 and later) reads an array parameter's substituted text as JSON.
      if (param.type === "array") {
        let parsed: unknown;
        try {
          parsed = JSON.parse(fallback);
        } catch {
          parsed = undefined;
        }
        if (!Array.isArray(parsed)) problems.push(`${name}: default ${fallback} is not a JSON array`);
        else if (JSON.stringify(parsed) !== JSON.stringify(evaluate(param.defaultValue!, main, {})))
          problems.push(`${name}: default ${fallback} differs from main.bicep's`);
      }
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
    expect(parameters.databricksSources?.value).toBe("${DATABRICKS_SOURCES=[]}");
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
