import { readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { evaluate, literal, valueAt, type BicepFile, type BicepValue } from "./bicep";

// `azd provision` as far as the app settings go, evaluated from the parsed template: azd
// substitutes its environment into main.parameters.json (`${NAME}` or `${NAME=default}`) and
// converts each value to its parameter's type; main.bicep passes the api module its settings;
// app/api.bicep writes config/appsettings whole. Module outputs and the host's storage account
// stand in as "template:<symbol>.<name>", so a setting's value says where it came from.

export type ParameterMappings = Record<string, { value: unknown }>;

export function readParameterMappings(path: string): ParameterMappings {
  return (JSON.parse(readFileSync(path, "utf8")) as { parameters: ParameterMappings }).parameters;
}

/** The azd environment variable a parameter is mapped to, and the default azd substitutes without it. */
export function mappedVariable(mapping: { value: unknown } | undefined): { variable: string; fallback: string | undefined } | undefined {
  const match = typeof mapping?.value === "string" ? /^\$\{([A-Z0-9_]+)(?:=(.*))?\}$/.exec(mapping.value) : null;
  return match ? { variable: match[1]!, fallback: match[2] } : undefined;
}

/** main.bicep's parameter values for an azd environment, converted as azd converts them. */
export function parameterValues(main: BicepFile, mappings: ParameterMappings, env: Record<string, string>): Record<string, BicepValue> {
  const values: Record<string, BicepValue> = {};
  for (const [name, mapping] of Object.entries(mappings)) {
    const param = main.params.get(name);
    const mapped = mappedVariable(mapping);
    if (!param || !mapped) throw new Error(`main.parameters.json: ${name} is not a \${NAME} mapping of a main.bicep parameter`);
    const text = env[mapped.variable] ?? mapped.fallback ?? "";
    if (param.type === "int") values[name] = Number(text);
    else if (param.type === "bool") values[name] = text === "true";
    else if (param.type === "array" || param.type === "object") values[name] = JSON.parse(text) as BicepValue;
    else values[name] = text;
  }
  return values;
}

/** What each module's outputs read as: "template:<module>.<output>". */
function moduleOutputs(main: BicepFile, files: Map<string, BicepFile>): Record<string, BicepValue> {
  const stand = {} as Record<string, BicepValue>;
  for (const module of main.modules) {
    const target = files.get(resolve(dirname(main.path), module.path));
    const outputs = Object.fromEntries([...(target?.outputs ?? [])].map((output) => [output, `template:${module.symbol}.${output}`]));
    stand[module.symbol] = { outputs };
  }
  return stand;
}

/**
 * config/appsettings as a deployment with these parameter values writes it. Throws BicepFailure when
 * the template's own checks stop the deployment.
 */
export function provisionedAppSettings(files: Map<string, BicepFile>, infra: string, parameters: Record<string, BicepValue>): Record<string, string> {
  const main = files.get(join(infra, "main.bicep"))!;
  const module = main.modules.find((m) => m.symbol === "api");
  const api = module && files.get(resolve(infra, module.path));
  if (!module || !api) throw new Error("main.bicep has no module api");
  const mainValues = { ...moduleOutputs(main, files), ...parameters };
  const given: Record<string, BicepValue> = {};
  // Only what the settings read: the others (names, network) need values this leaves out.
  for (const name of [
    "appSettings",
    "databricksSources",
    "extraAppSettings",
    "identityClientId",
    "applicationInsightsConnectionString",
    "backfillSlicesPerInstance",
  ]) {
    const expression = module.params.get(name);
    if (expression) given[name] = evaluate(expression, main, mainValues);
  }
  const config = api.resources.find((r) => r.type === "Microsoft.Web/sites/config" && literal(valueAt(r.body, "name")) === "appsettings");
  const properties = valueAt(config?.body, "properties");
  if (!properties) throw new Error("app/api.bicep has no config/appsettings");
  const settings = evaluate(properties, api, {
    ...given,
    storage: { properties: { primaryEndpoints: { blob: "template:storage.blob", queue: "template:storage.queue" } } },
  });
  const notText = Object.entries(settings as Record<string, BicepValue>).filter(([, value]) => typeof value !== "string");
  if (notText.length > 0) throw new Error(`app settings that are not strings: ${notText.map(([key]) => key).join(", ")}`);
  return settings as Record<string, string>;
}

/** The settings of README.md's "## Configuration" table, each with its row. */
export function readmeSettings(readme: string): { name: string; row: string }[] {
  const section = readme.split(/^## /m).find((part) => part.startsWith("Configuration\n")) ?? "";
  return section
    .split("\n")
    .filter((line) => line.startsWith("| `"))
    .flatMap((row) => {
      const firstCell = row.split("|")[1] ?? "";
      return [...firstCell.matchAll(/`([A-Z][A-Z0-9_]*)`/g)].map((match) => ({ name: match[1]!, row }));
    });
}
