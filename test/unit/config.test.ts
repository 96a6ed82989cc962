import { describe, expect, it } from "vitest";
import { DATABRICKS_DEFAULT_SCOPE, DEFAULT_AUDIT_SERVICES, loadConfig, parseServerHostname, resolveStart, sourceConcurrencyFor } from "../../shared/config";
import { cloudFetchFor } from "../../shared/databricks";
import { ConfigError } from "../../shared/errors";

const minimal = {
  DATABRICKS_SERVER_HOSTNAME: "adb-1234567890123456.7.azuredatabricks.net",
  DATABRICKS_HTTP_PATH: "/sql/1.0/warehouses/abcdef1234567890",
  EXPORT_STORAGE_ACCOUNT_URL: "https://mystorage.blob.core.windows.net",
};

function problemsOf(settings: Record<string, string>): string[] {
  try {
    loadConfig(settings);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return [...(error as ConfigError).problems];
  }
  return [];
}

describe("loadConfig", () => {
  it("applies the documented defaults", () => {
    const config = loadConfig(minimal);
    expect(config.databricks).toMatchObject({ host: "adb-1234567890123456.7.azuredatabricks.net", port: 443, scope: DATABRICKS_DEFAULT_SCOPE });
    expect(config.filter).toEqual({ workspaceIds: [], services: DEFAULT_AUDIT_SERVICES, includeAccountLevel: true });
    expect(config.storage).toEqual({
      kind: "accountUrl",
      accountUrl: "https://mystorage.blob.core.windows.net",
      container: "databricks-audit",
      stateContainer: "databricks-audit",
    });
    expect(config.logsIngestion).toBeUndefined();
    expect(config.settleDelayMs).toBeLessThanOrEqual(15 * 60_000);
    expect(config.lateHorizonMs).toBeGreaterThanOrEqual(24 * 3600_000);
    expect(config.start).toEqual({ kind: "ago", ms: 24 * 3600_000 });
  });

  it("reports every problem at once, naming each setting", () => {
    const problems = problemsOf({
      DATABRICKS_SERVER_HOSTNAME: "https://bad host/",
      DATABRICKS_WORKSPACE_IDS: "123,abc,0",
      AUDIT_SERVICES: "clusters,jobs' OR '1'='1",
      LOGS_INGESTION_ENDPOINT: "https://dce.example.com",
      EXPORT_START: "yesterday",
      EXPORT_SETTLE_DELAY: "10 minutes",
      AUDIT_INCLUDE_ACCOUNT_LEVEL: "maybe",
      EXPORT_CONTAINER: "Bad_Name",
    });
    const named = [
      "DATABRICKS_SERVER_HOSTNAME",
      "DATABRICKS_HTTP_PATH",
      "DATABRICKS_WORKSPACE_IDS",
      "AUDIT_SERVICES",
      "LOGS_INGESTION_RULE_ID",
      "EXPORT_START",
      "EXPORT_SETTLE_DELAY",
      "AUDIT_INCLUDE_ACCOUNT_LEVEL",
      "EXPORT_CONTAINER",
      "EXPORT_STORAGE_ACCOUNT_URL",
    ];
    for (const name of named)
      expect(
        problems.some((p) => p.includes(name)),
        name,
      ).toBe(true);
    expect(problems.find((p) => p.startsWith("AUDIT_SERVICES"))).toContain("jobs' OR '1'='1");
  });

  it.each(["2024-02-30T00:00:00+01:00", "2024-02-30T00:00:00Z", "2024-09-01T24:00:00-05:00"])("refuses the impossible EXPORT_START %j, naming it", (start) => {
    expect(problemsOf({ ...minimal, EXPORT_START: start })).toEqual([
      `EXPORT_START must be an ISO timestamp (e.g. '2024-09-01T00:00:00Z') or a duration back from now (e.g. 'P7D'); got '${start}'.`,
    ]);
  });

  it("accepts host:port, a PAT, a user-assigned identity and all three Logs Ingestion settings", () => {
    const config = loadConfig({
      ...minimal,
      DATABRICKS_SERVER_HOSTNAME: "127.0.0.1:8443",
      DATABRICKS_ACCESS_TOKEN: "dapi0123",
      AZURE_CLIENT_ID: "11111111-2222-3333-4444-555555555555",
      LOGS_INGESTION_ENDPOINT: "https://dce-abcd.westeurope-1.ingest.monitor.azure.com/",
      LOGS_INGESTION_RULE_ID: "dcr-0123456789abcdef0123456789abcdef",
      LOGS_INGESTION_STREAM: "Custom-DatabricksAudit",
      DATABRICKS_WORKSPACE_IDS: " 111, 222 ,111",
      AUDIT_SERVICES: "*",
      AUDIT_REDACT_PARAMS: "password=drop,commandText",
      EXPORT_START: "2024-09-01T00:00:00.000001Z",
    });
    expect(config.databricks).toMatchObject({ host: "127.0.0.1", port: 8443, accessToken: "dapi0123" });
    expect(config.logsIngestion?.endpoint).toBe("https://dce-abcd.westeurope-1.ingest.monitor.azure.com");
    expect(config.filter).toEqual({ workspaceIds: ["111", "222"], services: "all", includeAccountLevel: true });
    expect(config.redaction).toEqual([
      { key: "password", action: "drop" },
      { key: "commandText", action: "mask" },
    ]);
    expect(resolveStart(config.start, 0)).toBe(Date.parse("2024-09-01T00:00:00Z") * 1000 + 1);
  });

  it("refuses both storage settings at once and a partial Logs Ingestion configuration", () => {
    const problems = problemsOf({ ...minimal, EXPORT_STORAGE_CONNECTION_STRING: "AccountName=x;AccountKey=y", LOGS_INGESTION_STREAM: "Custom-X" });
    expect(problems.some((p) => p.includes("only one of EXPORT_STORAGE_ACCOUNT_URL"))).toBe(true);
    expect(problems.some((p) => p.includes("missing: LOGS_INGESTION_ENDPOINT, LOGS_INGESTION_RULE_ID"))).toBe(true);
  });

  it("does not need storage for the checks and the ad-hoc export", () => {
    expect(
      loadConfig({ DATABRICKS_SERVER_HOSTNAME: minimal.DATABRICKS_SERVER_HOSTNAME, DATABRICKS_HTTP_PATH: minimal.DATABRICKS_HTTP_PATH }, { storage: false })
        .storage,
    ).toBeUndefined();
  });
});

