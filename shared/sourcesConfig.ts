import type { AuditFilter, DatabricksSettings } from "./config";

/**
 * The SQL warehouses a run reads, one per region: DATABRICKS_SOURCES, or the single-source
 * settings as one source named "default". Validation names the source and the field.
 */

/** One SQL warehouse to read (one per region): DATABRICKS_SOURCES' entries, or the single-source settings as "default". */
export interface SourceConfig {
  /** Its name in the state, the run summary, the checks and the alerts. */
  name: string;
  databricks: DatabricksSettings;
  filter: AuditFilter;
}

/** The name of the one source the single-source settings (DATABRICKS_SERVER_HOSTNAME, ...) describe. */
export const SINGLE_SOURCE_NAME = "default";

const HOSTNAME = /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;
export const WORKSPACE_ID = /^[1-9][0-9]{0,19}$/;

export function parseServerHostname(value: string): { host: string; port: number } | undefined {
  const text = value.replace(/^https:\/\//i, "").replace(/\/+$/, "");
  const match = /^([^:/]+)(?::(\d{1,5}))?$/.exec(text);
  if (!match?.[1] || !HOSTNAME.test(match[1])) return undefined;
  const port = match[2] === undefined ? 443 : Number(match[2]);
  if (port < 1 || port > 65535) return undefined;
  return { host: match[1], port };
}

/** Sources exported at once on an instance with the memory for it. */
export const SOURCES_AT_ONCE = 4;

/**
 * Sources exported at once when EXPORT_SOURCE_CONCURRENCY is not set. Each source running
 * adds its reader thread and its batches (about 90 MB at peak, `npm run bench:regions`): on an
 * instance under 1.5 GB (Flex Consumption's 512 MB) one at a time, else four.
 */
export function sourceConcurrencyFor(memoryLimitBytes: number | undefined): number {
  return memoryLimitBytes !== undefined && memoryLimitBytes > 0 && memoryLimitBytes < 1.5 * 1024 ** 3 ? 1 : SOURCES_AT_ONCE;
}

export interface SourceSettings {
  name: string;
  serverHostname: string;
  httpPath: string;
  workspaceIds?: string[];
  /** The name of the app setting holding this warehouse's personal access token (a Key Vault reference in Azure); else managed identity. */
  accessTokenSetting?: string;
}

const SETTING_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,127}$/;

/**
 * The sources a run reads. Without DATABRICKS_SOURCES: one, "default", from the single-source
 * settings. With it: one per entry, each with its own workspace IDs (DATABRICKS_WORKSPACE_IDS
 * otherwise) and its own token setting (a personal access token belongs to one workspace).
 */
export function configureSources(
  listed: SourceSettings[] | undefined,
  first: DatabricksSettings,
  filter: AuditFilter,
  read: (name: string) => string | undefined,
  problems: string[],
): SourceConfig[] {
  if (!listed) return [{ name: SINGLE_SOURCE_NAME, databricks: first, filter }];
  if (listed.length > 1 && first.accessToken !== undefined) {
    problems.push(
      `DATABRICKS_ACCESS_TOKEN is one workspace's personal access token, and DATABRICKS_SOURCES lists ${listed.length} warehouses: remove it and use the app's managed identity (granted in each region's workspace), or give each source its own with "accessTokenSetting" (the name of an app setting holding that workspace's token).`,
    );
  }
  return listed.map((source, index) => {
    const common: DatabricksSettings = { ...first };
    delete common.accessToken;
    let accessToken = index === 0 ? first.accessToken : undefined;
    if (source.accessTokenSetting !== undefined) {
      accessToken = read(source.accessTokenSetting);
      if (accessToken === undefined) {
        problems.push(
          `DATABRICKS_SOURCES source '${source.name}': accessTokenSetting names the app setting ${source.accessTokenSetting}, which is not set; set it to that workspace's personal access token (a Key Vault reference in Azure), or remove accessTokenSetting to use the managed identity.`,
        );
      }
    }
    return {
      name: source.name,
      databricks: {
        ...common,
        serverHostname: source.serverHostname,
        ...parseServerHostname(source.serverHostname)!,
        httpPath: source.httpPath,
        ...(accessToken !== undefined ? { accessToken } : {}),
      },
      filter: source.workspaceIds !== undefined ? { ...filter, workspaceIds: [...new Set(source.workspaceIds)] } : filter,
    };
  });
}

const SOURCE_NAME = /^[A-Za-z][A-Za-z0-9_-]{0,39}$/;
/** Azure Databricks regions an account could span, with room to spare. */
export const MAX_SOURCES = 16;

