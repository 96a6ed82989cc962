import { ALERTS_DOC_TAIL, OVERRIDES_DOC, REGIONS_DOC } from "./docsText";
import { BUILT_IN_DETECTIONS } from "./catalog";
import { COMBINATION_LABELS, sourceCombination } from "./combination";
import { DEFAULT_MEASURE_NAME } from "./types";
import { windowName } from "./overrides";
import { REPORTS } from "./reports";

/**
 * docs/detections.md, generated from the catalog (`npm run docs:detections`); a test fails when
 * the file in the repository differs from what this renders.
 */
export function renderDetectionsDoc(): string {
  const cell = (text: string) => text.replace(/\|/g, "\\|").replace(/\n/g, " ");
  const rows = BUILT_IN_DETECTIONS.map((d) =>
    [
      `\`${d.name}\``,
      cell(d.description),
      d.windowMinutes === 1440 ? "UTC day (so far, hourly)" : windowName(d.windowMinutes),
      `\`${d.operator} ${d.threshold}\`${d.measure ? " (see below)" : ""}`,
      d.groupBy.join(", "),
      COMBINATION_LABELS[sourceCombination(d)],
      d.severity,
      `${d.tactic} / ${d.technique}`,
      d.origin === "seed" ? `seed #${d.seedEntry}` : "Sentinel",
      `\`${d.measureName ?? (d.measure ? "measure" : DEFAULT_MEASURE_NAME)}\``,
      Object.keys(d.context ?? {})
        .map((name) => `\`${name}\``)
        .join(", "),
    ].join(" | "),
  );
  const measures = BUILT_IN_DETECTIONS.filter((d) => d.measure).map(
    (d) => `- \`${d.name}\`: the threshold applies to ${d.measureNote ?? `\`${d.measure}\``}, not to the events' count.`,
  );
  const reports = REPORTS.map((r) => `| \`${r.name}\` | ${cell(r.description)} | seed #${r.seedEntry} |`);
  return [
    "<!-- Generated from shared/detections/catalog.ts by `npm run docs:detections`; do not edit by hand. -->",
    "",
    "# Detections",
    "",
    `The \`runDetections\` timer evaluates ${BUILT_IN_DETECTIONS.length} detections over \`system.access.audit\` every hour (a few minutes after the export):`,
    "the seed catalog's 30 alerting entries and the Microsoft Sentinel Databricks solution's 4 rules. Each detection counts the",
    "matching events per window and group and raises an alert when the count (or its measure) passes the threshold. An alert's id",
    "is a hash of the detection, the window and the group's values, so each alert is raised exactly once: re-evaluating a window",
    "for late rows never repeats one, and a late row can still raise one.",
    "",
    "Windows: `PT1H` detections evaluate each complete UTC hour (each event alerts once, in its hour). Detections over a UTC day",
    "evaluate the day so far, every hour, and alert once per day and group when they cross the threshold. Detections see every",
    "service and every workspace unless `DETECTIONS_WORKSPACE_IDS` narrows them (account-level events always count).",
    "",
    "| detection | what it catches | window | threshold | per | regions | severity | MITRE ATT&CK | source | measure_name | context |",
    "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ...rows.map((r) => `| ${r} |`),
    "",
    ...measures,
    "",
    "`per`: the group key besides the window. `email` is the principal (`user_identity.email`; for failed logins the",
    "`request_params.user` when the email is empty); `source_ip` has its `:port` removed; `metastore_id` is `request_params.metastore_id`;",
    "`instance_id` is the data plane host, `request_params.instanceId`.",
    "`measure_name`: what an alert's `value` is, as the upstream catalog names its alert column. `context`: what an alert lists",
    "besides the principals, source IPs, workspaces, actions and services (up to 10 distinct values each, each cut at 500 characters).",
    "`regions`: how the detection puts several SQL warehouses (one per region) together; see below.",
    "",
    REGIONS_DOC,
    "## Reports",
    "",
    "The seed's query-only entries run by hand: `dbx-audit report NAME [--days 90] [--output FILE]` (a table on the terminal, JSONL to a file).",
    "",
    "| report | what it lists | source |",
    "| --- | --- | --- |",
    ...reports,
    "",
    OVERRIDES_DOC,
    ALERTS_DOC_TAIL,
  ].join("\n");
}
