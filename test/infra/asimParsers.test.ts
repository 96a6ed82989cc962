import { execFileSync, spawnSync } from "node:child_process";
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { evaluate, parseBicepText, readTemplate, valueAt, type BicepFile, type BicepValue } from "./support/bicep";
import { analyse, globalsFor, readTables, type KustoGlobals } from "./support/kusto";
import { ASIM_SOURCE, asimFields, classify, readAsimMapping, result, type AsimSchema } from "./support/asim";
import { syntheticRows } from "../../sandbox/sqlWarehouse/synthetic";
import { LOGIN_ACTIONS, PRIVILEGE_CHANGE_ACTIONS, UC_DATA_ACTIONS } from "../../shared/detections/facts";

// The workspace functions of sentinel/parsers/ as infra/app/sentinel-content.bicep deploys them: each
// query is analysed as Log Analytics would run it (its functionParameters declared, the functions it
// calls defined), against DatabricksAudit_CL from infra/tables.json; the ASIM parsers' output columns
// and types are held to the ASIM tester's field list; the mapping table is held to the actions the
// synthetic data and the detection catalog know, and applied to sample rows.

const repo = join(__dirname, "..", "..");
const modulePath = join(repo, "infra", "app", "sentinel-content.bicep");
const moduleText = readFileSync(modulePath, "utf8");
const generator = join(repo, "scripts", "sentinel-content.mjs");
const mapping = readAsimMapping(repo);
const SAVED_SEARCHES = "Microsoft.OperationalInsights/workspaces/savedSearches";

interface WorkspaceFunction {
  name: string;
  displayName: string;
  category: string;
  parameters: string;
  query: string;
}
interface SavedSearchProperties {
  category: string;
  displayName: string;
  functionAlias: string;
  functionParameters: string | null;
  query: string;
  version: number;
}

/** The functions the module deploys, with the properties each savedSearches resource gets. */
function deployedFunctions(file: BicepFile): { fn: WorkspaceFunction; properties: SavedSearchProperties }[] {
  const list = file.vars.get("workspaceFunctions");
  const resource = file.resources.find((r) => r.type === SAVED_SEARCHES);
  if (!list || !resource) throw new Error("no workspaceFunctions or no savedSearches resource");
  const functions = evaluate(list, file, {}) as unknown as WorkspaceFunction[];
  const properties = valueAt(resource.body, "properties")!;
  return functions.map((fn) => ({ fn, properties: evaluate(properties, file, { fn: fn as unknown as BicepValue }) as unknown as SavedSearchProperties }));
}

/** A function as Log Analytics runs it: a `let` with its parameters, called with their defaults. */
function asLet(name: string, properties: SavedSearchProperties): string {
  return `let ${name} = (${properties.functionParameters ?? ""}) {\n${properties.query}\n};`;
}

/** Azure-Sentinel's filtering parameters for each schema, in the sources' declarations. */
const ASIM_PARAMETERS: Record<AsimSchema, { source: string; names: string[] }> = {
  // Parsers/ASimAuditEvent/Parsers/vimAuditEventAzureAdminActivity.yaml @ 0f97e0459373e27a6c5a25754aa1aff7f6c9420a
  AuditEvent: {
    source: "vimAuditEventAzureAdminActivity.yaml",
    names: [
      "starttime",
      "endtime",
      "srcipaddr_has_any_prefix",
      "eventtype_in",
      "eventresult",
      "actorusername_has_any",
      "operation_has_any",
      "object_has_any",
      "newvalue_has_any",
      "disabled",
    ],
  },
  // Parsers/ASimAuthentication/Parsers/imAuthentication.yaml @ 02c3862a5fb48da4bc612a90086173b60192b212 (its sources add disabled)
  Authentication: {
    source: "imAuthentication.yaml",
    names: [
      "starttime",
      "endtime",
      "username_has_any",
      "targetappname_has_any",
      "srcipaddr_has_any_prefix",
      "srchostname_has_any",
      "eventtype_in",
      "eventresultdetails_in",
      "eventresult",
      "disabled",
    ],
  },
};
const ASIM_DEFAULTS: Record<string, string> = {
  starttime: "datetime:datetime(null)",
  endtime: "datetime:datetime(null)",
  eventresult: "string:'*'",
  disabled: "bool:False",
};

