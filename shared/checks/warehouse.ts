import type { TokenCredential } from "@azure/identity";
import { AUDIT_TABLE, SCHEMA_PROBE_SQL } from "../auditQueries";
import type { DatabricksSettings } from "../config";
import { Warehouse, warehouseErrorKind } from "../databricks";
import { describeError, ensureError } from "../errors";
import { SYSTEM_TABLE_GRANTS_REMEDIATION } from "../remediation";
import { auditColumnsCheck, slowQuery, workspaceFilterCheck } from "./auditTable";
import { sqlTextVisibilityCheck } from "./sqlText";
import { skipped, type CheckName, type CheckResult } from "./result";
import { SECTION_SETTINGS, type Section } from "./settings";
import type { CheckedSource, SourceFields } from "./sources";
import { seconds, timed, type Budget } from "./timing";

const CONNECT_TIMEOUT_MS = 20_000;

const STARTING_REMEDIATION =
  "Retry in a few minutes: a stopped SQL warehouse starts on the first query and can take several minutes. " +
  "If it keeps happening, check the warehouse's state in Databricks (SQL Warehouses), its auto-stop setting, or use a serverless warehouse (starts in seconds).";

/** warehouse_connectivity, system_table_access, audit_table_columns, sql_text_visibility and workspace_filter of one source, on one session. */
export async function warehouseChecks(
  source: Required<CheckedSource>,
  getCredential: () => TokenCredential,
  budget: Budget,
  context: { lookbackHours: number; nowMs: number; broken: Set<Section>; principal?: string },
  record: (result: CheckResult) => CheckResult,
): Promise<void> {
  const settings = source.config.databricks;
  const target = `https://${settings.serverHostname}${settings.httpPath}`;
  const failure = (name: CheckName, error: unknown): CheckResult => warehouseFailure(name, error, settings, source.fields, target, context.principal);
  const connectMs = budget.stepMs(CONNECT_TIMEOUT_MS);
  const connected = await timed(
    () => Warehouse.connect(settings, settings.accessToken ? undefined : getCredential(), { retryMaxAttempts: 2, socketTimeoutMs: Math.max(connectMs, 5_000) }),
    connectMs,
    (late) => void late.close(),
  );
  if (connected.kind === "timeout") {
    record({
      name: "warehouse_connectivity",
      status: "WARN",
      detail: `No session from ${target} within ${seconds(connectMs)}: the warehouse may be starting, or the network drops the connection.`,
      remediation: `${STARTING_REMEDIATION} If it persists, check that this host can reach ${settings.serverHostname} on port ${settings.port} (private endpoint, firewall, IP access list).`,
    });
    return;
  }
  if (connected.kind === "failed") {
    record(failure("warehouse_connectivity", connected.error));
    return;
  }
  const warehouse = connected.value;
  try {
    const selectMs = budget.stepMs(Infinity);
    const probe = await timed(() => warehouse.all({ sql: "SELECT 1 AS ok", params: {} }), selectMs);
    if (probe.kind === "timeout") {
      record({
        name: "warehouse_connectivity",
        status: "WARN",
        detail: `The warehouse is starting: a session opened at ${target}, but SELECT 1 was still pending after ${seconds(selectMs)}. Retry in a few minutes.`,
        remediation: STARTING_REMEDIATION,
      });
      return;
    }
    if (probe.kind === "failed") {
      record(failure("warehouse_connectivity", probe.error));
      return;
    }
    record({ name: "warehouse_connectivity", status: "PASS", detail: `Session opened and SELECT 1 answered by ${target}.`, remediation: "" });

    const schemaMs = budget.stepMs(Infinity);
    const schema = await timed(() => warehouse.columns(SCHEMA_PROBE_SQL), schemaMs);
    if (schema.kind === "timeout") {
      record(slowQuery("system_table_access", schemaMs));
      return;
    }
    if (schema.kind === "failed") {
      record(failure("system_table_access", schema.error));
      return;
    }
    record({ name: "system_table_access", status: "PASS", detail: `${AUDIT_TABLE} is readable by this identity.`, remediation: "" });
    record(auditColumnsCheck(schema.value.map((c) => c.name)));
    record(await sqlTextVisibilityCheck(warehouse, context.lookbackHours, context.nowMs, budget, context.principal));

    const badFilter = (["workspaces", "lookback"] as const).filter((s) => context.broken.has(s));
    if (badFilter.length > 0) {
      record(skipped("workspace_filter", "configuration", "FAIL", badFilter.flatMap((s) => SECTION_SETTINGS[s]).join(", ")));
      return;
    }
    record(await workspaceFilterCheck(warehouse, source.config.filter.workspaceIds, source.fields, context.lookbackHours, context.nowMs, budget));
  } finally {
    await timed(() => warehouse.close(), Math.max(100, Math.floor(Math.min(2_000, budget.leftMs()))));
  }
}

