import { readFileSync } from "node:fs";
import { join, relative } from "node:path";
import { describe, expect, it } from "vitest";
import { DATABRICKS_AUDIT_STREAM_COLUMNS } from "../../sandbox/logsIngestion";
import type { AuditEvent } from "../../shared/auditEvent";
import { SOLUTION_ONLY_COLUMNS, toSentinelRecord } from "../../shared/sentinelRecord";
import { readTemplate } from "./support/bicep";
import { readTables, type TableColumn } from "./support/kusto";

// infra/tables.json is the one declaration of the Log Analytics tables: Bicep builds the tables and
// the DCR's streams from it (test/infra/bicep.test.ts), and here the records the app sends and the
// local Logs Ingestion stand-in's stream are held to it. Log Analytics drops a column the table does
// not have without a word, so a column added in the code and not in the table must fail here.

const repo = join(__dirname, "..", "..");
const tables = readTables(repo);
const audit = tables.DatabricksAudit_CL!;

/**
 * The Sentinel Databricks solution's own DatabricksAudit_CL schema (test/infra/fixtures, copied from
 * Azure-Sentinel with its path and commit). A workspace with the solution installed already has that
 * table, and Log Analytics refuses to change a column's type: every column it declares must be ours
 * with the same type. Our extra columns are fine (a table takes new columns).
 */
interface SolutionSchema {
  source: { repository: string; path: string; commit: string };
  table: string;
  columns: TableColumn[];
}
const solution = JSON.parse(readFileSync(join(__dirname, "fixtures", "sentinel-databricks-table.json"), "utf8")) as SolutionSchema;

/** Each column of the solution's table that ours lacks or declares with another type. */
function solutionConflicts(ours: readonly TableColumn[], theirs: readonly TableColumn[]): string[] {
  const declared = new Map(ours.map((column) => [column.name, column.type.toLowerCase()]));
  const problems: string[] = [];
  for (const column of theirs) {
    const type = declared.get(column.name);
    if (type === undefined) problems.push(`${column.name} (${column.type}) is missing`);
    else if (type !== column.type.toLowerCase()) problems.push(`${column.name} is ${type}, the solution's is ${column.type}`);
  }
  return problems;
}

/** Every column the record has and the table lacks, the other way round, or with a value of another type. */
function columnMismatches(record: Record<string, unknown>, columns: readonly TableColumn[]): string[] {
  const problems: string[] = [];
  const declared = new Map(columns.map((column) => [column.name, column.type.toLowerCase()]));
  for (const [name, value] of Object.entries(record)) {
    const type = declared.get(name);
    if (!type) {
      problems.push(`${name} is sent but not a column of the table`);
      continue;
    }
    if (value === null || value === undefined) continue;
    const fits =
      type === "string"
        ? typeof value === "string"
        : type === "datetime"
          ? typeof value === "string" && !Number.isNaN(Date.parse(value))
          : type === "int" || type === "long"
            ? Number.isInteger(value)
            : type === "real"
              ? typeof value === "number"
              : type === "boolean"
                ? typeof value === "boolean"
                : type === "dynamic";
    if (!fits) problems.push(`${name} is sent as ${typeof value}, the column is ${type}`);
  }
  for (const name of declared.keys()) if (!(name in record) && !SOLUTION_ONLY_COLUMNS.includes(name)) problems.push(`${name} is a column the app never sends`);
  return problems;
}

/** An event with every field set, so every column of its record carries a value of its type. */
const event: AuditEvent = {
  account_id: "acc-0000-1111",
  workspace_id: "1234567890123456",
  version: "2.0",
  event_time: "2026-01-02T03:04:05.123456Z",
  event_date: "2026-01-02",
  source_ip_address: "10.1.2.3:443",
  user_agent: "agent/1.0",
  session_id: "session-1",
  user_identity: { email: "alice@example.com", subject_name: "alice" },
  service_name: "accounts",
  action_name: "login",
  request_id: "req-1",
  request_params: { user: "alice@example.com" },
  response: { status_code: 401, error_message: "denied", result: '{"cluster_id":"0102-abc"}' },
  audit_level: "WORKSPACE_LEVEL",
  event_id: "8d6b7a2e-0000-4000-8000-000000000001",
  identity_metadata: { run_by: "alice@example.com", run_as: "bob@example.com" },
};