/** name -> "type:default" of a functionParameters string. */
function parameters(declaration: string): Map<string, string> {
  return new Map(
    declaration.split(/,(?![^(]*\))/).map((part) => {
      const match = /^(\w+):(\w+)=(.+)$/.exec(part.trim());
      if (!match) throw new Error(`not a parameter declaration: ${part}`);
      return [match[1]!, `${match[2]}:${match[3]}`];
    }),
  );
}

/** The parsers' recommended fields the audit log has nothing for, and why. */
const NOT_AVAILABLE: Record<AsimSchema, Record<string, string>> = {
  AuditEvent: {
    DvcAction: "Databricks records the request, not an action a device took on it",
    DvcDomain: "the audit row has no domain of the workspace",
    DvcHostname: "the audit row has no host name of the workspace",
    DvcIpAddr: "the audit row has no address of the workspace",
    TargetHostname: "the audit row has no host name of the target",
    TargetIpAddr: "the audit row has no address of the target",
  },
  Authentication: {
    DvcAction: "Databricks records the request, not an action a device took on it",
    DvcDomain: "the audit row has no domain of the workspace",
    DvcHostname: "the audit row has no host name of the workspace",
    DvcIpAddr: "the audit row has no address of the workspace",
    TargetDomain: "the audit row has no domain of the workspace signed in to",
    TargetHostname: "the audit row has no host name of the workspace signed in to",
  },
};

/** What keeps a parser's output from matching its ASIM schema; empty when nothing does. */
function schemaProblems(schema: AsimSchema, columns: Map<string, string>): string[] {
  const fields = asimFields(schema);
  const byName = new Map(fields.map((field) => [field.name, field]));
  const problems: string[] = [];
  for (const field of fields) {
    const type = columns.get(field.name);
    const missing = NOT_AVAILABLE[schema][field.name];
    if (field.fieldClass === "Mandatory" && type === undefined) problems.push(`mandatory ${field.name} missing`);
    if (field.fieldClass === "Recommended" && type === undefined && !missing) problems.push(`recommended ${field.name} missing and not listed as unavailable`);
    if (missing && type !== undefined) problems.push(`${field.name} is output but listed as unavailable`);
    if (type !== undefined && type !== field.type) problems.push(`${field.name} is ${type}, the schema says ${field.type}`);
    if (field.fieldClass === "Conditional" && columns.has(field.refersTo) && type === undefined)
      problems.push(`${field.name} missing: it goes with ${field.refersTo}`);
    if (field.fieldClass === "Alias" && columns.has(field.refersTo) && type === undefined) problems.push(`alias ${field.name} of ${field.refersTo} missing`);
  }
  for (const name of columns.keys()) if (!byName.has(name)) problems.push(`${name} is not a field of ${schema}`);
  return problems;
}

/** The top-level arguments of a `case(...)` at `text`'s start. */
function caseArguments(text: string): string[] {
  const args: string[] = [];
  let depth = 0;
  let quoted = false;
  let current = "";
  for (const char of text.slice(text.indexOf("(") + 1)) {
    if (char === '"') quoted = !quoted;
    if (!quoted && char === "(") depth++;
    if (!quoted && char === ")" && depth-- === 0) break;
    if (!quoted && char === "," && depth === 0) {
      args.push(current.trim());
      current = "";
    } else current += char;
  }
  return [...args, current.trim()];
}

/** The string values a query gives `field`: `field = "x"` and the results of `field = case(...)`. */
function literalValues(query: string, field: string): string[] {
  const values: string[] = [];
  for (const match of query.matchAll(new RegExp(`\\b${field} = "([^"]*)"`, "g"))) values.push(match[1]!);
  for (const match of query.matchAll(new RegExp(`\\b${field} = case\\(`, "g"))) {
    const args = caseArguments(query.slice(match.index + field.length + 3));
    const results = args.filter((_arg, i) => i % 2 === 1 || i === args.length - 1);
    for (const value of results) {
      const literal = /^"([^"]*)"$/.exec(value);
      if (!literal) throw new Error(`${field}: a case result that is not a literal: ${value}`);
      values.push(literal[1]!);
    }
  }
  return values;
}