/**
 * DATABRICKS_SOURCES: a JSON array of the SQL warehouses to read, one per region
 * (`[{"name": "westeurope", "serverHostname": "...", "httpPath": "...", "workspaceIds": ["..."]}]`).
 * Each problem names the source and the field.
 */
export function readSources(value: string | undefined, problems: string[]): SourceSettings[] | undefined {
  if (value === undefined) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(value);
  } catch {
    problems.push(
      `DATABRICKS_SOURCES must be a JSON array such as '[{"name": "westeurope", "serverHostname": "adb-1.7.azuredatabricks.net", "httpPath": "/sql/1.0/warehouses/abc"}]'; it is not valid JSON.`,
    );
    return undefined;
  }
  if (!Array.isArray(parsed) || parsed.length === 0) {
    problems.push("DATABRICKS_SOURCES must be a non-empty JSON array of {name, serverHostname, httpPath, workspaceIds?} objects, one per SQL warehouse.");
    return undefined;
  }
  const sources: SourceSettings[] = [];
  const before = problems.length;
  parsed.forEach((entry: unknown, index) => {
    if (typeof entry !== "object" || entry === null || Array.isArray(entry)) {
      problems.push(`DATABRICKS_SOURCES[${index}] must be an object {name, serverHostname, httpPath, workspaceIds?, accessTokenSetting?}.`);
      return;
    }
    const source = entry as Record<string, unknown>;
    const label = typeof source.name === "string" && source.name ? `DATABRICKS_SOURCES source '${source.name}'` : `DATABRICKS_SOURCES[${index}]`;
    if (typeof source.name !== "string" || !SOURCE_NAME.test(source.name))
      problems.push(`${label}: name must be 1-40 letters, digits, '-' or '_', starting with a letter (e.g. 'westeurope').`);
    if (typeof source.serverHostname !== "string" || !parseServerHostname(source.serverHostname)) {
      problems.push(
        `${label}: serverHostname must be the warehouse's server hostname, optionally with ':port', e.g. 'adb-1234567890123456.7.azuredatabricks.net'.`,
      );
    }
    if (typeof source.httpPath !== "string" || !/^\/[A-Za-z0-9._~/-]+$/.test(source.httpPath))
      problems.push(`${label}: httpPath must be a path such as '/sql/1.0/warehouses/1234567890abcdef'.`);
    const ids = source.workspaceIds;
    if (ids !== undefined && (!Array.isArray(ids) || !ids.every((id) => typeof id === "string" && WORKSPACE_ID.test(id)))) {
      problems.push(`${label}: workspaceIds must be a list of numeric workspace IDs as strings, e.g. ["1234567890123456"].`);
    }
    const tokenSetting = source.accessTokenSetting;
    if (tokenSetting !== undefined && (typeof tokenSetting !== "string" || !SETTING_NAME.test(tokenSetting)))
      problems.push(`${label}: accessTokenSetting must be the name of an app setting (letters, digits, '_'), e.g. 'DATABRICKS_ACCESS_TOKEN_EASTUS'.`);
    const known = new Set(["name", "serverHostname", "httpPath", "workspaceIds", "accessTokenSetting"]);
    const unknown = Object.keys(source).filter((key) => !known.has(key));
    if (unknown.length > 0)
      problems.push(
        `${label}: unknown field(s) ${unknown.join(", ")}; a source has name, serverHostname, httpPath, workspaceIds (optional) and accessTokenSetting (optional).`,
      );
    sources.push(source as unknown as SourceSettings);
  });
  const names = sources.map((s) => s.name);
  const repeated = names.filter((name, i) => names.indexOf(name) !== i);
  if (repeated.length > 0) problems.push(`DATABRICKS_SOURCES: each source needs its own name; repeated: ${[...new Set(repeated)].join(", ")}.`);
  if (sources.length > MAX_SOURCES)
    problems.push(`DATABRICKS_SOURCES lists ${sources.length} warehouses; at most ${MAX_SOURCES} (one per region) are supported.`);
  return problems.length === before ? sources : undefined;
}

/** A single-source setting next to DATABRICKS_SOURCES: absent, or the same as the first source's. */
export function agreeing(name: string, given: string | undefined, fromSources: string, problems: string[]): string {
  if (given !== undefined && given !== fromSources) {
    problems.push(`${name} ('${given}') and the first source of DATABRICKS_SOURCES ('${fromSources}') disagree: set one of them, or make them the same.`);
  }
  return fromSources;
}