describe("infra/tables.json", () => {
  it("declares both tables with unique columns, a TimeGenerated, and a stream named after each", () => {
    expect(Object.keys(tables).sort()).toEqual(["DatabricksAuditAlerts_CL", "DatabricksAudit_CL"]);
    for (const [name, table] of Object.entries(tables)) {
      expect(table.stream, name).toBe(`Custom-${name.replace(/_CL$/, "")}`);
      const names = table.columns.map((column) => column.name);
      expect(new Set(names).size, name).toBe(names.length);
      expect(table.columns.find((column) => column.name === "TimeGenerated")?.type, name).toBe("dateTime");
      for (const column of table.columns)
        expect(["string", "int", "long", "real", "boolean", "dateTime", "dynamic"], `${name}.${column.name}`).toContain(column.type);
    }
    expect(tables.DatabricksAuditAlerts_CL!.columns.map((column) => column.name)).toContain("AlertId");
  });

  it("has exactly the columns of the record the export sends to DatabricksAudit_CL, each with its type", () => {
    const record = toSentinelRecord(event) as unknown as Record<string, unknown>;
    const sent = audit.columns.map((column) => column.name).filter((name) => !SOLUTION_ONLY_COLUMNS.includes(name));
    expect(Object.keys(record).sort()).toEqual(sent.sort());
    expect(columnMismatches(record, audit.columns)).toEqual([]);
    // A dynamic column carries the object, not its JSON text.
    expect(record.ResponseResult).toEqual({ cluster_id: "0102-abc" });
  });

  it("declares every column of the Sentinel Databricks solution's table with the solution's type", () => {
    expect(solution.table).toBe("DatabricksAudit_CL");
    expect(solution.source.path).toBe("Solutions/Databricks/Data Connectors/DatabricksAuditLogs_CCF/DatabricksAuditLogs_Table.json");
    expect(solution.source.commit).toMatch(/^[0-9a-f]{40}$/);
    expect(solution.columns.length).toBeGreaterThan(20);
    expect(solutionConflicts(audit.columns, solution.columns)).toEqual([]);
    // The columns only the solution has are described as never filled, so nobody hunts for their values.
    for (const name of SOLUTION_ONLY_COLUMNS) {
      expect(solution.columns.map((column) => column.name)).toContain(name);
      expect(audit.columns.find((column) => column.name === name)?.description).toMatch(/never fills it/);
    }
  });

  it("reports a solution column missing or of another type", () => {
    const changed = audit.columns
      .filter((column) => column.name !== "ShardName")
      .map((column) => (column.name === "ResponseResult" ? { ...column, type: "string" } : column));
    expect(solutionConflicts(changed, solution.columns)).toEqual(["ShardName (string) is missing", "ResponseResult is string, the solution's is dynamic"]);
  });

  it("reports a column the code sends and the table lacks, and a value of the wrong type", () => {
    const record: Record<string, unknown> = { ...(toSentinelRecord(event) as unknown as Record<string, unknown>), ClusterId: "0102-abc" };
    record.ResponseStatusCode = "401";
    delete record.IdentityMetadata;
    expect(columnMismatches(record, audit.columns)).toEqual([
      "ResponseStatusCode is sent as string, the column is int",
      "ClusterId is sent but not a column of the table",
      "IdentityMetadata is a column the app never sends",
    ]);
  });

  it("is the stream the local Logs Ingestion stand-in accepts", () => {
    expect(DATABRICKS_AUDIT_STREAM_COLUMNS.map((column) => ({ name: column.name, type: column.type }))).toEqual(
      audit.columns.map((column) => ({ name: column.name, type: column.type.toLowerCase() })),
    );
  });
});

/**
 * The newest generally available version of Microsoft.OperationalInsights/workspaces/tables: the
 * newest `stable/` folder of azure-rest-api-specs' operationalinsights specification (Tables.json),
 * and the newest entry of the template reference's change log for the type (it adds only
 * `protectionLevel`, which the template leaves to its default). 2022-10-01, used before, is three
 * versions behind. Move this on when a newer stable version ships.
 */
const CURRENT_TABLES_API = "2026-03-01";

describe("the tables' resources", () => {
  it(`declare Microsoft.OperationalInsights/workspaces/tables with its current GA API version, ${CURRENT_TABLES_API}`, async () => {
    const files = await readTemplate(join(repo, "infra"));
    const declared = [...files.values()].flatMap((file) =>
      file.resources
        .filter((resource) => resource.type === "Microsoft.OperationalInsights/workspaces/tables")
        .map((resource) => `${relative(repo, file.path)} ${resource.symbol}@${resource.apiVersion}`),
    );
    expect(declared).toEqual([`infra/app/logs-ingestion.bicep tables@${CURRENT_TABLES_API}`]);
  });
});
