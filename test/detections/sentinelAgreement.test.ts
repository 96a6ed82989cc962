import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import type { AuditEvent } from "../../shared/auditEvent";
import { builtInDetection } from "../../shared/detections/catalog";
import { evaluateDetection } from "../../shared/detections/evaluate";
import { toSentinelRecord } from "../../shared/sentinelRecord";
import { kqlTerms, runKql, type KqlRow } from "../infra/support/kqlEval";
import { readTables } from "../infra/support/kusto";
import { alertsOfVariant, buildCaseRows, type CaseRows } from "./cases";
import { warehouseWithRows } from "./standIn";

/**
 * The Sentinel solution's four rules exist twice: as catalog entries (SQL on the warehouse) and as
 * KQL rules on DatabricksAudit_CL (sentinel/analytic-rules). Both are run here on the same rows
 * (sentinelCases.ts): the SQL on the warehouse stand-in through the real driver, the KQL, from the
 * rule file as Sentinel deploys it, with a small evaluator of the KQL the rules use (kqlEval.ts),
 * on the records the app sends to DatabricksAudit_CL. Each variant must fire on both or on neither,
 * as its case expects, so a change to either side alone fails here.
 */

const repo = join(__dirname, "..", "..");
const RULE_FILES: Record<string, string> = {
  sentinel_account_admin_privilege_granted: "DatabricksAccountAdminGranted.yaml",
  sentinel_ip_access_list_changed: "DatabricksIpAccessListChanged.yaml",
  sentinel_failed_logins_from_ip: "DatabricksFailedLoginsFromOneIp.yaml",
  sentinel_long_lived_tokens: "DatabricksLongLivedToken.yaml",
};
const DAY = Date.parse("2025-10-01T00:00:00Z");
/** The rules run hourly; this run comes after the case rows' hour (10:00-10:59) and their ingestion. */
const NOW = DAY + 11 * 3_600_000 + 30 * 60_000;
const caseRows = buildCaseRows(DAY).filter((c) => c.testCase.detection in RULE_FILES);
const columns = readTables(repo).DatabricksAudit_CL!.columns;

function ruleQuery(detection: string): string {
  return (parse(readFileSync(join(repo, "sentinel", "analytic-rules", RULE_FILES[detection]!), "utf8")) as { query: string }).query;
}

/** A record as Log Analytics holds it: a string column is never null (""), a dateTime a datetime. */
function asStored(record: Record<string, unknown>): KqlRow {
  const row: KqlRow = {};
  for (const column of columns) {
    const value = record[column.name];
    if (column.type === "string") row[column.name] = typeof value === "string" ? value : value === null || value === undefined ? "" : JSON.stringify(value);
    else if (column.type === "dateTime") row[column.name] = typeof value === "string" ? new Date(value) : null;
    else row[column.name] = (value ?? null) as KqlRow[string];
  }
  return row;
}

const table = caseRows.flatMap((c) => c.rows).map((row) => asStored(toSentinelRecord(row as unknown as AuditEvent) as unknown as Record<string, unknown>));

function kqlResults(query: string): KqlRow[] {
  return runKql(query, { DatabricksAudit_CL: table }, { nowMs: NOW, ingestionTime: () => new Date(NOW - 10 * 60_000) });
}

/** The KQL result rows about a variant's events: per event (EventId) or per group (SampleEventIds). */
function kqlRowsOf(results: KqlRow[], rows: CaseRows): KqlRow[] {
  return results.filter((result) => {
    const ids = Array.isArray(result.SampleEventIds) ? result.SampleEventIds : [result.EventId];
    return ids.some((id) => typeof id === "string" && rows.eventIds.has(id));
  });
}

const sqlAlerts = new Map<string, Awaited<ReturnType<typeof evaluateDetection>>["alerts"]>();
warehouseWithRows(
  caseRows.flatMap((c) => c.rows),
  async (warehouse) => {
    for (const name of Object.keys(RULE_FILES)) {
      const evaluation = await evaluateDetection(warehouse, builtInDetection(name)!, { fromUs: DAY * 1000, toUs: (DAY + 86_400_000) * 1000 }, [], Date.now);
      sqlAlerts.set(name, evaluation.alerts);
    }
  },
);

describe("the Sentinel solution's rules: the SQL entry and the KQL rule agree on the same rows", () => {
  describe.each(Object.keys(RULE_FILES))("%s", (detection) => {
    const variants = caseRows.filter((c) => c.testCase.detection === detection);

    it.each(variants.map((c) => [`${c.fires ? "fires" : "does not fire"} on ${c.variant.why}`, c] as const))("%s in SQL and in KQL", (_why, rows) => {
      const inSql = alertsOfVariant(sqlAlerts.get(detection)!, rows);
      const inKql = kqlRowsOf(kqlResults(ruleQuery(detection)), rows);
      expect({ sql: inSql.length, kql: inKql.length }).toEqual(rows.fires ? { sql: 1, kql: 1 } : { sql: 0, kql: 0 });
    });
  });

  it("counts the same failed logins per IP address in both (ports stripped, one hour)", () => {
    const inSql = sqlAlerts.get("sentinel_failed_logins_from_ip")!.map((a) => [a.source_ip, a.count]);
    const inKql = kqlResults(ruleQuery("sentinel_failed_logins_from_ip")).map((r) => [r.IPAddress, r.FailedLogins]);
    expect(inKql.sort()).toEqual(inSql.sort());
    expect(inSql.length).toBe(2);
  });

  it("notices a rule changed on one side only (the check can fail)", () => {
    const refused = caseRows.find((c) => c.variant.why === "setAdmin refused (403)")!;
    const original = ruleQuery("sentinel_account_admin_privilege_granted");
    expect(kqlRowsOf(kqlResults(original), refused)).toHaveLength(0);
    const withoutStatus = original.replace("| where ResponseStatusCode < 400\n", "");
    expect(withoutStatus).not.toBe(original);
    expect(kqlRowsOf(kqlResults(withoutStatus), refused)).toHaveLength(1);
    const aad = caseRows.find((c) => c.variant.why === "10 failed aadBrowserLogin (not the whole term)")!;
    const contains = ruleQuery("sentinel_failed_logins_from_ip").replace('ActionName has "login"', 'tolower(ActionName) matches regex "login"');
    expect(kqlRowsOf(kqlResults(contains), aad)).toHaveLength(1);
  });

  it("reads has as a whole-term match and refuses what it does not know", () => {
    expect(kqlTerms("aadBrowserLogin")).toEqual(["aadbrowserlogin"]);
    expect(kqlTerms("token-login_v2")).toEqual(["token", "login", "v2"]);
    expect(() => kqlResults("DatabricksAudit_CL | take 1")).toThrow(/operator take is not known/);
    expect(() => kqlResults('DatabricksAudit_CL | where ActionName contains "login"')).toThrow(/unread text|cannot read|unexpected/);
  });
});