describe("parseServerHostname", () => {
  it.each([
    ["adb-1.2.azuredatabricks.net", { host: "adb-1.2.azuredatabricks.net", port: 443 }],
    ["https://adb-1.2.azuredatabricks.net/", { host: "adb-1.2.azuredatabricks.net", port: 443 }],
    ["127.0.0.1:4443", { host: "127.0.0.1", port: 4443 }],
    ["host:0", undefined],
    ["a b", undefined],
    ["host/path", undefined],
  ])("%s", (input, expected) => {
    expect(parseServerHostname(input)).toEqual(expected);
  });
});

describe("the time budget and the Functions host's timeout", () => {
  const withHost = (settings: Record<string, string>, functionTimeout: string) => {
    try {
      loadConfig({ ...minimal, ...settings }, { storage: true, functionTimeout });
      return [];
    } catch (error) {
      return [...(error as ConfigError).problems];
    }
  };

  it("accepts the default budget inside host.json's 30 minutes, and any budget without a host limit", () => {
    expect(withHost({}, "00:30:00")).toEqual([]);
    expect(withHost({ EXPORT_TIME_BUDGET: "PT28M" }, "00:30:00")).toEqual([]);
    expect(withHost({ EXPORT_TIME_BUDGET: "PT5H" }, "-1")).toEqual([]);
    expect(loadConfig(minimal).queryTimeoutMs).toBe(10 * 60_000);
  });

  it("refuses a budget above the host's functionTimeout (or without room to finish), naming both and what would fit", () => {
    const [problem] = withHost({ EXPORT_TIME_BUDGET: "PT45M" }, "00:30:00");
    expect(problem).toMatch(/EXPORT_TIME_BUDGET \('PT45M'\) must leave PT2M .*functionTimeout \(00:30:00.*set it to at most PT28M/);
    expect(withHost({ EXPORT_TIME_BUDGET: "PT29M" }, "00:30:00")).toHaveLength(1);
    // The app setting that overrides host.json wins.
    expect(withHost({ EXPORT_TIME_BUDGET: "PT45M", AzureFunctionsJobHost__functionTimeout: "01:00:00" }, "00:30:00")).toEqual([]);
  });

  it("names a functionTimeout it cannot read, and an invalid EXPORT_QUERY_TIMEOUT", () => {
    expect(withHost({}, "half an hour")[0]).toMatch(/functionTimeout must look like '00:30:00'/);
    expect(withHost({ EXPORT_QUERY_TIMEOUT: "5s" }, "00:30:00")[0]).toMatch(/EXPORT_QUERY_TIMEOUT must be an ISO-8601 duration/);
  });
});

describe("DATABRICKS_SOURCES", () => {
  const source = { name: "westeurope", serverHostname: "adb-1234567890123456.7.azuredatabricks.net", httpPath: "/sql/1.0/warehouses/abcdef1234567890" };
  const withSources = (sources: unknown, extra: Record<string, string> = {}) =>
    problemsOf({ EXPORT_STORAGE_ACCOUNT_URL: minimal.EXPORT_STORAGE_ACCOUNT_URL, DATABRICKS_SOURCES: JSON.stringify(sources), ...extra });

  it("takes one source as the warehouse, alone or next to the same single-source settings", () => {
    expect(withSources([source])).toEqual([]);
    expect(withSources([source], { DATABRICKS_SERVER_HOSTNAME: source.serverHostname, DATABRICKS_HTTP_PATH: source.httpPath })).toEqual([]);
    const config = loadConfig({ EXPORT_STORAGE_ACCOUNT_URL: minimal.EXPORT_STORAGE_ACCOUNT_URL, DATABRICKS_SOURCES: JSON.stringify([source]) });
    expect(config.databricks).toMatchObject({ host: "adb-1234567890123456.7.azuredatabricks.net", httpPath: source.httpPath });
  });

  it("names the source and the field of each problem", () => {
    const problems = withSources([
      { ...source, httpPath: "sql" },
      { name: "9bad", serverHostname: "https://x y", httpPath: "/p", workspaceIds: [12] },
    ]);
    expect(problems.join("\n")).toMatch(/source 'westeurope': httpPath must be a path/);
    expect(problems.join("\n")).toMatch(/source '9bad': name must be/);
    expect(problems.join("\n")).toMatch(/source '9bad': serverHostname must be/);
    expect(problems.join("\n")).toMatch(/source '9bad': workspaceIds must be a list of numeric workspace IDs/);
    expect(withSources("nope")[0]).toMatch(/DATABRICKS_SOURCES must be a non-empty JSON array/);
    expect(withSources([source], { DATABRICKS_HTTP_PATH: "/sql/1.0/warehouses/other" })[0]).toMatch(
      /DATABRICKS_HTTP_PATH .* and the first source of DATABRICKS_SOURCES .* disagree/,
    );
  });

  it("takes several warehouses, each with its own name, workspaces and token setting", () => {
    const eastus = { name: "eastus", serverHostname: "adb-2.3.azuredatabricks.net:8443", httpPath: "/sql/1.0/warehouses/east", workspaceIds: ["42"] };
    const config = loadConfig({
      EXPORT_STORAGE_ACCOUNT_URL: minimal.EXPORT_STORAGE_ACCOUNT_URL,
      DATABRICKS_WORKSPACE_IDS: "7,8",
      DATABRICKS_SOURCES: JSON.stringify([source, { ...eastus, accessTokenSetting: "EASTUS_PAT" }]),
      EASTUS_PAT: "dapi-east",
    });
    expect(config.sources.map((s) => s.name)).toEqual(["westeurope", "eastus"]);
    expect(config.sources[0]!.filter.workspaceIds).toEqual(["7", "8"]);
    expect(config.sources[0]!.databricks.accessToken).toBeUndefined();
    expect(config.sources[1]).toMatchObject({
      databricks: { host: "adb-2.3.azuredatabricks.net", port: 8443, httpPath: "/sql/1.0/warehouses/east", accessToken: "dapi-east" },
      filter: { workspaceIds: ["42"], includeAccountLevel: true },
    });
    expect(config.databricks).toBe(config.sources[0]!.databricks);
  });

  it("takes EXPORT_SOURCE_CONCURRENCY, or one source at a time on an instance under 1.5 GB and four otherwise", () => {
    expect(loadConfig({ ...minimal, EXPORT_SOURCE_CONCURRENCY: "2" }).sourceConcurrency).toBe(2);
    expect(loadConfig(minimal).sourceConcurrency).toBeUndefined();
    expect(problemsOf({ ...minimal, EXPORT_SOURCE_CONCURRENCY: "0" })[0]).toMatch(
      /EXPORT_SOURCE_CONCURRENCY must be a whole number of sources exported at once, from 1 to 16; got '0'/,
    );
    expect(sourceConcurrencyFor(512 * 1024 ** 2)).toBe(1);
    expect(sourceConcurrencyFor(2048 * 1024 ** 2)).toBe(4);
    expect(sourceConcurrencyFor(undefined)).toBe(4);
    expect(sourceConcurrencyFor(2 ** 64)).toBe(4);
  });

  it("keeps the single-source settings as one source named default", () => {
    const config = loadConfig(minimal);
    expect(config.sources).toHaveLength(1);
    expect(config.sources[0]).toMatchObject({ name: "default", databricks: config.databricks, filter: config.filter });
  });

  it("refuses one shared personal access token, repeated names, unknown fields and a token setting that is not set", () => {
    const two = [source, { ...source, name: "eastus" }];
    expect(withSources(two, { DATABRICKS_ACCESS_TOKEN: "dapi-x" }).join("\n")).toMatch(/DATABRICKS_ACCESS_TOKEN is one workspace's personal access token/);
    expect(withSources([source, source]).join("\n")).toMatch(/each source needs its own name; repeated: westeurope/);
    expect(withSources([{ ...source, region: "x" }]).join("\n")).toMatch(/source 'westeurope': unknown field\(s\) region/);
    expect(withSources([{ ...source, accessTokenSetting: "MISSING_PAT" }]).join("\n")).toMatch(
      /source 'westeurope': accessTokenSetting names the app setting MISSING_PAT, which is not set/,
    );
    expect(withSources([source, 5]).join("\n")).toMatch(/DATABRICKS_SOURCES\[1\] must be an object/);
    // The list's own problems, not also "DATABRICKS_SERVER_HOSTNAME is required".
    expect(withSources([{ ...source, httpPath: "x" }])).toEqual([expect.stringMatching(/source 'westeurope': httpPath must be a path/)]);
  });
});

describe("DATABRICKS_CLOUD_FETCH", () => {
  const MB = 1024 ** 2;

  it("takes auto (or nothing), true and false, and names the setting and its values otherwise", () => {
    expect(loadConfig(minimal).cloudFetch).toBeUndefined();
    expect(loadConfig({ ...minimal, DATABRICKS_CLOUD_FETCH: "auto" }).cloudFetch).toBeUndefined();
    expect(loadConfig({ ...minimal, DATABRICKS_CLOUD_FETCH: "true" }).cloudFetch).toBe(true);
    expect(loadConfig({ ...minimal, DATABRICKS_CLOUD_FETCH: "false" }).cloudFetch).toBe(false);
    for (const bad of ["yes", "TRUE", "1", "on"])
      expect(problemsOf({ ...minimal, DATABRICKS_CLOUD_FETCH: bad })).toEqual([
        `DATABRICKS_CLOUD_FETCH must be auto (CloudFetch links on instances of 2,048 MB or more, inline pages below), true or false; got '${bad}'.`,
      ]);
  });

  it("on auto, reads inline pages on a 512 MB instance and CloudFetch links from 2,048 MB (the templates' default)", () => {
    expect(cloudFetchFor(undefined, 512 * MB)).toBe(false);
    expect(cloudFetchFor(undefined, 1536 * MB - 1)).toBe(false);
    // A cgroup's limit can sit a little under the instance's nominal size.
    expect(cloudFetchFor(undefined, 2000 * MB)).toBe(true);
    expect(cloudFetchFor(undefined, 2048 * MB)).toBe(true);
    expect(cloudFetchFor(undefined, 4096 * MB)).toBe(true);
    // No memory limit (a workstation, a dedicated plan): the driver's default.
    expect(cloudFetchFor(undefined, undefined)).toBe(true);
    expect(cloudFetchFor(undefined, 0)).toBe(true);
  });

  it("is overridden by true or false whatever the memory", () => {
    expect(cloudFetchFor(true, 512 * MB)).toBe(true);
    expect(cloudFetchFor(false, 4096 * MB)).toBe(false);
    expect(cloudFetchFor(false, undefined)).toBe(false);
  });
});

describe("EXPORT_STATE_CONTAINER", () => {
  it("is the archive's container when unset (deployments from before the write-once archive), else its own", () => {
    expect(loadConfig({ ...minimal, EXPORT_CONTAINER: "audit-archive" }).storage).toMatchObject({
      container: "audit-archive",
      stateContainer: "audit-archive",
    });
    expect(loadConfig({ ...minimal, EXPORT_STATE_CONTAINER: "databricks-audit-state" }).storage).toMatchObject({
      container: "databricks-audit",
      stateContainer: "databricks-audit-state",
    });
  });

  it("names the setting and what a container name may be", () => {
    expect(problemsOf({ ...minimal, EXPORT_STATE_CONTAINER: "State_Blobs" })).toEqual([
      "EXPORT_STATE_CONTAINER must be a valid container name (3-63 lowercase letters, digits and single dashes), or unset to keep the state in EXPORT_CONTAINER; got 'State_Blobs'.",
    ]);
  });
});
