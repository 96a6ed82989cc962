import { describe, expect, it } from "vitest";
import { BUILT_IN_DETECTIONS, builtInDetection } from "../../shared/detections/catalog";
import { combineSourceRows } from "../../shared/detections/combine";
import { measureShape, sourceCombination } from "../../shared/detections/combination";
import { detectionQuery, type DetectionRow } from "../../shared/detections/sql";
import type { Detection } from "../../shared/detections/types";

/** Several warehouses (one per region), pure parts: which detections combine, the SQL each source runs, and how rows become one alert. */
const HOUR_US = 3_600_000_000;
const DAY_US = 24 * HOUR_US;
const DAY_INDEX = 20_000; // 2024-10-04, as a day window's index
const multipleWorkspaces = builtInDetection("access_to_multiple_workspaces")!;
const failedLogins = builtInDetection("repeated_failed_login_attempts")!;

function row(group: Partial<DetectionRow>, fields: Partial<DetectionRow> = {}): DetectionRow {
  return {
    window_index: DAY_INDEX,
    measure_value: 1,
    event_count: 1,
    first_event_us: DAY_INDEX * DAY_US + 10,
    last_event_us: DAY_INDEX * DAY_US + 20,
    principals: ["u@example.com"],
    source_ips: ["10.0.0.1"],
    workspaces: [],
    actions: ["login"],
    services: ["accounts"],
    sample_event_ids: ["e1"],
    ...group,
    ...fields,
  };
}

describe("which detections combine across sources", () => {
  it("adds up counts, unites distinct values, concatenates per-workspace groups and keeps other measures per source", () => {
    const byCombination: Record<string, string[]> = {};
    for (const d of BUILT_IN_DETECTIONS) (byCombination[sourceCombination(d)] ??= []).push(d.name);
    // Per workspace: the IP access list failures, and the data plane detections (per workspace and host).
    expect(byCombination.concatenate?.sort()).toEqual([
      "capsule8_changes_to_host_security_settings",
      "capsule8_container_breakout_events",
      "capsule8_kernel_related_events",
      "capsule8_suspicious_host_activity",
      "clam_av_infected_files_detected",
      "clam_av_infected_files_found",
      "ip_access_list_failures",
    ]);
    expect(byCombination.union?.sort()).toEqual(["access_to_multiple_workspaces", "repeated_access_to_secrets"]);
    expect(byCombination["per-source"]).toEqual(["high_number_of_read_writes"]);
    expect(byCombination.sum).toHaveLength(BUILT_IN_DETECTIONS.length - 10);
    expect(byCombination.sum).toEqual(expect.arrayContaining(["repeated_failed_login_attempts", "destructive_activities", "sentinel_failed_logins_from_ip"]));
  });

  it("reads a measure's shape: one count or sum adds up, one count(DISTINCT x) unites, anything else is per source", () => {
    expect(measureShape("count(*)")).toEqual({ kind: "additive" });
    expect(measureShape(" COUNT( request_params['x'] ) ")).toEqual({ kind: "additive" });
    expect(measureShape("sum(CAST(request_params['n'] AS INT))")).toEqual({ kind: "additive" });
    expect(measureShape("count(DISTINCT workspace_id)")).toEqual({ kind: "distinct", expression: "workspace_id" });
    expect(measureShape("count(distinct concat_ws('/', a, b))")).toEqual({ kind: "distinct", expression: "concat_ws('/', a, b)" });
    expect(measureShape("count(DISTINCT a) + count(DISTINCT b)")).toEqual({ kind: "other" });
    expect(measureShape("count(DISTINCT a, b)")).toEqual({ kind: "other" });
    expect(measureShape("sum(DISTINCT a)")).toEqual({ kind: "other" });
    expect(measureShape("max(a)")).toEqual({ kind: "other" });
    expect(measureShape("count(CASE WHEN a = ')' THEN 1 END)")).toEqual({ kind: "additive" });
    expect(sourceCombination({ groupBy: ["email", "workspace_id"], measure: "count(DISTINCT x)" })).toBe("concatenate");
  });
});

describe("the query each source runs", () => {
  const range = { fromUs: DAY_INDEX * DAY_US, toUs: (DAY_INDEX + 1) * DAY_US };

  it("reads account-level rows on the first source that answers only; a NULL workspace counts as account-level", () => {
    const first = detectionQuery(failedLogins, range, [], { sourceCount: 2, anEarlierSourceAnswered: false });
    const next = detectionQuery(failedLogins, range, [], { sourceCount: 2, anEarlierSourceAnswered: true });
    expect(first.sql).not.toContain("workspace_id, '0'");
    expect(next.sql).toContain("coalesce(workspace_id, '0') <> '0'");
    const narrowed = detectionQuery(failedLogins, range, ["111"], { sourceCount: 2, anEarlierSourceAnswered: true });
    expect(narrowed.sql).toContain("workspace_id IN (:ws_0)");
    expect(narrowed.sql).not.toContain("OR workspace_id = '0'");
    expect(narrowed.sql).not.toContain("111");
    // A measure that is not put together from parts reads them on every source (one alert, the highest value).
    const perSource = detectionQuery(builtInDetection("high_number_of_read_writes")!, range, [], { sourceCount: 2, anEarlierSourceAnswered: true });
    expect(perSource.sql).not.toContain("workspace_id, '0'");
  });

  it("returns every group's parts, without the threshold, when several sources are read; one source keeps the threshold in SQL", () => {
    const one = detectionQuery(multipleWorkspaces, range, []);
    expect(one.sql).toMatch(/HAVING count\(DISTINCT workspace_id\) >= CAST\(:threshold AS BIGINT\)$/);
    expect(one.sql).not.toContain("measure_set");
    const parts = detectionQuery(multipleWorkspaces, range, [], { sourceCount: 2, anEarlierSourceAnswered: false });
    expect(parts.sql).not.toContain("HAVING");
    expect(parts.params.threshold).toBeUndefined();
    expect(parts.sql).toContain("collect_set(workspace_id) AS measure_set");
    const perWorkspace = detectionQuery(builtInDetection("ip_access_list_failures")!, range, [], { sourceCount: 2, anEarlierSourceAnswered: true });
    expect(perWorkspace.sql).toContain("HAVING count(*) > CAST(:threshold AS BIGINT)");
  });
});

