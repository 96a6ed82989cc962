import { readFileSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "../../shared/config";
import { BicepFailure, evaluate, literal, parseBicepText, readTemplate, type BicepFile } from "./support/bicep";
import { mappedVariable, parameterValues, provisionedAppSettings, readmeSettings, readParameterMappings, type ParameterMappings } from "./support/provisioning";

// config/appsettings is written whole by every `azd provision`: a setting the template does not write
// is deleted, whoever set it. So every app setting README.md documents must reach it, from the azd
// environment (a parameter mapped in main.parameters.json) or from the template itself, and the
// settings no parameter names (the access tokens DATABRICKS_SOURCES points at) go through
// EXTRA_APP_SETTINGS. Evaluated from the parsed template, for the README's table as it stands, so a
// setting added to the app and its table without a parameter fails here.

const repo = join(__dirname, "..", "..");
const infra = join(repo, "infra");

/** Documented settings a deployment does not use, and why. */
const LOCAL_ONLY: Record<string, string> = {
  // Shared keys are off on the archive account: the deployment sets EXPORT_STORAGE_ACCOUNT_URL.
  EXPORT_STORAGE_CONNECTION_STRING: "local",
};

const EAST_TOKEN_SETTING = "DATABRICKS_ACCESS_TOKEN_EASTUS";
const EAST_TOKEN_REFERENCE = "@Microsoft.KeyVault(SecretUri=https://kv-audit.vault.azure.net/secrets/eastus-token)";

/** Values of the azd environment that must be JSON, as a user sets them. */
function jsonVariables(env: Record<string, string>): Record<string, string> {
  return {
    DATABRICKS_SOURCES: JSON.stringify([
      { name: "westeurope", serverHostname: env.DATABRICKS_SERVER_HOSTNAME, httpPath: env.DATABRICKS_HTTP_PATH },
      { name: "eastus", serverHostname: "adb-2.2.azuredatabricks.net", httpPath: "/sql/1.0/warehouses/b", accessTokenSetting: EAST_TOKEN_SETTING },
    ]),
    EXTRA_APP_SETTINGS: JSON.stringify({ [EAST_TOKEN_SETTING]: EAST_TOKEN_REFERENCE }),
  };
}

/** Every mapped variable set: text ones to "env:<NAME>", the others to a value their parameter takes. */
function fullEnvironment(main: BicepFile, mappings: ParameterMappings): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [name, mapping] of Object.entries(mappings)) {
    const param = main.params.get(name)!;
    const { variable, fallback } = mappedVariable(mapping)!;
    const allowed = param.decorators.get("allowed")?.[0]?.namedChildren.map((option) => String(literal(option)));
    // A choice from the allowed list, not the empty one a template filters out as "not given".
    if (allowed) env[variable] = fallback && allowed.includes(fallback) ? fallback : allowed.find((option) => option !== "")!;
    else if (param.type === "string") env[variable] = `env:${variable}`;
    else if (fallback !== undefined) env[variable] = fallback;
  }
  return { ...env, ...jsonVariables(env) };
}

/** Each documented setting that an `azd provision` with every variable set does not write, or writes from neither source. */
function lostSettings(files: Map<string, BicepFile>, mappings: ParameterMappings, readme: string): string[] {
  const main = files.get(join(infra, "main.bicep"))!;
  const env = fullEnvironment(main, mappings);
  const settings = provisionedAppSettings(files, infra, parameterValues(main, mappings, env));
  const environmentValues = new Set(Object.values(env));
  const problems: string[] = [];
  for (const { name } of readmeSettings(readme)) {
    if (name in LOCAL_ONLY) continue;
    const value = settings[name];
    if (value === undefined) problems.push(`${name} does not reach config/appsettings: azd provision deletes it`);
    else if (!value.includes("env:") && !value.startsWith("template:") && !environmentValues.has(value))
      problems.push(`${name} is ${value}, from neither the azd environment nor the template`);
  }
  return problems;
}

