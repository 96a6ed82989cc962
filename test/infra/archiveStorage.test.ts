import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "../../shared/config";
import { literal, objectProperties, parseBicepText, readTemplate, stringLiteral, valueAt, type BicepFile, type ResourceDecl } from "./support/bicep";

// The write-once archive in infra/, checked on the parsed templates (no Bicep compiler installs here):
// the archive's container carries version-level WORM with a default time-based retention policy on an
// account with versioning, the state is in a container of its own, the app's identity holds roles on
// those two containers only (none on the account), and the app settings name both containers. Each
// check is a function over parsed files, also run on a broken fixture to show it can fail.

const infra = join(__dirname, "..", "..", "infra");
const CONTAINERS = "Microsoft.Storage/storageAccounts/blobServices/containers";
const ROLE_ASSIGNMENTS = "Microsoft.Authorization/roleAssignments";

/** Whether `inner`'s declaration is nested inside `outer`'s. */
const within = (inner: ResourceDecl, outer: ResourceDecl): boolean =>
  inner.body.startIndex > outer.body.startIndex && inner.body.endIndex < outer.body.endIndex;

/** export-storage.bicep: the archive's container write-once, the state's container apart and rewritable. */
function wormProblems(storage: BicepFile): string[] {
  const problems: string[] = [];
  const containers = storage.resources.filter((r) => r.type === CONTAINERS && !r.existing);
  const archive = containers.find((r) => valueAt(r.body, "name")?.text === "containerName");
  const state = containers.find((r) => valueAt(r.body, "name")?.text === "stateContainerName");
  if (!archive) return ["no container named by containerName (the archive)"];
  if (!state) problems.push("no container named by stateContainerName (the state)");
  if (literal(valueAt(archive.body, "properties.immutableStorageWithVersioning.enabled")) !== true)
    problems.push(`${archive.symbol}: properties.immutableStorageWithVersioning.enabled is not true`);
  const policy = storage.resources.find((r) => r.type === `${CONTAINERS}/immutabilityPolicies` && within(r, archive));
  if (!policy) {
    problems.push(`${archive.symbol}: no time-based retention policy (immutabilityPolicies) on the archive's container`);
  } else {
    if (stringLiteral(valueAt(policy.body, "name")) !== "default") problems.push(`${policy.symbol}: the container's policy must be named 'default'`);
    const period = valueAt(policy.body, "properties.immutabilityPeriodSinceCreationInDays");
    const param = period?.type === "identifier" ? storage.params.get(period.text) : undefined;
    if (!param) problems.push(`${policy.symbol}: immutabilityPeriodSinceCreationInDays is not a parameter`);
    else if (!param.decorators.has("minValue")) problems.push(`${policy.symbol}: ${param.name} has no @minValue`);
    for (const appends of ["allowProtectedAppendWrites", "allowProtectedAppendWritesAll"])
      if (literal(valueAt(policy.body, `properties.${appends}`)) !== false) problems.push(`${policy.symbol}: properties.${appends} is not false`);
  }
  if (state && valueAt(state.body, "properties.immutableStorageWithVersioning"))
    problems.push(`${state.symbol}: the state container is rewritten every run and must not be write-once`);
  const blobService = storage.resources.find((r) => r.type === "Microsoft.Storage/storageAccounts/blobServices" && !r.existing);
  if (literal(valueAt(blobService?.body, "properties.isVersioningEnabled")) !== true)
    problems.push("blobServices: properties.isVersioningEnabled is not true (version-level WORM needs versioning)");
  for (const output of ["containerName", "stateContainerName"]) if (!storage.outputs.has(output)) problems.push(`no output ${output}`);
  return problems;
}

/**
 * rbac.bicep: every role of the app's identity (principalId) on the export account is scoped to one of
 * its containers, each of the two has one, and none is on the account itself.
 */
function exportRoleProblems(rbac: BicepFile): string[] {
  const problems: string[] = [];
  const containerNames = new Map(
    rbac.resources.filter((r) => r.type === CONTAINERS && r.existing).map((r) => [r.symbol, valueAt(r.body, "name")?.text ?? ""] as const),
  );
  const scoped = new Set<string>();
  for (const assignment of rbac.resources.filter((r) => r.type === ROLE_ASSIGNMENTS && !r.existing)) {
    if (valueAt(assignment.body, "properties.principalId")?.text !== "principalId") continue;
    const scope = valueAt(assignment.body, "scope")?.text ?? "";
    if (scope === "exportStorage") problems.push(`${assignment.symbol}: the app's identity has a role on the whole export account`);
    if (!scope.startsWith("exportStorage::")) continue;
    const name = containerNames.get(scope.split("::").pop()!);
    if (name === undefined) problems.push(`${assignment.symbol}: scope ${scope} is not a container`);
    else scoped.add(name);
  }
  for (const name of ["archiveContainerName", "stateContainerName"]) if (!scoped.has(name)) problems.push(`no role of the app's identity on ${name}`);
  return problems;
}