const VALUES_FROM_MAPPING: Record<AsimSchema, Record<string, string[]>> = {
  AuditEvent: {
    EventType: [...mapping.auditEventActions.map((a) => a.eventType), ...mapping.actionPrefixes.map((p) => p.eventType), "Other"],
    ObjectType: [...mapping.auditEventActions.map((a) => a.objectType), "Other"],
    EventResult: [mapping.eventResult.noStatusCode, "Success", "Failure"],
  },
  Authentication: {
    EventType: mapping.authenticationActions.map((a) => a.eventType),
    EventResult: [mapping.eventResult.noStatusCode, "Success", "Failure"],
    EventResultDetails: [
      ...mapping.failureDetails.map((f) => f.authenticationEventResultDetails),
      ...mapping.authenticationActions.map((a) => a.unauthorizedDetails ?? ""),
      "Other",
    ],
  },
};
/**
 * EventType as the Audit Event schema's documentation lists it for 0.1, the version the parser
 * declares; the tester's list adds Initialize, Start, Stop and Terminate, which content written
 * against 0.1 does not look for.
 */
const AUDIT_EVENT_TYPES_0_1 = ["Set", "Read", "Create", "Delete", "Execute", "Install", "Clear", "Enable", "Disable", "Other"];
/** Enumerations of products and vendors that have a parser in Azure-Sentinel: Databricks is not one yet. */
const REGISTRATION_LISTS = new Set(["EventProduct", "EventVendor"]);

/** Enumerated values a parser can give that its schema does not allow. */
function valueProblems(schema: AsimSchema, query: string): string[] {
  const problems: string[] = [];
  for (const field of asimFields(schema)) {
    if (field.values.length === 0 || REGISTRATION_LISTS.has(field.name)) continue;
    const values = [...literalValues(query, field.name), ...(VALUES_FROM_MAPPING[schema][field.name] ?? [])];
    for (const value of new Set(values)) {
      if (value !== "" && !field.values.includes(value)) problems.push(`${field.name} "${value}" is not one of ${field.values.join(", ")}`);
    }
  }
  return problems;
}

