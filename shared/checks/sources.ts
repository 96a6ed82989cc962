import { SINGLE_SOURCE_NAME, type AppConfig, type Settings, type SourceConfig } from "../config";

/**
 * The sources (SQL warehouses, one per region) the checks report on, and how a remediation
 * names each one's settings: the single-source settings and the CLI's flags for the one source
 * they describe, the fields of its DATABRICKS_SOURCES entry for a listed one.
 */

/** Where an admin changes a source's settings; each is part of a sentence in a remediation. */
export interface SourceFields {
  hostname: string;
  httpPath: string;
  /** The HTTP path's setting alone, without the CLI flag. */
  httpPathSetting: string;
  hostnameAndPath: string;
  accessToken: string;
  workspaceIds: string;
  /** The workspace filter's setting alone, without the CLI flag. */
  workspaceIdsSetting: string;
}

const SINGLE_SOURCE_FIELDS: SourceFields = {
  hostname: "DATABRICKS_SERVER_HOSTNAME / --server-hostname",
  httpPath: "DATABRICKS_HTTP_PATH / --http-path",
  httpPathSetting: "DATABRICKS_HTTP_PATH",
  hostnameAndPath: "DATABRICKS_SERVER_HOSTNAME and DATABRICKS_HTTP_PATH",
  accessToken: "DATABRICKS_ACCESS_TOKEN / --access-token",
  workspaceIds: "DATABRICKS_WORKSPACE_IDS / --workspace-id",
  workspaceIdsSetting: "DATABRICKS_WORKSPACE_IDS",
};

/** A source the checks report on. */
export interface CheckedSource {
  name: string;
  /** Absent when its settings are invalid: its checks are then skipped. */
  config?: SourceConfig;
  fields: SourceFields;
}

/** What a DATABRICKS_SOURCES entry declares, read leniently (loadConfig validates it). */
interface ListedSource {
  name: string;
  accessTokenSetting?: string;
  ownWorkspaceIds: boolean;
}

/**
 * The entries of DATABRICKS_SOURCES by name, in their order, as far as they can be read: a
 * source whose entry has a problem is still named in the report (its checks skipped), and its
 * token's setting is still known, so that the token can be kept out of the output.
 */
export function listedSources(settings: Settings): ListedSource[] | undefined {
  const text = settings.DATABRICKS_SOURCES?.trim();
  if (!text) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (!Array.isArray(parsed)) return undefined;
  const listed = new Map<string, ListedSource>();
  for (const entry of parsed as unknown[]) {
    const source = (typeof entry === "object" && entry !== null ? entry : {}) as Record<string, unknown>;
    if (typeof source.name !== "string" || !source.name || listed.has(source.name)) continue;
    listed.set(source.name, {
      name: source.name,
      ...(typeof source.accessTokenSetting === "string" ? { accessTokenSetting: source.accessTokenSetting } : {}),
      ownWorkspaceIds: source.workspaceIds !== undefined,
    });
  }
  return listed.size > 0 ? [...listed.values()] : undefined;
}

/**
 * Every source to report on, in the configured order: DATABRICKS_SOURCES' entries (those whose
 * entry is invalid without a config), else the one the single-source settings describe.
 */
export function sourcesToCheck(settings: Settings, config: AppConfig | undefined): CheckedSource[] {
  const listed = listedSources(settings);
  const configured = new Map((config?.sources ?? []).map((source) => [source.name, source]));
  if (!listed) {
    const only = config?.sources[0];
    return [{ name: only?.name ?? SINGLE_SOURCE_NAME, ...(only ? { config: only } : {}), fields: SINGLE_SOURCE_FIELDS }];
  }
  return listed.map((entry) => {
    const source = configured.get(entry.name);
    return { name: entry.name, ...(source ? { config: source } : {}), fields: listedFields(entry) };
  });
}

function listedFields(entry: ListedSource): SourceFields {
  const of = `of source '${entry.name}' in DATABRICKS_SOURCES`;
  const workspaceIds = entry.ownWorkspaceIds ? `workspaceIds ${of}` : "DATABRICKS_WORKSPACE_IDS";
  return {
    hostname: `serverHostname ${of}`,
    httpPath: `httpPath ${of}`,
    httpPathSetting: `httpPath ${of}`,
    hostnameAndPath: `serverHostname and httpPath ${of}`,
    accessToken: entry.accessTokenSetting ? `${entry.accessTokenSetting} (the accessTokenSetting ${of})` : "DATABRICKS_ACCESS_TOKEN",
    workspaceIds,
    workspaceIdsSetting: workspaceIds,
  };
}

/**
 * Whether results must say which source they are about: not for the one source the
 * single-source settings describe (its report reads as it always did).
 */
export function namesSources(names: readonly string[]): boolean {
  return names.length > 1 || names.some((name) => name !== SINGLE_SOURCE_NAME);
}

/** The values of the settings DATABRICKS_SOURCES names as its sources' tokens: secrets, never output. */
export function sourceTokens(settings: Settings): string[] {
  return (listedSources(settings) ?? []).flatMap((entry) => {
    const token = entry.accessTokenSetting ? settings[entry.accessTokenSetting] : undefined;
    return token ? [token] : [];
  });
}
