import { Command } from "commander";
import { registerExportCommand } from "./exportCommand";
import { registerRunCommand } from "./runCommand";
import { registerSandboxCommand } from "./sandboxCommand";
import { registerDemoCommand } from "./demoCommand";
import { registerCheckCommand } from "./checkCommand";
import { registerRedriveCommand } from "./redriveCommand";
import { registerReconcileCommand } from "./reconcileCommand";
import { registerBackfillCommand } from "./backfillCommand";
import { registerDetectCommand } from "./detectCommand";
import { registerDetectionsCommands } from "./detectionsCommand";

const program = new Command()
  .name("dbx-audit")
  .description("Databricks audit log (system.access.audit) to Azure Blob Storage and Log Analytics / Microsoft Sentinel.")
  .showHelpAfterError()
  .configureOutput({ outputError: (text, write) => write(text) });

registerExportCommand(program);
registerRunCommand(program);
registerCheckCommand(program);
registerRedriveCommand(program);
registerReconcileCommand(program);
registerBackfillCommand(program);
registerDetectCommand(program);
registerDetectionsCommands(program);
registerSandboxCommand(program);
registerDemoCommand(program);

program.parseAsync(process.argv).catch((error: unknown) => {
  process.stderr.write(`${error instanceof Error ? error.message : String(error)}\n`);
  process.exitCode = 1;
});