describe("ASIM parsers and workspace functions (sentinel/parsers)", () => {
  let module: BicepFile;
  let functions: { fn: WorkspaceFunction; properties: SavedSearchProperties }[];
  let globals: KustoGlobals;

  beforeAll(async () => {
    const files = await readTemplate(join(repo, "infra"));
    module = files.get(modulePath)!;
    functions = deployedFunctions(module);
    globals = globalsFor(readTables(repo), { standardColumns: true });
  });

  const byName = (name: string) => functions.find(({ fn }) => fn.name === name)!;
  /** A function's query with the other functions it calls defined before it, then called. */
  const program = (name: string) => {
    const { query } = byName(name).properties;
    const called = functions.filter(({ fn }) => fn.name !== name && new RegExp(`\\b${fn.name}\\(`).test(query));
    return [...called.map(({ fn, properties }) => asLet(fn.name, properties)), asLet(name, byName(name).properties), `${name}()`].join("\n");
  };

  it("deploys the two ASIM parsers, each filtering and parameter-less, and the deduplicated view", () => {
    expect(functions.map(({ fn }) => fn.name)).toEqual([
      "vimAuditEventDatabricks",
      "ASimAuditEventDatabricks",
      "vimAuthenticationDatabricks",
      "ASimAuthenticationDatabricks",
      "DatabricksAuditDeduped",
    ]);
    for (const { fn, properties } of functions) {
      expect(properties.functionAlias, fn.name).toBe(fn.name);
      expect(properties.version).toBe(2);
      expect(properties.category).toBe(fn.name === "DatabricksAuditDeduped" ? "Databricks audit" : "ASIM");
      expect(properties.displayName.length).toBeGreaterThan(10);
    }
  });

  it.each(["vimAuditEventDatabricks", "ASimAuditEventDatabricks", "vimAuthenticationDatabricks", "ASimAuthenticationDatabricks", "DatabricksAuditDeduped"])(
    "%s is a query Log Analytics accepts on DatabricksAudit_CL",
    (name) => {
      expect(analyse(program(name), globals).errors).toEqual([]);
    },
  );

  it("the analysis catches a parser that reads a column the table does not have, or a parameter it does not declare", () => {
    const audit = byName("vimAuditEventDatabricks").properties;
    const wrongColumn = {
      ...audit,
      query: audit.query.replace(
        '| extend ActionPrefix = extract(@"^([a-z]+)", 1, ActionName)',
        '| extend ActionPrefix = extract(@"^([a-z]+)", 1, ActionType)',
      ),
    };
    expect(wrongColumn.query).not.toBe(audit.query);
    expect(analyse(`${asLet("f", wrongColumn)}\nf()`, globals).errors.join()).toContain("ActionType");
    const undeclared = { ...audit, functionParameters: audit.functionParameters!.replace(",newvalue_has_any:dynamic=dynamic([])", "") };
    expect(analyse(`${asLet("f", undeclared)}\nf()`, globals).errors.join()).toContain("newvalue_has_any");
  });

  describe.each([
    ["AuditEvent", "vimAuditEventDatabricks", "ASimAuditEventDatabricks"],
    ["Authentication", "vimAuthenticationDatabricks", "ASimAuthenticationDatabricks"],
  ] as const)(`%s (fields from ${ASIM_SOURCE.repository} ${ASIM_SOURCE.path} @ ${ASIM_SOURCE.commit.slice(0, 7)})`, (schema, filtering, parameterless) => {
    it("takes ASIM's standard filtering parameters, with ASIM's defaults, and disabled", () => {
      const declared = parameters(byName(filtering).properties.functionParameters!);
      expect([...declared.keys()].sort(), ASIM_PARAMETERS[schema].source).toEqual([...ASIM_PARAMETERS[schema].names].sort());
      for (const [name, typeAndDefault] of declared) {
        expect(typeAndDefault, name).toBe(ASIM_DEFAULTS[name] ?? "dynamic:dynamic([])");
      }
      // Each one filters: a parameter the query never reads would hand a unifying parser unfiltered rows.
      const body = byName(filtering).properties.query.replace(/\/\/.*$/gm, "");
      expect([...declared.keys()].filter((name) => !new RegExp(`\\b${name}\\b`).test(body))).toEqual([]);
      expect(body).toMatch(/^DatabricksAudit_CL\n\| where not\(disabled\)$/m);
      expect(byName(parameterless).properties.functionParameters).toBe("disabled:bool=False");
      expect(byName(parameterless).properties.query).toBe(`${filtering}(disabled=disabled)`);
    });

    it("outputs every mandatory and recommended field, with the schema's types, and only fields of the schema", () => {
      const { columns } = analyse(program(filtering), globals);
      expect(columns.size).toBeGreaterThan(30);
      expect(schemaProblems(schema, columns)).toEqual([]);
      expect(analyse(program(parameterless), globals).columns).toEqual(columns);
      expect(columns.get(schema === "AuditEvent" ? "ActorUsername" : "TargetUsername")).toBe("string");
    });

    it("gives only values the schema's enumerations allow", () => {
      const query = byName(filtering).properties.query;
      expect(literalValues(query, "EventSchema")).toEqual([schema]);
      if (schema === "AuditEvent") {
        expect(VALUES_FROM_MAPPING.AuditEvent.EventType!.filter((type) => !AUDIT_EVENT_TYPES_0_1.includes(type))).toEqual([]);
      }
      expect(valueProblems(schema, query)).toEqual([]);
    });

    it("reports a missing field, a wrong type, a stray column and a value the schema does not allow (the checks can fail)", () => {
      const { columns } = analyse(program(filtering), globals);
      const without = new Map(columns);
      without.delete("EventStartTime");
      expect(schemaProblems(schema, without)).toContain("mandatory EventStartTime missing");
      expect(schemaProblems(schema, new Map([...columns, ["EventCount", "long"]])).join()).toContain("EventCount is long");
      expect(schemaProblems(schema, new Map([...columns, ["WorkspaceId", "string"]]))).toContain(`WorkspaceId is not a field of ${schema}`);
      expect(schemaProblems(schema, new Map([...columns, ["DvcHostname", "string"]]))).toContain("DvcHostname is output but listed as unavailable");
      const query = byName(filtering).properties.query;
      expect(valueProblems(schema, query.replace('TargetAppType = "SaaS application"', 'TargetAppType = "Databricks"'))).toEqual([
        `TargetAppType "Databricks" is not one of Process, Service, Resource, URL, SaaS application, Other`,
      ]);
    });
  });

  it("DatabricksAuditDeduped keeps each EventId once, with every column of the table", () => {
    const { properties } = byName("DatabricksAuditDeduped");
    expect(properties.functionParameters).toBeNull();
    expect(properties.query).toMatch(/^DatabricksAudit_CL\n\| summarize arg_max\(TimeGenerated, \*\) by EventId$/m);
    const { columns } = analyse(program("DatabricksAuditDeduped"), globals);
    for (const column of readTables(repo).DatabricksAudit_CL!.columns) expect(columns.has(column.name), column.name).toBe(true);
  });

  it("the savedSearches resource is in the Sentinel module only, on the module's workspace, deployed only with DEPLOY_SENTINEL_CONTENT", async () => {
    const files = await readTemplate(join(repo, "infra"));
    const main = files.get(join(repo, "infra", "main.bicep"))!;
    const sentinel = main.modules.filter((decl) => join(repo, "infra", decl.path) === modulePath);
    expect(sentinel).toHaveLength(1);
    expect(sentinel[0]!.node.namedChildren.find((child) => child?.type === "if_statement")?.namedChildren[0]?.text).toBe("(deploySentinelContent)");
    const declaring = [...files.values()].filter((file) => file.resources.some((r) => r.type === SAVED_SEARCHES)).map((file) => file.path);
    expect(declaring).toEqual([modulePath]);
    const resource = module.resources.find((r) => r.type === SAVED_SEARCHES)!;
    expect(valueAt(resource.body, "parent")?.text).toBe("workspace");
    expect(moduleText).toContain(`resource functions '${SAVED_SEARCHES}@2020-08-01'`);
    // A broken copy: no alias, no function.
    const broken = await parseBicepText(moduleText.replace("functionAlias: fn.name", "functionAlias: ''"), modulePath);
    expect(deployedFunctions(broken).filter(({ fn, properties }) => properties.functionAlias !== fn.name)).toHaveLength(5);
  });

  describe("the mapping table, sentinel/parsers/DatabricksAsimMapping.json", () => {
    const synthetic = readFileSync(join(repo, "sandbox", "sqlWarehouse", "synthetic.ts"), "utf8");
    const syntheticActions = [...synthetic.matchAll(/service: "([^"]+)",\s*action: "([^"]+)"/g)].map((m) => ({ service: m[1]!, action: m[2]! }));
    const catalogText = ["catalog.ts", "facts.ts"].map((file) => readFileSync(join(repo, "shared", "detections", file), "utf8")).join("\n");
    const catalogActions = new Set([
      ...LOGIN_ACTIONS,
      ...UC_DATA_ACTIONS,
      ...PRIVILEGE_CHANGE_ACTIONS,
      ...[...catalogText.matchAll(/action_name = '([^']+)'/g)].map((m) => m[1]!),
      ...[...catalogText.matchAll(/action_name IN \(\$\{list\(([^)]*)\)\}\)/g)].flatMap((m) => [...m[1]!.matchAll(/"([^"]+)"/g)].map((s) => s[1]!)),
    ]);

    it("maps every service and action of the synthetic data by name, none twice", () => {
      expect(syntheticActions.length).toBeGreaterThan(50);
      const unmapped = syntheticActions.filter(({ service, action }) => {
        const c = classify(mapping, service, action);
        return c.schema === "AuditEvent" && c.mappedBy !== "service and action";
      });
      expect(unmapped).toEqual([]);
      const keys = [...mapping.auditEventActions, ...mapping.authenticationActions].map((a) => `${a.service}/${a.action}`);
      expect(keys.length - new Set(keys).size).toBe(0);
    });

    it("maps every action the detection catalog names", () => {
      expect(catalogActions.size).toBeGreaterThan(50);
      const named = new Set([...mapping.auditEventActions, ...mapping.authenticationActions].map((a) => a.action));
      expect([...catalogActions].filter((action) => !named.has(action))).toEqual([]);
      // The catalog's failed-login actions are the Authentication parser's.
      for (const action of LOGIN_ACTIONS) expect(classify(mapping, "accounts", action).schema, action).toBe("Authentication");
    });

    it("classifies sample rows as the KQL does: exact name, then any service, then the action's first word", () => {
      const rows = [...syntheticRows(3000, { seed: 34, start: new Date("2026-01-01T00:00:00Z"), end: new Date("2026-01-02T00:00:00Z") })];
      const failedLogins = rows.filter(
        (row) => row.service_name === "accounts" && LOGIN_ACTIONS.includes(row.action_name!) && [401, 403].includes(row.response?.status_code ?? 0),
      );
      expect(failedLogins.length).toBeGreaterThan(10);
      for (const row of failedLogins) {
        expect(classify(mapping, row.service_name!, row.action_name!).schema).toBe("Authentication");
        const status = row.response!.status_code!;
        const refusedKey = status === 401 && ["tokenLogin", "aadTokenLogin"].includes(row.action_name!);
        expect(result(mapping, "Authentication", status, row.action_name!)).toEqual({
          eventResult: "Failure",
          details: refusedKey ? "Incorrect key" : status === 401 ? "No such user or password" : "Logon violates policy",
        });
      }
      const created = rows.find((row) => row.service_name === "clusters" && row.action_name === "create")!;
      expect(classify(mapping, created.service_name!, created.action_name!)).toEqual({
        schema: "AuditEvent",
        eventType: "Create",
        objectType: "Service",
        mappedBy: "service and action",
      });
      expect(classify(mapping, "jobs", "delete")).toMatchObject({ eventType: "Delete", objectType: "Scheduled Task" });
      expect(classify(mapping, "clusters", "delete")).toMatchObject({ eventType: "Disable", objectType: "Service" });
      expect(classify(mapping, "serving", "changeInferenceEndpointAcl")).toMatchObject({ eventType: "Set", objectType: "Policy Rule", mappedBy: "action" });
      expect(classify(mapping, "vectorSearch", "getIndex")).toMatchObject({ eventType: "Read", objectType: "Other", mappedBy: "prefix" });
      expect(classify(mapping, "vectorSearch", "IndexSync")).toMatchObject({ eventType: "Other", mappedBy: "none" });
      // The KQL looks them up in that order.
      expect(byName("vimAuditEventDatabricks").properties.query).toContain(
        'EventType = coalesce(MappedEventType, AnyServiceEventType, PrefixEventType, "Other")',
      );
    });

    it("gives EventResult from the status code: none NA, below 400 Success, else Failure with its details", () => {
      expect(result(mapping, "AuditEvent", null)).toEqual({ eventResult: "NA", details: "" });
      expect(result(mapping, "AuditEvent", 200)).toEqual({ eventResult: "Success", details: "" });
      expect(result(mapping, "AuditEvent", 399)).toEqual({ eventResult: "Success", details: "" });
      expect(result(mapping, "AuditEvent", 400)).toEqual({ eventResult: "Failure", details: "Bad request" });
      expect(result(mapping, "AuditEvent", 403)).toEqual({ eventResult: "Failure", details: "Unauthorized" });
      expect(result(mapping, "AuditEvent", 418)).toEqual({ eventResult: "Failure", details: "Other" });
      expect(result(mapping, "Authentication", 401, "login")).toEqual({ eventResult: "Failure", details: "No such user or password" });
      expect(result(mapping, "Authentication", 401, "tokenLogin")).toEqual({ eventResult: "Failure", details: "Incorrect key" });
      expect(result(mapping, "Authentication", 403, "tokenLogin")).toEqual({ eventResult: "Failure", details: "Logon violates policy" });
      expect(byName("vimAuthenticationDatabricks").properties.query).toContain(
        'coalesce(iff(ResponseStatusCode == 401, UnauthorizedDetails, ""), AuthenticationEventResultDetails, "Other")',
      );
      // The KQL's function is the same rule, written from the same file.
      for (const { fn, properties } of functions.filter(({ fn }) => fn.name.startsWith("vim"))) {
        expect(properties.query, fn.name).toContain(
          'let DatabricksEventResult = (status:int) { case(isnull(status), "NA", status < 400, "Success", "Failure") };',
        );
        expect(properties.query, fn.name).toContain("| extend EventResult = DatabricksEventResult(ResponseStatusCode)");
      }
    });
  });

  describe("generated parts", () => {
    let work: string;
    beforeAll(() => {
      work = mkdtempSync(join(tmpdir(), "dbx-audit-asim-"));
    });
    afterAll(() => {
      rmSync(work, { recursive: true, force: true });
    });

    it("hold the mapping table as it is now, in the parsers and in docs/asim.md", () => {
      execFileSync(process.execPath, [generator, "--check"], { cwd: repo, stdio: "pipe" });
      const docs = readFileSync(join(repo, "docs", "asim.md"), "utf8");
      for (const a of mapping.auditEventActions)
        expect(docs).toContain(`| ${a.service === "*" ? "any" : a.service} | ${a.action} | ${a.eventType} | ${a.objectType} |`);
      for (const a of mapping.authenticationActions)
        expect(byName("vimAuthenticationDatabricks").properties.query).toContain(`"${a.service}", "${a.action}", "${a.eventType}"`);
    });

    it("and docs/asim.md lists every function with the parameters it takes", () => {
      const docs = readFileSync(join(repo, "docs", "asim.md"), "utf8");
      for (const { fn, properties } of functions) {
        const row = docs.split("\n").find((line) => line.startsWith(`| \`${fn.name}\` |`));
        expect(row, fn.name).toBeDefined();
        const listed = [...row!.split("|")[4]!.matchAll(/`(\w+)`/g)].map((m) => m[1]);
        expect(listed, fn.name).toEqual(properties.functionParameters ? [...parameters(properties.functionParameters).keys()] : []);
      }
    });

    it("are reported stale when the mapping changes and they do not", () => {
      mkdirSync(join(work, "sentinel"), { recursive: true });
      cpSync(join(repo, "sentinel", "parsers"), join(work, "sentinel", "parsers"), { recursive: true });
      cpSync(join(repo, "docs"), join(work, "docs"), { recursive: true });
      const file = join(work, "sentinel", "parsers", "DatabricksAsimMapping.json");
      const changed = readFileSync(file, "utf8").replace(
        '"action": "getSecret",\n      "eventType": "Read"',
        '"action": "getSecret",\n      "eventType": "Execute"',
      );
      expect(changed).not.toBe(readFileSync(file, "utf8"));
      writeFileSync(file, changed);
      const stale = spawnSync(process.execPath, [generator, "--check", "--root", work], { cwd: repo, encoding: "utf8" });
      expect(stale.status).toBe(1);
      expect(stale.stderr).toContain("vimAuditEventDatabricks.kql does not match");
      expect(stale.stderr).toContain("asim.md does not match");
      execFileSync(process.execPath, [generator, "--root", work, "--out", join(work, "analytic-rules.json")], { cwd: repo, stdio: "pipe" });
      expect(readFileSync(join(work, "sentinel", "parsers", "vimAuditEventDatabricks.kql"), "utf8")).toContain('"secrets", "getSecret", "Execute", "Other"');
    });
  });
});