describe("app settings through azd provision", () => {
  let files: Map<string, BicepFile>;
  let mappings: ParameterMappings;
  let main: BicepFile;
  const readme = readFileSync(join(repo, "README.md"), "utf8");
  const provisioned = (env: Record<string, string>, from = files): Record<string, string> =>
    provisionedAppSettings(from, infra, parameterValues(from.get(join(infra, "main.bicep"))!, mappings, env));

  beforeAll(async () => {
    files = await readTemplate(infra);
    mappings = readParameterMappings(join(infra, "main.parameters.json"));
    main = files.get(join(infra, "main.bicep"))!;
  });

  it("reads README's settings table, local-only ones named as such", () => {
    const documented = readmeSettings(readme);
    expect(documented.map((s) => s.name)).toEqual(
      expect.arrayContaining(["DATABRICKS_SERVER_HOSTNAME", "EXPORT_QUERY_TIMEOUT", "LOGS_INGESTION_RULE_ID", "LOGS_INGESTION_ALERTS_STREAM"]),
    );
    expect(documented.length).toBeGreaterThan(25);
    for (const [name, mark] of Object.entries(LOCAL_ONLY)) expect(documented.find((s) => s.name === name)?.row, name).toContain(mark);
  });

  it("writes every documented setting, from the azd environment or from the template", () => {
    expect(lostSettings(files, mappings, readme)).toEqual([]);
  });

  it("reports a setting without a parameter, and one whose parameter azd does not map", async () => {
    const withoutLine = async (from: string): Promise<Map<string, BicepFile>> => {
      const text = readFileSync(join(infra, "main.bicep"), "utf8");
      expect(text).toContain(from);
      const broken = new Map(files);
      broken.set(join(infra, "main.bicep"), await parseBicepText(text.replace(from, ""), join(infra, "main.bicep")));
      return broken;
    };
    expect(lostSettings(await withoutLine("  EXPORT_QUERY_TIMEOUT: exportQueryTimeout\n"), mappings, readme)).toEqual([
      "EXPORT_QUERY_TIMEOUT does not reach config/appsettings: azd provision deletes it",
    ]);
    const unmapped = Object.fromEntries(Object.entries(mappings).filter(([name]) => name !== "exportSourceConcurrency"));
    expect(lostSettings(files, unmapped, readme)).toEqual(["EXPORT_SOURCE_CONCURRENCY does not reach config/appsettings: azd provision deletes it"]);
    // And a setting the README gains without a parameter (as a new one would).
    const grown = readme.replace("| `EXPORT_QUERY_TIMEOUT` |", "| `EXPORT_NEW_SETTING` | new | none |\n| `EXPORT_QUERY_TIMEOUT` |");
    expect(lostSettings(files, mappings, grown)).toEqual(["EXPORT_NEW_SETTING does not reach config/appsettings: azd provision deletes it"]);
  });

  it("passes the settings accessTokenSetting names through EXTRA_APP_SETTINGS, and the app reads each source's token from them", () => {
    const single = { DATABRICKS_SERVER_HOSTNAME: "adb-1.1.azuredatabricks.net", DATABRICKS_HTTP_PATH: "/sql/1.0/warehouses/a" };
    const settings = provisioned({ ...single, ...jsonVariables(single) });
    expect(settings[EAST_TOKEN_SETTING]).toBe(EAST_TOKEN_REFERENCE);
    // In Azure the platform resolves the Key Vault reference before the app reads it.
    const read = ["DATABRICKS_SERVER_HOSTNAME", "DATABRICKS_HTTP_PATH", "DATABRICKS_SOURCES", EAST_TOKEN_SETTING];
    const config = loadConfig(Object.fromEntries(read.map((name) => [name, settings[name]])), { storage: false });
    expect(config.sources.map((source) => [source.name, source.databricks.accessToken])).toEqual([
      ["westeurope", undefined],
      ["eastus", EAST_TOKEN_REFERENCE],
    ]);
    expect(mappings.extraAppSettings?.value).toBe("${EXTRA_APP_SETTINGS={}}");
    expect(main.params.get("extraAppSettings")?.type).toBe("object");
  });

  it("leaves the optional settings out with an empty azd environment, so the app's defaults apply", () => {
    const settings = provisioned({ DATABRICKS_SERVER_HOSTNAME: "adb-1.1.azuredatabricks.net", DATABRICKS_HTTP_PATH: "/sql/1.0/warehouses/a" });
    for (const name of ["EXPORT_QUERY_TIMEOUT", "EXPORT_SOURCE_CONCURRENCY", "EXPORT_START", "BACKFILL_TIME_BUDGET", "DATABRICKS_SOURCES", EAST_TOKEN_SETTING])
      expect(settings, name).not.toHaveProperty(name);
    expect(settings.DETECTIONS_SCHEDULE).toBe("0 15 * * * *");
    // The queue is always named: the trigger and the CLI both need it, and the template creates it.
    expect(settings.BACKFILL_QUEUE).toBe("dbx-audit-backfill");
    expect(settings.AzureFunctionsJobHost__extensions__queues__batchSize).toBe("1");
  });

  it("maps BACKFILL_QUEUE and BACKFILL_TIME_BUDGET from the azd environment to config/appsettings, and creates the queue the setting names", () => {
    expect(mappings.backfillQueueName?.value).toBe("${BACKFILL_QUEUE=dbx-audit-backfill}");
    expect(mappings.backfillTimeBudget?.value).toBe("${BACKFILL_TIME_BUDGET}");
    expect(mappings.backfillSlicesPerInstance?.value).toBe("${BACKFILL_SLICES_PER_INSTANCE=1}");
    const env = {
      DATABRICKS_SERVER_HOSTNAME: "adb-1.1.azuredatabricks.net",
      DATABRICKS_HTTP_PATH: "/sql/1.0/warehouses/a",
      BACKFILL_QUEUE: "audit-backfill-2",
      BACKFILL_TIME_BUDGET: "PT15M",
    };
    const settings = provisioned(env);
    expect(settings.BACKFILL_QUEUE).toBe("audit-backfill-2");
    expect(settings.BACKFILL_TIME_BUDGET).toBe("PT15M");
    // main.bicep gives app/function-storage.bicep the same value, which names both queues after it.
    const queueName = main.modules.find((m) => m.symbol === "functionStorage")?.params.get("backfillQueueName");
    expect(queueName && evaluate(queueName, main, parameterValues(main, mappings, env))).toBe("audit-backfill-2");
  });

  it("sets host.json's queue options for one slice per instance, and raises the batch size from BACKFILL_SLICES_PER_INSTANCE through the setting that overrides it", () => {
    const host = JSON.parse(readFileSync(join(repo, "host.json"), "utf8")) as Record<string, unknown>;
    const queues = (host.extensions as { queues?: Record<string, unknown> } | undefined)?.queues;
    // The Queue Storage extension's host.json keys, as Microsoft's reference spells them.
    expect(queues).toEqual({ batchSize: 1, newBatchThreshold: 0, maxDequeueCount: 5, visibilityTimeout: "00:00:30", messageEncoding: "base64" });
    const minimal = { DATABRICKS_SERVER_HOSTNAME: "adb-1.1.azuredatabricks.net", DATABRICKS_HTTP_PATH: "/sql/1.0/warehouses/a" };
    const override = "AzureFunctionsJobHost__extensions__queues__batchSize";
    // AzureFunctionsJobHost__a__b overrides host.json's a.b: the name must reach the key it means.
    const path = override.split("__").slice(1);
    expect(path.reduce<unknown>((node, key) => (node as Record<string, unknown> | undefined)?.[key], host)).toBe(1);
    expect(provisioned(minimal)[override]).toBe(String(queues?.batchSize));
    expect(provisioned({ ...minimal, BACKFILL_SLICES_PER_INSTANCE: "4" })[override]).toBe("4");
  });

  it("refuses an extra setting the template sets: one of the app's parameters, or one of the Functions host's", () => {
    const env = fullEnvironment(main, mappings);
    for (const [name, from] of [
      ["EXPORT_START", "their own parameters"],
      ["BACKFILL_QUEUE", "their own parameters"],
      ["AzureWebJobsStorage__credential", "the Functions host"],
      ["AzureWebJobsStorage__queueServiceUri", "the Functions host"],
      ["AzureFunctionsJobHost__extensions__queues__batchSize", "the Functions host"],
    ] as const) {
      const attempt = (): Record<string, string> =>
        provisioned({ ...env, EXTRA_APP_SETTINGS: JSON.stringify({ [name]: "x", [EAST_TOKEN_SETTING]: EAST_TOKEN_REFERENCE }) });
      expect(attempt, name).toThrow(BicepFailure);
      expect(attempt, name).toThrow(new RegExp(`EXTRA_APP_SETTINGS\\) may not set ${name}: .*${from}`));
    }
  });

  it("shows EXTRA_APP_SETTINGS in infra/README.md as an object azd provision writes", () => {
    const infraReadme = readFileSync(join(infra, "README.md"), "utf8");
    const shown = /azd env set EXTRA_APP_SETTINGS '(.*)'/.exec(infraReadme)?.[1];
    expect(shown).toBeDefined();
    const extra = JSON.parse(shown!) as Record<string, string>;
    expect(Object.keys(extra).length).toBeGreaterThan(0);
    const settings = provisioned({ ...fullEnvironment(main, mappings), EXTRA_APP_SETTINGS: shown! });
    for (const [name, value] of Object.entries(extra)) expect(settings[name], name).toBe(value);
  });
});