describe("infra/: the write-once archive", () => {
  let files: Map<string, BicepFile>;
  const file = (path: string): BicepFile => files.get(join(infra, path))!;

  beforeAll(async () => {
    files = await readTemplate(infra);
  });

  it("puts version-level WORM with a time-based retention policy on the archive's container, and the state in a container of its own", () => {
    expect(wormProblems(file("app/export-storage.bicep"))).toEqual([]);
    const days = file("main.bicep").params.get("archiveRetentionDays");
    expect(literal(days?.defaultValue)).toBe(365);
    expect(
      file("main.bicep")
        .modules.find((m) => m.symbol === "exportStorage")
        ?.params.get("archiveRetentionDays")?.text,
    ).toBe("archiveRetentionDays");
  });

  it("reports a container without WORM, a missing retention policy and a write-once state container", async () => {
    const fixture = await parseBicepText(
      [
        "param containerName string",
        "resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {",
        "  name: 'st'",
        "  resource blobService 'blobServices' = {",
        "    name: 'default'",
        "    properties: { isVersioningEnabled: false }",
        "    resource container 'containers' = {",
        "      name: containerName",
        "      properties: { publicAccess: 'None' }",
        "    }",
        "    resource stateContainer 'containers' = {",
        "      name: stateContainerName",
        "      properties: { immutableStorageWithVersioning: { enabled: true } }",
        "    }",
        "  }",
        "}",
      ].join("\n"),
      join(infra, "fixture.bicep"),
    );
    expect(wormProblems(fixture)).toEqual([
      "container: properties.immutableStorageWithVersioning.enabled is not true",
      "container: no time-based retention policy (immutabilityPolicies) on the archive's container",
      "stateContainer: the state container is rewritten every run and must not be write-once",
      "blobServices: properties.isVersioningEnabled is not true (version-level WORM needs versioning)",
      "no output containerName",
      "no output stateContainerName",
    ]);
  });

  it("gives the app's identity roles on the two containers, none on the export account", () => {
    expect(exportRoleProblems(file("app/rbac.bicep"))).toEqual([]);
    const rbac = file("main.bicep").modules.find((m) => m.symbol === "rbac")!;
    expect(rbac.params.get("archiveContainerName")?.text).toBe("exportStorage.outputs.containerName");
    expect(rbac.params.get("stateContainerName")?.text).toBe("exportStorage.outputs.stateContainerName");
  });

  it("reports a role on the whole account and a container left without one", async () => {
    const fixture = await parseBicepText(
      [
        "resource exportStorage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {",
        "  name: exportStorageAccountName",
        "  resource blobService 'blobServices' existing = {",
        "    name: 'default'",
        "    resource stateContainer 'containers' existing = {",
        "      name: stateContainerName",
        "    }",
        "  }",
        "}",
        "resource accountRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {",
        "  name: guid('a')",
        "  scope: exportStorage",
        "  properties: { roleDefinitionId: x, principalId: principalId, principalType: 'ServicePrincipal' }",
        "}",
        "resource stateRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {",
        "  name: guid('b')",
        "  scope: exportStorage::blobService::stateContainer",
        "  properties: { roleDefinitionId: x, principalId: principalId, principalType: 'ServicePrincipal' }",
        "}",
      ].join("\n"),
      join(infra, "fixture.bicep"),
    );
    expect(exportRoleProblems(fixture)).toEqual([
      "accountRole: the app's identity has a role on the whole export account",
      "no role of the app's identity on archiveContainerName",
    ]);
  });

  it("names both containers in the app settings, with names the app accepts and two different containers", () => {
    const main = file("main.bicep");
    const required = objectProperties(main.vars.get("requiredAppSettings"));
    expect(required.get("EXPORT_CONTAINER")?.text).toBe("exportStorage.outputs.containerName");
    expect(required.get("EXPORT_STATE_CONTAINER")?.text).toBe("exportStorage.outputs.stateContainerName");
    const archive = stringLiteral(main.vars.get("exportContainerName"));
    const state = stringLiteral(main.vars.get("exportStateContainerName"));
    expect(archive).not.toBe(state);
    const config = loadConfig({
      DATABRICKS_SERVER_HOSTNAME: "adb-1234567890123456.7.azuredatabricks.net",
      DATABRICKS_HTTP_PATH: "/sql/1.0/warehouses/abcdef1234567890",
      EXPORT_STORAGE_ACCOUNT_URL: "https://st.blob.core.windows.net",
      EXPORT_CONTAINER: archive,
      EXPORT_STATE_CONTAINER: state,
    });
    expect(config.storage).toMatchObject({ container: archive, stateContainer: state });
    expect([...main.outputs]).toEqual(expect.arrayContaining(["EXPORT_CONTAINER", "EXPORT_STATE_CONTAINER"]));
  });
});
