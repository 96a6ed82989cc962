import type { Command } from "commander";
import { fail } from "./exit";

export function registerSandboxCommand(program: Command): void {
  program
    .command("sandbox")
    .description(
      "Start the local stack (SQL warehouse stand-in, Azurite, Logs Ingestion and managed identity stand-ins) on loopback; print one JSON line describing it; run until SIGINT/SIGTERM.",
    )
    .option(
      "--events <file>",
      "load these audit rows (JSONL, the table's column names); repeat for several regions: one warehouse stand-in per file, named region1, region2, ... in flag order",
      (file: string, files: string[]) => [...files, file],
      [] as string[],
    )
    .option("--synthetic <n>", "load N synthetic audit rows (into the first warehouse)", (v) => Number(v))
    .option("--no-cloud-fetch", "answer large results inline instead of through CloudFetch links (a real warehouse uses links)")
    .action(async (flags: { events: string[]; synthetic?: number; cloudFetch: boolean }) => {
      try {
        if (flags.synthetic !== undefined && (!Number.isInteger(flags.synthetic) || flags.synthetic < 0)) {
          throw new Error(`--synthetic must be a whole number of rows (0 or more); got '${String(flags.synthetic)}'.`);
        }
        // Test-support code: loaded only when asked for, never by the Functions host.
        const { startSandboxStack, stopOnSignals } = await import("../sandbox/stack.js");
        const stack = await startSandboxStack({
          eventsFiles: flags.events,
          ...(flags.synthetic !== undefined ? { synthetic: flags.synthetic } : {}),
          cloudFetch: flags.cloudFetch,
        });
        stopOnSignals(stack);
        process.stdout.write(`${JSON.stringify(stack.contract)}\n`);
      } catch (error) {
        fail(error);
        process.exit();
      }
    });
}
