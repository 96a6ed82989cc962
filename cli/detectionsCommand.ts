import { writeFileSync } from "node:fs";
import type { Command } from "commander";
import { loadConfig } from "../shared/config";
import { createAzureCredential } from "../shared/composition";
import { Warehouse } from "../shared/databricks";
import { ConfigError } from "../shared/errors";
import { OVERRIDES_SCHEMA, windowName } from "../shared/detections/overrides";
import { REPORTS, reportQuery } from "../shared/detections/reports";
import { catalogFromFile } from "./detectCommand";
import { fail } from "./exit";

/** `dbx-audit detections` (the catalog) and `dbx-audit report NAME` (a query-only entry). */
export function registerDetectionsCommands(program: Command): void {
  program
    .command("detections")
    .description("List the detection catalog (with the overrides file applied): status, window, threshold, severity, MITRE ATT&CK.")
    .option("--config <file>", "overrides file, YAML or JSON (DETECTIONS_CONFIG)")
    .option("--json", "print the catalog as JSON")
    .option("--schema", "print the overrides file's JSON Schema and exit")
    .action((flags: { config?: string; json?: boolean; schema?: boolean }) => {
      if (flags.schema) {
        process.stdout.write(`${JSON.stringify(OVERRIDES_SCHEMA, null, 2)}\n`);
        return;
      }
      const catalog = catalogFromFile(flags.config ?? process.env.DETECTIONS_CONFIG?.trim() ?? undefined);
      for (const problem of catalog.errors) process.stderr.write(`warning: ${problem}\n`);
      if (flags.json) {
        process.stdout.write(`${JSON.stringify(catalog.detections, null, 2)}\n`);
      } else {
        const rows = catalog.detections.map((d) => ({
          name: d.name,
          status: d.enabled ? "enabled" : "disabled",
          window: windowName(d.windowMinutes),
          threshold: `${d.operator} ${d.threshold}`,
          severity: d.severity,
          mitre: `${d.tactic} ${d.technique}`.trim(),
          origin: d.origin,
        }));
        process.stdout.write(table(rows));
      }
      if (catalog.errors.length > 0) process.exitCode = 2;
    });

  program
    .command("report <name>")
    .description(`Run a query-only entry of the catalog (${REPORTS.length} reports: ${REPORTS.map((r) => r.name).join(", ")}).`)
    .option("--days <n>", "how many days back from now", "90")
    .option("--output <file>", "write JSONL to this file instead of a table on the terminal")
    .action(async (name: string, flags: { days: string; output?: string }) => {
      try {
        await report(name, flags);
      } catch (error) {
        fail(error);
      }
    });
}

async function report(name: string, flags: { days: string; output?: string }): Promise<void> {
  const problems: string[] = [];
  const entry = REPORTS.find((r) => r.name === name);
  if (!entry) problems.push(`'${name}' is not a report; reports: ${REPORTS.map((r) => r.name).join(", ")}.`);
  const days = Number(flags.days);
  if (!Number.isInteger(days) || days < 1 || days > 365)
    problems.push(`--days must be a whole number from 1 to 365 (the audit table keeps 365 days); got '${flags.days}'.`);
  let config: ReturnType<typeof loadConfig> | undefined;
  try {
    config = loadConfig(process.env, { storage: false });
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    problems.push(...error.problems);
  }
  if (problems.length > 0 || !config || !entry) throw new ConfigError(problems);
  const credential = config.databricks.accessToken ? undefined : createAzureCredential(config, process.env);
  const warehouse = await Warehouse.connect(config.databricks, credential);
  let rows: Record<string, unknown>[];
  try {
    rows = await warehouse.all(reportQuery(entry, Date.now(), days));
  } finally {
    await warehouse.close();
  }
  if (flags.output) {
    writeFileSync(flags.output, rows.map((row) => `${JSON.stringify(row)}\n`).join(""));
    process.stderr.write(`${rows.length} row(s) written to ${flags.output}\n`);
  } else {
    process.stdout.write(rows.length > 0 ? table(rows) : "(no rows)\n");
  }
}

/** Columns padded to their widest value; dates as ISO text. */
export function table(rows: readonly Record<string, unknown>[]): string {
  if (rows.length === 0) return "";
  const columns = Object.keys(rows[0]!);
  const cells = rows.map((row) => columns.map((c) => cellText(row[c])));
  const widths = columns.map((c, i) => Math.max(c.length, ...cells.map((r) => r[i]!.length)));
  const line = (values: string[]) =>
    values
      .map((v, i) => v.padEnd(widths[i]!))
      .join("  ")
      .trimEnd();
  return `${[line(columns), line(widths.map((w) => "-".repeat(w))), ...cells.map(line)].join("\n")}\n`;
}

function cellText(value: unknown): string {
  if (value === null || value === undefined) return "";
  if (value instanceof Date) return value.toISOString();
  if (typeof value === "string") return value;
  if (typeof value === "number" || typeof value === "bigint" || typeof value === "boolean") return value.toString();
  return JSON.stringify(value);
}