function warehouseFailure(
  name: CheckName,
  error: unknown,
  settings: DatabricksSettings,
  fields: SourceFields,
  target: string,
  principal?: string,
): CheckResult {
  const tokenFor = principal ? ` (the Entra ID token used here is for ${principal})` : "";
  const detail = describeError(error);
  const text = `${ensureError(error).message} ${(error as { response?: { errorMessage?: string } }).response?.errorMessage ?? ""}`;
  switch (warehouseErrorKind(error)) {
    case "auth":
      return {
        name,
        status: "FAIL",
        detail: `The SQL warehouse at ${target} refused the credentials (${detail}).`,
        remediation: settings.accessToken
          ? `The personal access token (${fields.accessToken}) is invalid, expired or from another workspace: create a new one (User settings > Developer > Access tokens) and update the setting (a Key Vault reference in Azure).`
          : `Add the app's managed identity${tokenFor} to the workspace as a service principal (Settings > Identity and access > Service principals, by its application ID) ` +
            "with the 'Databricks SQL access' entitlement and CAN USE on the warehouse. In a sovereign cloud, set DATABRICKS_SCOPE / --scope to that cloud's Azure Databricks scope.",
      };
    case "permission":
      if (name === "system_table_access") {
        return {
          name,
          status: "FAIL",
          detail: `INSUFFICIENT_PERMISSIONS: the identity cannot read ${AUDIT_TABLE} (${detail}).`,
          remediation: `${SYSTEM_TABLE_GRANTS_REMEDIATION}${tokenFor}.`,
        };
      }
      return {
        name,
        status: "FAIL",
        detail: `The identity may not use the SQL warehouse at ${target} (${detail}).`,
        remediation:
          "A workspace admin or the warehouse's owner must give the identity CAN USE on the SQL warehouse (SQL Warehouses > the warehouse > Permissions).",
      };
    case "unreachable":
      return {
        name,
        status: "FAIL",
        detail: `Cannot reach the SQL warehouse at ${target} (${detail}).`,
        remediation:
          `Check ${fields.hostname} ('${settings.serverHostname}': the warehouse's Connection details) and that this host can reach it on port ${settings.port} ` +
          "(DNS, private endpoint, firewall, the workspace's IP access list).",
      };
    case "sql":
      if (name === "system_table_access" && /TABLE_OR_VIEW_NOT_FOUND|SCHEMA_NOT_FOUND|CATALOG_NOT_FOUND|not found/i.test(text)) {
        return {
          name,
          status: "FAIL",
          detail: `${AUDIT_TABLE} does not exist for this warehouse (${detail}).`,
          remediation:
            "The workspace must be attached to a Unity Catalog metastore, and the 'access' system schema must be enabled for it by an account admin ('databricks system-schemas enable <metastore-id> access').",
        };
      }
      return {
        name,
        status: "FAIL",
        detail: `The SQL warehouse at ${target} rejected the query (${detail}).`,
        remediation: `Check that ${fields.httpPathSetting} points at a Databricks SQL warehouse ('/sql/1.0/warehouses/<id>').`,
      };
    default: {
      const status = (error as { statusCode?: number }).statusCode;
      return {
        name,
        status: "FAIL",
        detail: `The SQL warehouse call to ${target} failed (${detail}).`,
        remediation:
          status === 404
            ? `No warehouse at that HTTP path: check ${fields.httpPath} ('${settings.httpPath}') against the warehouse's Connection details.`
            : `Check ${fields.hostnameAndPath} against the warehouse's Connection details, and that the warehouse exists and is not deleted.`,
      };
    }
  }
}
