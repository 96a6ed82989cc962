import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { AUDIT_TABLE, eventIdRowsQuery, kqlDatetime } from "../../shared/reconcile/kql";
import { analyse, globalsFor, readTables } from "../infra/support/kusto";

// The reconciliation query, analysed offline by Kusto's own language service against the table's
// real schema (infra/tables.json), as the Sentinel content's queries are.

const repo = join(__dirname, "..", "..");
const globals = globalsFor(readTables(repo));
const FROM = Date.parse("2026-03-01T10:00:00.000Z");

describe("the reconciliation KQL", () => {
  it("analyses without errors against DatabricksAudit_CL and answers EventId (string) and Rows (long)", () => {
    const { errors, columns } = analyse(eventIdRowsQuery(FROM, FROM + 3_600_000), globals);
    expect(errors).toEqual([]);
    expect([...columns]).toEqual([
      ["EventId", "string"],
      ["Rows", "long"],
    ]);
    // The deployed package has no infra/: the constant is held to the table declared for the audit stream.
    const tables = (JSON.parse(readFileSync(join(repo, "infra", "tables.json"), "utf8")) as { tables: Record<string, { stream: string }> }).tables;
    expect(Object.entries(tables).find(([, table]) => table.stream === "Custom-DatabricksAudit")?.[0]).toBe(AUDIT_TABLE);
  });

  it("would catch a column the table does not have", () => {
    const broken = eventIdRowsQuery(FROM, FROM + 3_600_000).replace("EventTime >=", "EventTimestamp >=");
    expect(analyse(broken, globals).errors.join(" ")).toMatch(/EventTimestamp/);
  });

  it("prints bounds only from valid instants and tables only as identifiers", () => {
    expect(kqlDatetime(FROM)).toBe("datetime(2026-03-01T10:00:00.000Z)");
    expect(() => kqlDatetime(Number.NaN)).toThrow(RangeError);
    expect(() => eventIdRowsQuery(FROM, FROM)).toThrow(/after its start/);
    expect(() => eventIdRowsQuery(FROM, FROM + 1, "DatabricksAudit_CL | union SecurityEvent")).toThrow(/table name/);
  });
});
