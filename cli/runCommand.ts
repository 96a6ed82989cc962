import type { Command } from "commander";
import { DEFAULTS, loadConfig } from "../shared/config";
import { DeliveryError } from "../shared/errors";
import { readHostFunctionTimeout } from "../shared/hostSettings";
import { formatSummary, runExportCycle } from "../shared/export/cycle";
import type { ExportSummary } from "../shared/export/engine";
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
  // The same settings the deployed app runs with, checked the same way (host.json included).
  const config = loadConfig(process.env, { storage: true, functionTimeout: readHostFunctionTimeout() ?? DEFAULTS.functionTimeoutHost });
  const maxCycles = flags.untilCaughtUp ? Number(flags.maxCycles) : 1;
  if (!Number.isInteger(maxCycles) || maxCycles < 1) throw new Error(`--max-cycles must be a whole number above 0; got '${flags.maxCycles}'.`);
  const log = { info: (m: string) => process.stderr.write(`${m}\n`), warn: (m: string) => process.stderr.write(`warning: ${m}\n`) };
  let bar: Progress | undefined;
  // Log Analytics lagging fails a cycle after the archive did its work: the archive goes on,
  // and the command fails at the end with the last reason.
  let lagging: DeliveryError | undefined;
  for (let cycle = 1; cycle <= maxCycles; cycle++) {
    let summary: ExportSummary;
    // With several sources the bar follows the one furthest behind, and counts every source's events.
    const sources = new Map<string, { cursorUs: number; targetUs: number; events: number }>();
    try {
      summary = await runExportCycle(config, process.env, log, {
        onProgress: ({ source, cursorUs, targetUs, eventsDelivered }) => {
          sources.set(source, { cursorUs, targetUs, events: eventsDelivered });
          const all = [...sources.values()];
          const cursor = Math.min(...all.map((s) => s.cursorUs));
          bar ??= progressBar(flags.progress !== false && !flags.json, cursor, Math.max(...all.map((s) => s.targetUs)));
          bar.update(
            cursor,
            all.reduce((total, s) => total + s.events, 0),
          );
        },
      });
    } catch (error) {
      if (!(error instanceof DeliveryError) || !error.summary) throw error;
      lagging = error;
      summary = error.summary as ExportSummary;
    } finally {
      bar?.stop();
      bar = undefined;
    }
    process.stdout.write(`${flags.json ? JSON.stringify(summary) : formatSummary(summary)}\n`);
    // A source that failed fails again at once: the next cycle waits for its fix.
    if (summary.caughtUp || summary.sources.some((s) => s.status === "failed")) break;
  }
  if (lagging) throw lagging;
}
