import { createWriteStream, renameSync, rmSync, type WriteStream } from "node:fs";
import { once } from "node:events";
import type { Command } from "commander";
import { loadConfig, readWorkspaceIds, type AuditFilter } from "../shared/config";
import { createAzureCredential } from "../shared/composition";
import { Warehouse, cloudFetchFor, isExpiredResultLinkError } from "../shared/databricks";
import { boundedScan } from "../shared/export/boundedScan";
import { ConfigError } from "../shared/errors";
import { parseTimestampMicros, microsToIso } from "../shared/timestamps";
import { collect, settingsFrom } from "./settings";
import { progressBar } from "./progress";
import { fail } from "./exit";

interface ExportFlags {
  serverHostname?: string;
  httpPath?: string;
  workspaceId?: string[];
  includeAccountLevel?: boolean;
  start?: string;
  end?: string;
  output?: string;
  services?: string;
  accessToken?: string;
  managedIdentityClientId?: string;
  progress?: boolean;
}

export function registerExportCommand(program: Command): void {
  program
    .command("export")
    .description("Stream the audit events of a time window [start, end) to a JSONL file, one event per line with the table's column names.")
    .option("--server-hostname <host>", "SQL warehouse server hostname, may carry :port (DATABRICKS_SERVER_HOSTNAME)")
    .option("--http-path <path>", "SQL warehouse HTTP path, e.g. /sql/1.0/warehouses/<id> (DATABRICKS_HTTP_PATH)")
    .option(
      "--workspace-id <id>",
      "only this workspace's events (repeat or comma-separate for several); default: every workspace the warehouse sees, with account-level events",
      collect,
    )
    .option("--include-account-level", 'with --workspace-id: also export account-level events (workspace_id "0")')
    .requiredOption("--start <timestamp>", "window start, included (ISO-8601, e.g. 2024-09-01T00:00:00Z)")
    .requiredOption("--end <timestamp>", "window end, excluded (ISO-8601)")
    .requiredOption("--output <file>", "JSONL file to write, or - for standard output")
    .option("--services <list>", "comma-separated service_name values (default: the documented workspace-level list; * for all) (AUDIT_SERVICES)")
    .option("--access-token <token>", "Databricks personal access token instead of Entra ID (DATABRICKS_ACCESS_TOKEN)")
    .option("--managed-identity-client-id <id>", "use this user-assigned managed identity (AZURE_CLIENT_ID)")
    .option("--no-progress", "no progress bar even on a terminal")
    .action(async (flags: ExportFlags) => {
      try {
        await exportWindow(flags);
      } catch (error) {
        fail(error);
      }
    });
}