describe("combining the sources' rows", () => {
  const user = { g_email: "u@example.com" };

  it("unites a user's workspaces across sources before the threshold: 3 + 2 is one alert listing both sources", () => {
    const alerts = combineSourceRows(multipleWorkspaces, [
      { source: "westeurope", rows: [row(user, { measure_value: 3, event_count: 7, workspaces: ["1", "2", "3"], measure_set: ["1", "2", "3"] })] },
      { source: "eastus", rows: [row(user, { measure_value: 2, event_count: 2, workspaces: ["4", "5"], measure_set: ["4", "5"], sample_event_ids: ["e0"] })] },
    ]);
    expect(alerts).toHaveLength(1);
    expect(alerts[0]).toMatchObject({
      email: "u@example.com",
      value: 5,
      count: 9,
      workspaces: ["1", "2", "3", "4", "5"],
      sample_event_ids: ["e0", "e1"],
      sources: ["westeurope", "eastus"],
    });
    const alone = combineSourceRows(multipleWorkspaces, [
      { source: "westeurope", rows: [row(user, { measure_value: 5, measure_set: ["1", "2", "3", "4", "5"] })] },
    ]);
    // The same window and group: the same id, whichever sources answered.
    expect(alone[0]!.alert_id).toBe(alerts[0]!.alert_id);
  });

  it("counts a value two sources both saw once, and raises nothing below the threshold", () => {
    const alerts = combineSourceRows(multipleWorkspaces, [
      { source: "a", rows: [row(user, { measure_value: 3, measure_set: ["0", "1", "2"] })] },
      { source: "b", rows: [row(user, { measure_value: 2, measure_set: ["0", "3"] })] },
    ]);
    expect(alerts).toEqual([]);
  });

  it("adds up counts across sources, then compares: 1 + 1 failed logins pass '> 1'", () => {
    const parts = (n: number) => [
      { source: "a", rows: [row(user, { window_index: 480_000, measure_value: 1, event_count: 1 })] },
      { source: "b", rows: [row(user, { window_index: 480_000, measure_value: n, event_count: n, first_event_us: 5 })] },
    ];
    const alerts = combineSourceRows(failedLogins, parts(1));
    expect(alerts).toHaveLength(1);
    expect(alerts[0]).toMatchObject({ count: 2, value: 2, sources: ["a", "b"], first_event_time: "1970-01-01T00:00:00.000005Z" });
    expect(combineSourceRows(failedLogins, parts(0))).toEqual([]);
  });

  it("keeps per-workspace groups apart, and makes one alert (the highest value) of a per-source group found twice", () => {
    const perWorkspace = combineSourceRows(builtInDetection("ip_access_list_failures")!, [
      { source: "a", rows: [row({ ...user, g_workspace_id: "1", g_source_ip: "10.0.0.1", window_index: 480_000 })] },
      { source: "b", rows: [row({ ...user, g_workspace_id: "2", g_source_ip: "10.0.0.1", window_index: 480_000 })] },
    ]);
    expect(perWorkspace.map((a) => [a.workspace_id, a.sources])).toEqual(
      expect.arrayContaining([
        ["1", ["a"]],
        ["2", ["b"]],
      ]),
    );
    const readWrites = builtInDetection("high_number_of_read_writes")!;
    const key = { ...user, g_metastore_id: null, window_index: 480_000 };
    const merged = combineSourceRows(readWrites, [
      { source: "a", rows: [row(key, { measure_value: 2, event_count: 45 })] },
      { source: "b", rows: [row(key, { measure_value: 3, event_count: 50 })] },
    ]);
    expect(merged).toHaveLength(1);
    expect(merged[0]).toMatchObject({ value: 3, count: 50, sources: ["a", "b"] });
  });

  it("applies the threshold of a custom detection read as parts", () => {
    const custom: Detection = { ...failedLogins, name: "custom", measure: "sum(x)", operator: ">=", threshold: 10 };
    const parts = [
      { source: "a", rows: [row(user, { window_index: 480_000, measure_value: 6 })] },
      { source: "b", rows: [row(user, { window_index: 480_000, measure_value: 4 })] },
    ];
    expect(combineSourceRows(custom, parts).map((a) => a.value)).toEqual([10]);
    expect(combineSourceRows({ ...custom, threshold: 11 }, parts)).toEqual([]);
  });
});
