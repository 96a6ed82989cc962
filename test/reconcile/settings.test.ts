import { describe, expect, it } from "vitest";
import { DEFAULT_LOG_ANALYTICS_QUERY_ENDPOINT, loadConfig } from "../../shared/config";
import { ConfigError } from "../../shared/errors";

// LOG_ANALYTICS_WORKSPACE_ID and LOG_ANALYTICS_QUERY_ENDPOINT: what reconciliation queries.

const BASE = {
  DATABRICKS_SERVER_HOSTNAME: "adb-1.1.azuredatabricks.net",
  DATABRICKS_HTTP_PATH: "/sql/1.0/warehouses/abc",
  EXPORT_STORAGE_ACCOUNT_URL: "https://audit.blob.core.windows.net",
};
const WORKSPACE = "0A1B2C3D-0000-4000-8000-00000000ABCD";

function problems(settings: Record<string, string>): string[] {
  try {
    loadConfig({ ...BASE, ...settings });
    return [];
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    return [...error.problems];
  }
}

describe("Log Analytics query settings", () => {
  it("are off when unset, and default the endpoint to the public cloud's Logs Query API", () => {
    expect(loadConfig(BASE).logAnalyticsQuery).toBeUndefined();
    expect(loadConfig({ ...BASE, LOG_ANALYTICS_WORKSPACE_ID: WORKSPACE }).logAnalyticsQuery).toEqual({
      workspaceId: WORKSPACE.toLowerCase(),
      endpoint: DEFAULT_LOG_ANALYTICS_QUERY_ENDPOINT,
    });
    expect(
      loadConfig({ ...BASE, LOG_ANALYTICS_WORKSPACE_ID: WORKSPACE, LOG_ANALYTICS_QUERY_ENDPOINT: "https://api.loganalytics.us/v1/" }).logAnalyticsQuery
        ?.endpoint,
    ).toBe("https://api.loganalytics.us/v1");
  });

  it.each([
    [
      { LOG_ANALYTICS_WORKSPACE_ID: "/subscriptions/x/resourceGroups/rg/providers/Microsoft.OperationalInsights/workspaces/log" },
      /LOG_ANALYTICS_WORKSPACE_ID must be .*GUID.*not its resource ID/,
    ],
    [
      { LOG_ANALYTICS_WORKSPACE_ID: WORKSPACE, LOG_ANALYTICS_QUERY_ENDPOINT: "http://api.loganalytics.io/v1" },
      /LOG_ANALYTICS_QUERY_ENDPOINT must be the https base URL/,
    ],
    [{ LOG_ANALYTICS_WORKSPACE_ID: WORKSPACE, LOG_ANALYTICS_QUERY_ENDPOINT: "https://api.loganalytics.io/v1?x=1" }, /LOG_ANALYTICS_QUERY_ENDPOINT/],
    [{ LOG_ANALYTICS_QUERY_ENDPOINT: "https://api.loganalytics.io/v1" }, /LOG_ANALYTICS_QUERY_ENDPOINT is set but LOG_ANALYTICS_WORKSPACE_ID is not/],
  ])("refuses %j, naming the setting", (settings, message) => {
    expect(problems(settings).join("\n")).toMatch(message);
  });
});
