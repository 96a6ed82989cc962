import { describe, expect, it } from "vitest";
import { REPORTS, reportQuery } from "../../shared/detections/reports";
import { auditRow, isoMicros, type AuditRow } from "../support/auditRows";
import { warehouseWithRows } from "./standIn";

/** The reports' columns as upstream returns them, run on the warehouse stand-in through the real driver. */
const DAY = Date.parse("2025-10-03T00:00:00Z");
const NOW = DAY + 2 * 86_400_000;
let serial = 0;
const at = (overrides: AuditRow): AuditRow => {
  serial += 1;
  return auditRow(isoMicros((DAY + 3_600_000 + serial * 1000) * 1000), overrides);
};
const ucRead = (ip: string, params: Record<string, string>) =>
  at({ service_name: "unityCatalog", action_name: "generateTemporaryTableCredential", source_ip_address: ip, request_params: params });

const rows: AuditRow[] = [
  ucRead("10.1.2.3:51000", { table_full_name: "main.s.t1", operation: "READ" }),
  ucRead("10.1.2.9", { table_full_name: "main.s.t2", operation: "READ" }),
  ucRead("10.1.3.4", { volume_full_name: "main.s.v", operation: "READ_VOLUME" }),
  ucRead("2001:db8::1", { table_full_name: "main.s.t1", operation: "READ" }),
  ucRead("2001:db8::2", { table_full_name: "main.s.t1", operation: "READ_WRITE" }),
  ucRead("10.9.9.9", { url: "abfss://c@a.dfs.core.windows.net/x", operation: "PATH_CREATE_TABLE", workspace_id: "555" }),
  at({ action_name: "deleteJob", service_name: "jobs", workspace_id: "0", request_params: { workspace_id: "777" } }),
];

const warehouse = warehouseWithRows(rows);

async function run(name: string): Promise<Record<string, unknown>[]> {
  return warehouse().all(
    reportQuery(
      REPORTS.find((r) => r.name === name)!,
      NOW,
      90,
    ),
  );
}

describe("reports", () => {
  it("keep IPv6 addresses apart in the range reports, and IPv4 addresses in their /24", async () => {
    for (const name of ["ip_address_ranges_used_to_access_databricks", "ip_address_ranges_used_to_access_uc_data"]) {
      const ranges = (await run(name)).map((r) => String(r.source_range));
      expect(ranges, name).toEqual(expect.arrayContaining(["10.1.2.0/24", "10.1.3.0/24", "2001:db8::1", "2001:db8::2"]));
      expect(
        ranges.filter((r) => r === "10.1.2.0/24"),
        name,
      ).toHaveLength(1);
      expect(
        ranges.some((r) => r.startsWith(".") || r === ".0/24"),
        name,
      ).toBe(false);
    }
  });

  it("name the securable type where upstream does", async () => {
    const byRange = await run("ip_address_ranges_used_to_access_uc_data");
    expect(byRange.map((r) => [r.source_range, r.securable_type, Number(r.total)])).toEqual(
      expect.arrayContaining([
        ["10.1.2.0/24", "TABLE", 2],
        ["10.1.3.0/24", "VOLUME", 1],
        ["10.9.9.0/24", "EXTERNAL_LOCATION", 1],
      ]),
    );
    const byIp = await run("ip_addresses_used_to_access_uc_data");
    expect(byIp.map((r) => [r.source_ip, r.securable_type])).toEqual(
      expect.arrayContaining([
        ["10.1.2.3", "TABLE"],
        ["2001:db8::1", "TABLE"],
      ]),
    );
    const popular = await run("most_popular_data_products_last_90_days");
    expect(popular.find((r) => r.securable === "main.s.t1")).toMatchObject({ securable_type: "TABLE" });
  });

  it("list read_writes with the READ/WRITE class, the full operation, the securable and the workspace fallback", async () => {
    const readWrites = await run("read_writes_last_90_days");
    expect(readWrites.map((r) => [r.operation, r.full_operation, r.securable, r.workspace_id])).toEqual(
      expect.arrayContaining([
        ["READ", "READ", "main.s.t1", "1234567890123456"],
        ["WRITE", "READ_WRITE", "main.s.t1", "1234567890123456"],
        ["WRITE", "PATH_CREATE_TABLE", "abfss://c@a.dfs.core.windows.net/x", "555"],
      ]),
    );
  });

  it("name an account-level event's workspace from request_params.workspace_id", async () => {
    const destructive = await run("destructive_activities_last_90_days");
    expect(destructive.map((r) => [r.action_name, r.workspace_id])).toContainEqual(["deleteJob", "777"]);
  });

  it("count grants per grantee and securable type, with the grantee's total", () => {
    const sql = REPORTS.find((r) => r.name === "most_privileged_users")!.sql;
    for (const [table, type] of [
      ["catalog_privileges", "CATALOG"],
      ["routine_privileges", "FUNCTION"],
      ["volume_privileges", "VOLUME"],
    ])
      expect(sql).toContain(`SELECT grantee, '${type}' AS securable_type FROM system.information_schema.${table}`);
    expect(sql).toContain("GROUP BY grantee, securable_type");
    expect(sql).toContain("sum(count(*)) OVER (PARTITION BY grantee) AS grantee_total");
  });
});
