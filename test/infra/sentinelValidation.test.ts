import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import {
  armRuleProblems,
  isoMinutes,
  tacticsOf,
  templateMinutes,
  templateProblems,
  type ArmRuleProperties,
  type TemplateRule,
} from "./support/sentinelValidation";

// The port of Azure-Sentinel's rule validation (support/sentinelValidation.ts) can fail: a rule that
// passes is broken one way at a time, and each break must be reported in the validation's words.
// test/infra/sentinel.test.ts runs the same checks over every rule of sentinel/ and its ARM form.

const repo = join(__dirname, "..", "..");
const passing = parse(readFileSync(join(repo, "sentinel", "analytic-rules", "DatabricksFailedLoginsFromOneIp.yaml"), "utf8")) as TemplateRule;
const passingArm = (JSON.parse(readFileSync(join(repo, "sentinel", "analytic-rules.json"), "utf8")) as { id: string; properties: ArmRuleProperties }[]).find(
  (rule) => rule.id === passing.id,
)!.properties;

const clone = <T>(value: T): T => structuredClone(value);

type Break<T> = [string, (rule: T) => void, string];

const templateBreaks: Break<TemplateRule>[] = [
  ["a technique whose tactic is not listed", (r) => (r.relevantTechniques = ["T1110", "T1485"]), "technique T1485"],
  ["a sub-technique whose parent's tactic is not listed", (r) => (r.relevantTechniques = ["T1562.007"]), "technique T1562.007"],
  [
    "a technique of several tactics with one listed",
    (r) => ((r.tactics = ["InitialAccess"]), (r.relevantTechniques = ["T1078"])),
    "it needs InitialAccess, Persistence",
  ],
  ["an unknown technique", (r) => (r.relevantTechniques = ["T9999"]), "technique T9999"],
  ["a malformed technique", (r) => (r.relevantTechniques = ["1110"]), "not T#### or T####.###"],
  ["an unknown tactic", (r) => (r.tactics = ["CredentialTheft"]), "tactic CredentialTheft"],
  ["a version that is not X.Y.Z", (r) => (r.version = "1.0"), "X.Y.Z"],
  ["a custom details key starting with a digit", (r) => (r.customDetails = { "1Count": "FailedLogins" }), "key '1Count'"],
  ["a custom details key with a dash", (r) => (r.customDetails = { "Failed-Logins": "FailedLogins" }), "key 'Failed-Logins'"],
  ["a custom details key over 20 characters", (r) => (r.customDetails = { FailedLoginsPerHourAndIp: "FailedLogins" }), "Maximum length of key"],
  ["a custom details value that is no column name", (r) => (r.customDetails = { Count: "count()" }), "value 'count()'"],
  ["21 custom details", (r) => (r.customDetails = Object.fromEntries(Array.from({ length: 21 }, (_, i) => [`Detail${i}`, "FailedLogins"]))), "21 entries"],
  ["no entity mapping", (r) => (r.entityMappings = []), "'entityMappings'"],
  ["six entity mappings", (r) => (r.entityMappings = Array.from({ length: 6 }, () => clone(passing.entityMappings![1]!))), "'6' for 'entityMappings'"],
  [
    "four field mappings",
    (r) => r.entityMappings![0]!.fieldMappings.push(...["Name", "Sid", "PUID"].map((identifier) => ({ identifier, columnName: "UserEmail" }))),
    "'4' for 'FieldMappings'",
  ],
  [
    "an identifier the entity type lacks",
    (r) => (r.entityMappings![1]!.fieldMappings = [{ identifier: "IPAddress", columnName: "IPAddress" }]),
    "Invalid identifier 'IPAddress'",
  ],
  [
    "an identifier mapped twice",
    (r) => r.entityMappings![1]!.fieldMappings.push({ identifier: "Address", columnName: "SourceIPAddress" }),
    "defined multiple times",
  ],
  [
    "no required identifier",
    (r) => (r.entityMappings![2]!.fieldMappings = [{ identifier: "InstanceName", columnName: "WorkspaceId" }]),
    "Missing required identifiers for type 'CloudApplication'",
  ],
  ["an entity type Sentinel does not know", (r) => (r.entityMappings![0]!.entityType = "User"), "entity type User"],
  ["a column name with a dot", (r) => (r.entityMappings![0]!.fieldMappings[0]!.columnName = "Users.0"), "ColumnName 'Users.0'"],
  ["a frequency under 5 minutes", (r) => (r.queryFrequency = "1m"), "queryFrequency 1m"],
  ["a period over 14 days", (r) => (r.queryPeriod = "15d"), "queryPeriod 15d"],
  ["a period shorter than the frequency", (r) => ((r.queryFrequency = "2h"), (r.queryPeriod = "1h")), "greater than or equal to 'queryFrequency'"],
  ["a 2-day period run more often than hourly", (r) => ((r.queryFrequency = "30m"), (r.queryPeriod = "2d")), "greater than or equal to 2 days"],
  ["a threshold over 10000", (r) => (r.triggerThreshold = 10001), "triggerThreshold 10001"],
  ["an unknown trigger operator", (r) => (r.triggerOperator = "ge"), "triggerOperator ge"],
  ["an unknown severity", (r) => (r.severity = "Critical"), "severity Critical"],
  ["an unknown aggregation kind", (r) => (r.eventGroupingSettings = { aggregationKind: "AlertPerRow" }), "aggregation kind 'AlertPerRow'"],
  ["no requiredDataConnectors", (r) => delete r.requiredDataConnectors, "requiredDataConnectors"],
  ["an id that is not a GUID", (r) => (r.id = "failed-logins"), "not a GUID"],
  ["a name over 256 characters", (r) => (r.name = "x".repeat(257)), "name must be"],
  ["a query over 10000 characters", (r) => (r.query = `DatabricksAudit_CL${" ".repeat(10000)}`), "query must be"],
  ["four placeholders in the alert name", (r) => (r.alertDetailsOverride = { alertDisplayNameFormat: "{{A}} {{B}} {{C}} {{D}}" }), "defined 4 parameters"],
  ["a blank alert description format", (r) => (r.alertDetailsOverride = { alertDescriptionFormat: " " }), "not blank"],
  [
    "an alert property the API lacks",
    (r) => (r.alertDetailsOverride = { alertDynamicProperties: [{ alertProperty: "SubTechniques", value: "Technique" }] }),
    "SubTechniques is not an alert property",
  ],
];

