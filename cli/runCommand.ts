import type { Command } from "commander";
import { loadConfig } from "../shared/config";
import { formatSummary, runExportCycle } from "../shared/exportCycle";
import type { ExportSummary } from "../shared/exporter";
import { fail } from "./exit";
import { progressBar, type Progress } from "./progress";

interface RunFlags {
  untilCaughtUp?: boolean;
  maxCycles?: string;
  json?: boolean;
  progress?: boolean;
}

export function registerRunCommand(program: Command): void {
  program
    .command("run")
    .description("Run one export cycle from the app settings in the environment, through the same code as the timer function.")
    .option("--until-caught-up", "repeat cycles until the export reaches now minus the settle delay (backfills in one go)")
    .option("--max-cycles <n>", "with --until-caught-up: stop after this many cycles", "1000")
    .option("--json", "print each cycle's summary as one JSON line")
    .option("--no-progress", "no progress bar even on a terminal")
    .action(async (flags: RunFlags) => {
      try {
        await run(flags);
      } catch (error) {
        fail(error);
      }
    });
}

async function run(flags: RunFlags): Promise<void> {
  const config = loadConfig(process.env);
  const maxCycles = flags.untilCaughtUp ? Number(flags.maxCycles) : 1;
  if (!Number.isInteger(maxCycles) || maxCycles < 1) throw new Error(`--max-cycles must be a whole number above 0; got '${flags.maxCycles}'.`);
  const log = { info: (m: string) => process.stderr.write(`${m}\n`), warn: (m: string) => process.stderr.write(`warning: ${m}\n`) };
  let bar: Progress | undefined;
  for (let cycle = 1; cycle <= maxCycles; cycle++) {
    let summary: ExportSummary;
    try {
      summary = await runExportCycle(config, process.env, log, {
        onProgress: ({ cursorUs, targetUs, eventsDelivered }) => {
          bar ??= progressBar(flags.progress !== false && !flags.json, cursorUs, targetUs);
          bar.update(cursorUs, eventsDelivered);
        },
      });
    } finally {
      bar?.stop();
      bar = undefined;
    }
    process.stdout.write(`${flags.json ? JSON.stringify(summary) : formatSummary(summary, config.logsIngestion !== undefined)}\n`);
    if (summary.caughtUp) return;
  }
}
