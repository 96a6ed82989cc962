#!/usr/bin/env node
// npm run sentinel: the analytic rules of sentinel/analytic-rules/*.yaml (the Azure-Sentinel
// repository's schema, what people read, review and import) as the ARM properties of
// Microsoft.SecurityInsights/alertRules, in sentinel/analytic-rules.json. Bicep cannot read YAML;
// infra/app/sentinel-content.bicep loads that JSON with loadJsonContent. The YAML files are the
// source: edit them and run this again; `--check` (the tests run it) fails when the JSON is stale.
// It also writes the generated parts of the ASIM parsers and of docs/asim.md from the mapping table
// sentinel/parsers/DatabricksAsimMapping.json (scripts/asim-parsers.mjs), checked the same way.
//
// Usage: node scripts/sentinel-content.mjs [--check] [--rules DIR] [--out FILE] [--root DIR]
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parse } from "yaml";
import { renderAsimFiles } from "./asim-parsers.mjs";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");

const OPERATORS = { gt: "GreaterThan", lt: "LessThan", eq: "Equal", ne: "NotEqual" };

/** '1h' -> 'PT1H', '14d' -> 'P14D', '5m' -> 'PT5M': the schema's durations as ARM's ISO 8601. */
export function isoDuration(value) {
  const match = /^(\d+)([mhd])$/.exec(String(value));
  if (!match) throw new Error(`not a duration of the rule schema (like 5m, 1h, 14d): ${value}`);
  const [, amount, unit] = match;
  return unit === "d" ? `P${amount}D` : `PT${amount}${unit.toUpperCase()}`;
}

// No templateVersion: Sentinel refuses it on a rule that names no alertRuleTemplateName, and ours
// are custom rules, not made from a gallery template. The YAML's version stays for reviewers.
export function toAlertRule(rule) {
  const grouping = rule.incidentConfiguration?.groupingConfiguration;
  const properties = {
    displayName: rule.name,
    description: rule.description.trim(),
    severity: rule.severity,
    enabled: true,
    query: rule.query.trim(),
    queryFrequency: isoDuration(rule.queryFrequency),
    queryPeriod: isoDuration(rule.queryPeriod),
    triggerOperator: OPERATORS[rule.triggerOperator] ?? rule.triggerOperator,
    triggerThreshold: rule.triggerThreshold,
    suppressionDuration: "PT5H",
    suppressionEnabled: false,
    tactics: rule.tactics,
    techniques: rule.relevantTechniques,
    entityMappings: rule.entityMappings,
    customDetails: rule.customDetails,
    eventGroupingSettings: rule.eventGroupingSettings,
    incidentConfiguration: {
      createIncident: rule.incidentConfiguration.createIncident,
      groupingConfiguration: grouping && { ...grouping, lookbackDuration: isoDuration(grouping.lookbackDuration) },
    },
  };
  if (rule.alertDetailsOverride) properties.alertDetailsOverride = rule.alertDetailsOverride;
  return { id: rule.id, kind: rule.kind, properties };
}

export function readRules(dir) {
  return readdirSync(dir)
    .filter((name) => name.endsWith(".yaml"))
    .sort()
    .map((name) => ({ file: name, rule: parse(readFileSync(join(dir, name), "utf8")) }));
}

export function render(dir) {
  return `${JSON.stringify(
    readRules(dir).map(({ rule }) => toAlertRule(rule)),
    null,
    2,
  )}\n`;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const flag = (name) => {
    const at = process.argv.indexOf(name);
    return at > 0 ? process.argv[at + 1] : undefined;
  };
  const dir = resolve(flag("--rules") ?? join(root, "sentinel", "analytic-rules"));
  const out = resolve(flag("--out") ?? join(root, "sentinel", "analytic-rules.json"));
  const text = render(dir);
  const asimFiles = renderAsimFiles(resolve(flag("--root") ?? root));
  if (process.argv.includes("--check")) {
    let current = "";
    try {
      current = readFileSync(out, "utf8");
    } catch {
      // missing: stale
    }
    const stale = current === text ? [] : [`${out} does not match the rules in ${dir}`];
    for (const file of asimFiles) {
      if (readFileSync(file.path, "utf8") !== file.text) stale.push(`${file.path} does not match sentinel/parsers/DatabricksAsimMapping.json`);
    }
    if (stale.length > 0) {
      console.error(`${stale.join("\n")}: run npm run sentinel`);
      process.exit(1);
    }
  } else {
    writeFileSync(out, text);
    for (const file of asimFiles) writeFileSync(file.path, file.text);
  }
}
