import { describe, expect, it } from "vitest";
import { hourlyCountQuery, scanQuery } from "../../shared/auditQueries";

describe("audit queries", () => {
  const filter = { services: ["clusters", "x' OR '1'='1"], workspaceIds: ["123"], includeAccountLevel: true } as const;

  it("binds every value as a named parameter: none reaches the SQL text", () => {
    const query = scanQuery(filter, { timeUs: 1_725_148_800_000_001, eventId: "evt'; DROP TABLE x; --" }, 1_725_235_200_000_000);
    expect(query.sql).not.toContain("OR '1'='1");
    expect(query.sql).not.toContain("DROP");
    expect(query.sql).not.toContain("1725148800000001");
    expect(Object.values(query.params)).toEqual(
      expect.arrayContaining(["clusters", "x' OR '1'='1", "123", "evt'; DROP TABLE x; --", "1725148800000001", "2024-09-01"]),
    );
    for (const name of Object.keys(query.params)) expect(query.sql).toContain(`:${name}`);
  });

  it("orders by (event_time, event_id) and pages on the key, not on time alone", () => {
    const { sql } = scanQuery(filter, { timeUs: 0, eventId: "" }, 1);
    expect(sql).toMatch(/ORDER BY event_time, event_id$/);
    expect(sql).toContain("event_time = timestamp_micros(CAST(:after_us AS BIGINT)) AND event_id > :after_id");
    expect(sql).toContain("(workspace_id IN (:ws_0) OR workspace_id = '0')");
  });

  it("filters out account-level rows when asked and prunes on event_date", () => {
    const { sql, params } = hourlyCountQuery({ services: "all", workspaceIds: [], includeAccountLevel: false }, 0, 3_600_000_000 * 30);
    expect(sql).toContain("workspace_id <> '0'");
    expect(sql).not.toContain("service_name");
    expect(params).toMatchObject({ from_date: "1970-01-01", to_date: "1970-01-02" });
  });
});