async function exportWindow(flags: ExportFlags): Promise<void> {
  const settings = settingsFrom(process.env, {
    DATABRICKS_SERVER_HOSTNAME: flags.serverHostname,
    DATABRICKS_HTTP_PATH: flags.httpPath,
    DATABRICKS_ACCESS_TOKEN: flags.accessToken,
    AZURE_CLIENT_ID: flags.managedIdentityClientId,
    AUDIT_SERVICES: flags.services,
  });
  const problems: string[] = [];
  let config: ReturnType<typeof loadConfig> | undefined;
  try {
    // Only what this command uses: the export's storage and schedule settings don't matter here.
    config = loadConfig(
      pick(settings, [
        "DATABRICKS_SERVER_HOSTNAME",
        "DATABRICKS_HTTP_PATH",
        "DATABRICKS_ACCESS_TOKEN",
        "DATABRICKS_SCOPE",
        "AZURE_CLIENT_ID",
        "AUDIT_SERVICES",
        "AUDIT_REDACT_PARAMS",
      ]),
      { storage: false },
    );
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    problems.push(...error.problems.map(renameToFlags));
  }
  const workspaceIds = readWorkspaceIds((flags.workspaceId ?? []).join(","), "--workspace-id", problems);
  const startUs = parseTimestampMicros(flags.start ?? "");
  const endUs = parseTimestampMicros(flags.end ?? "");
  if (startUs === undefined) problems.push(`--start must be an ISO-8601 timestamp such as 2024-09-01T00:00:00Z; got '${flags.start}'.`);
  if (endUs === undefined) problems.push(`--end must be an ISO-8601 timestamp such as 2024-09-02T00:00:00Z; got '${flags.end}'.`);
  if (startUs !== undefined && endUs !== undefined && endUs <= startUs)
    problems.push(`--end (${flags.end}) must be after --start (${flags.start}): the window is [start, end).`);
  if (!flags.output) problems.push("--output is required: a file path, or - for standard output.");
  if (problems.length > 0 || !config) throw new ConfigError(problems);

  const filter: AuditFilter = {
    workspaceIds,
    services: config.filter.services,
    includeAccountLevel: workspaceIds.length === 0 || flags.includeAccountLevel === true,
  };
  const credential = config.databricks.accessToken ? undefined : createAzureCredential(config, process.env);
  // As the timer's export: DATABRICKS_CLOUD_FETCH, else this machine's memory limit.
  const warehouse = await Warehouse.connect(config.databricks, credential, { cloudFetch: cloudFetchFor(config.cloudFetch, process.constrainedMemory?.()) });
  const toStdout = flags.output === "-";
  const partialPath = toStdout ? "" : `${flags.output}.partial`;
  const out: WriteStream | NodeJS.WriteStream = toStdout ? process.stdout : createWriteStream(partialPath, { encoding: "utf8" });
  const bar = progressBar(flags.progress !== false && !toStdout, startUs!, endUs!);
  let events = 0;
  try {
    const scan = boundedScan(warehouse, {
      filter,
      after: { timeUs: startUs!, eventId: "" },
      toUs: endUs!,
      preparation: { redaction: config.redaction, ingestionOn: false },
      isRecoverable: isExpiredResultLinkError,
    });
    for await (const chunk of scan) {
      if (!out.write(Buffer.concat(chunk.map((e) => e.line)))) await once(out, "drain");
      events += chunk.length;
      bar.update(chunk[chunk.length - 1]!.timeUs, events);
    }
    if (!toStdout) {
      await new Promise<void>((resolve, reject) => (out as WriteStream).end((error?: Error | null) => (error ? reject(error) : resolve())));
      renameSync(partialPath, flags.output!);
    }
    bar.stop();
    process.stderr.write(
      `Exported ${events} events from ${microsToIso(startUs!)} to ${microsToIso(endUs!)} (end excluded)${toStdout ? "" : ` to ${flags.output}`}.\n`,
    );
  } catch (error) {
    bar.stop();
    if (!toStdout) {
      (out as WriteStream).destroy();
      rmSync(partialPath, { force: true });
    }
    throw error;
  } finally {
    await warehouse.close();
  }
}

function pick(settings: Record<string, string | undefined>, names: string[]): Record<string, string | undefined> {
  return Object.fromEntries(names.map((n) => [n, settings[n]]));
}

const FLAG_NAMES: Record<string, string> = {
  DATABRICKS_SERVER_HOSTNAME: "--server-hostname (DATABRICKS_SERVER_HOSTNAME)",
  DATABRICKS_HTTP_PATH: "--http-path (DATABRICKS_HTTP_PATH)",
  AZURE_CLIENT_ID: "--managed-identity-client-id (AZURE_CLIENT_ID)",
  AUDIT_SERVICES: "--services (AUDIT_SERVICES)",
};

/** The CLI names its flags in messages; the setting name stays alongside for those who use settings. */
export function renameToFlags(problem: string): string {
  return Object.entries(FLAG_NAMES).reduce((text, [setting, flag]) => (text.startsWith(setting) ? flag + text.slice(setting.length) : text), problem);
}
