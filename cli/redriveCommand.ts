import type { Command } from "commander";
import { BlobExportStore } from "../shared/blobStore";
import { createAzureCredential, createContainerClients } from "../shared/composition";
import { loadConfig } from "../shared/config";
import { redriveDeadLetters } from "../shared/export/redrive";
import { LogsIngestionSink } from "../shared/logsIngestion";
import { fail } from "./exit";

/**
 * `dbx-audit redrive`: after fixing why Log Analytics refused some records on their own (see
 * each dead-letter blob's reason), sends them again with the app settings in the environment.
 */
export function registerRedriveCommand(program: Command): void {
  program
    .command("redrive")
    .description("Send the records Log Analytics refused on their own (dead-letter/logs-ingestion/ in the state container) again, once their cause is fixed.")
    .option("--dry-run", "only list the dead-letter blobs and their records' reasons")
    .option("--json", "print the result as one JSON line")
    .action(async (flags: { dryRun?: boolean; json?: boolean }) => {
      try {
        const config = loadConfig(process.env);
        if (!config.logsIngestion)
          throw new Error("Log Analytics is not configured: set LOGS_INGESTION_ENDPOINT, LOGS_INGESTION_RULE_ID and LOGS_INGESTION_STREAM.");
        const credential = createAzureCredential(config, process.env);
        const containers = createContainerClients(config.storage!, credential);
        const store = new BlobExportStore(containers.archive, containers.state);
        if (flags.dryRun && !flags.json) {
          for (const name of await store.listDeadLetters()) {
            const letters = await store.readDeadLetters(name);
            process.stdout.write(`${name}: ${letters.length} record(s); ${[...new Set(letters.map((l) => l.reason))].join(" | ")}\n`);
          }
          return;
        }
        const result = await redriveDeadLetters(store, new LogsIngestionSink(config.logsIngestion, credential), { dryRun: flags.dryRun === true });
        process.stdout.write(
          flags.json
            ? `${JSON.stringify(result)}\n`
            : `re-drove ${result.blobs} dead-letter blob(s): ${result.accepted} record(s) accepted, ${result.stillRefused} still refused${result.remaining.length ? ` (left in ${result.remaining.join(", ")})` : ""}\n`,
        );
        if (result.stillRefused > 0) process.exitCode = 1;
      } catch (error) {
        fail(error);
      }
    });
}
