import type { Command } from "commander";
import { describeError } from "../shared/errors";
import { DEFAULT_CHECK_BUDGET_MS, runChecks, type CheckReport } from "../shared/prerequisites";
import { collect, settingsFrom } from "./settings";

interface CheckFlags {
  serverHostname?: string;
  httpPath?: string;
  workspaceId?: string[];
  accessToken?: string;
  scope?: string;
  workspaceCheckLookbackHours?: string;
  managedIdentityClientId?: string;
  timeBudgetSeconds?: string;
  quick?: boolean;
  json?: boolean;
}

/**
 * `dbx-audit check`: the prerequisite scanner. Flags are the app settings under the seed
 * scanner's names and win over the environment; the exit code is 0 only when nothing failed.
 */
export function registerCheckCommand(program: Command): void {
  program
    .command("check")
    .description(
      "Check the prerequisites (Azure authentication, SQL warehouse, system.access.audit grants, workspace filter, storage, Log Analytics, export freshness) and print [PASS]/[WARN]/[FAIL] per check, and per source for each SQL warehouse DATABRICKS_SOURCES lists.",
    )
    .option("--server-hostname <host>", "SQL warehouse server hostname (DATABRICKS_SERVER_HOSTNAME)")
    .option("--http-path <path>", "SQL warehouse HTTP path, e.g. /sql/1.0/warehouses/<id> (DATABRICKS_HTTP_PATH)")
    .option("--workspace-id <id>", "workspace ID to check for events; repeatable or a comma list (DATABRICKS_WORKSPACE_IDS)", collect)
    .option("--access-token <token>", "Databricks personal access token instead of an Entra ID token (DATABRICKS_ACCESS_TOKEN)")
    .option("--scope <scope>", "Entra ID scope for the Databricks token, for sovereign clouds (DATABRICKS_SCOPE)")
    .option("--workspace-check-lookback-hours <hours>", "window in which each workspace must have events; default 24 (CHECK_WORKSPACE_LOOKBACK_HOURS)")
    .option("--managed-identity-client-id <id>", "client ID of a user-assigned managed identity (AZURE_CLIENT_ID)")
    .option("--time-budget-seconds <seconds>", `stop waiting (e.g. for a starting warehouse) after this long; default ${DEFAULT_CHECK_BUDGET_MS / 1000}`)
    .option("--quick", "only the checks that read Blob (export state, lag, detections): no warehouse session, so a stopped warehouse stays stopped")
    .option("--json", "print the report as JSON")
    .action(async (flags: CheckFlags) => {
      try {
        await check(flags);
      } catch (error) {
        process.stderr.write(`Error: ${describeError(error)}\n`);
        process.exitCode = 1;
      }
    });
}

async function check(flags: CheckFlags): Promise<void> {
  const budgetSeconds = flags.timeBudgetSeconds === undefined ? DEFAULT_CHECK_BUDGET_MS / 1000 : Number(flags.timeBudgetSeconds);
  if (!Number.isFinite(budgetSeconds) || budgetSeconds < 5 || budgetSeconds > 3600) {
    process.stderr.write(`--time-budget-seconds must be a number of seconds from 5 to 3600; got '${flags.timeBudgetSeconds}'.\n`);
    process.exitCode = 2;
    return;
  }
  const settings = settingsFrom(process.env, {
    DATABRICKS_SERVER_HOSTNAME: flags.serverHostname,
    DATABRICKS_HTTP_PATH: flags.httpPath,
    DATABRICKS_WORKSPACE_IDS: flags.workspaceId?.join(","),
    DATABRICKS_ACCESS_TOKEN: flags.accessToken,
    DATABRICKS_SCOPE: flags.scope,
    CHECK_WORKSPACE_LOOKBACK_HOURS: flags.workspaceCheckLookbackHours,
    AZURE_CLIENT_ID: flags.managedIdentityClientId,
  });
  // Always a fresh run: a person at a terminal asks for the state now (the HTTP function caches its full check).
  const report = await runChecks(settings, process.env, { budgetMs: budgetSeconds * 1000, mode: flags.quick ? "quick" : "full" });
  process.stdout.write(flags.json ? `${JSON.stringify(report, null, 2)}\n` : formatReport(report));
  process.exitCode = report.status === "FAIL" ? 1 : 0;
}

/**
 * `[PASS] name  detail` per check (a per-source check once per source, its detail naming the
 * source when there are several), the remediation under each WARN and FAIL, then each source's
 * status when there are several and a summary line.
 */
export function formatReport(report: CheckReport): string {
  const width = Math.max(...report.checks.map((c) => c.name.length));
  const lines: string[] = [];
  for (const check of report.checks) {
    lines.push(`[${check.status}] ${check.name.padEnd(width)}  ${check.detail}`);
    if (check.status !== "PASS" && check.remediation) lines.push(`${" ".repeat(width + 9)}-> ${check.remediation}`);
  }
  const failed = report.checks.filter((c) => c.status === "FAIL").length;
  const warned = report.checks.filter((c) => c.status === "WARN").length;
  lines.push("");
  // Several warehouses: which of them need attention, at a glance.
  if (report.sources.length > 1) lines.push(`Sources: ${report.sources.map((s) => `${s.name} ${s.status}`).join(", ")}.`);
  lines.push(
    `${report.status}${report.mode === "quick" ? " (quick: Blob only, no warehouse session)" : ""}: ${report.checks.length - failed - warned} passed, ${warned} warning${warned === 1 ? "" : "s"}, ${failed} failed (${(report.durationMs / 1000).toFixed(1)} s).`,
  );
  return `${lines.join("\n")}\n`;
}