const armBreaks: Break<ArmRuleProperties>[] = [
  [
    "templateVersion without alertRuleTemplateName",
    (p) => (p.templateVersion = "1.0.0"),
    "'templateVersion' can only be used if 'alertRuleTemplateName' is not empty",
  ],
  ["a sub-technique in techniques", (p) => (p.techniques = ["T1110.003"]), "T1110.003 is not a technique ID"],
  ["a technique whose tactic is not listed", (p) => (p.techniques = ["T1110", "T1537"]), "technique T1537"],
  ["the YAML's operator instead of ARM's", (p) => (p.triggerOperator = "gt"), "triggerOperator gt"],
  ["the YAML's duration instead of ISO 8601", (p) => (p.queryFrequency = "1h"), "queryFrequency 1h"],
  ["a period over 14 days", (p) => (p.queryPeriod = "P15D"), "queryPeriod P15D"],
  ["a 2-day period run every 30 minutes", (p) => ((p.queryFrequency = "PT30M"), (p.queryPeriod = "P2D")), "greater than or equal to 2 days"],
  ["an identifier the entity type lacks", (p) => (p.entityMappings![0]!.fieldMappings[0]!.identifier = "Email"), "Invalid identifier 'Email'"],
  ["a custom details key with a space", (p) => (p.customDetails = { "Failed logins": "FailedLogins" }), "key 'Failed logins'"],
  ["enabled as text", (p) => (p.enabled = "true" as unknown as boolean), "enabled must be a bool"],
];

describe("the port of Azure-Sentinel's detection template validation", () => {
  it("passes the rule the breaks start from, in both forms", () => {
    expect(templateProblems(passing)).toEqual([]);
    expect(armRuleProblems(passingArm)).toEqual([]);
  });

  it.each(templateBreaks)("refuses a YAML rule with %s", (_name, breakRule, expected) => {
    const rule = clone(passing);
    breakRule(rule);
    expect(templateProblems(rule).join("\n")).toContain(expected);
  });

  it.each(armBreaks)("refuses an ARM rule with %s", (_name, breakRule, expected) => {
    const properties = clone(passingArm);
    breakRule(properties);
    expect(armRuleProblems(properties).join("\n")).toContain(expected);
  });

  it("accepts templateVersion next to the template it names", () => {
    expect(armRuleProblems({ ...passingArm, alertRuleTemplateName: passing.id, templateVersion: "1.0.0" })).toEqual([]);
  });

  it("reads durations and the technique map as the validation does", () => {
    expect([templateMinutes("5m"), templateMinutes("1h"), templateMinutes("14d"), templateMinutes("1w")]).toEqual([5, 60, 20160, Number.NaN]);
    expect([isoMinutes("PT5M"), isoMinutes("PT1H"), isoMinutes("P1D"), isoMinutes("P1DT30M"), isoMinutes("1h"), isoMinutes("PT")]).toEqual([
      5,
      60,
      1440,
      1470,
      Number.NaN,
      Number.NaN,
    ]);
    expect(tacticsOf("T1098.001")).toEqual(["Persistence"]);
    expect(tacticsOf("T1072").sort()).toEqual(["Execution", "LateralMovement"]);
    expect(tacticsOf("T9999")).toEqual([]);
  });
});
