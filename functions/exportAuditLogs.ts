import { app, type InvocationContext, type Timer } from "@azure/functions";
import { DEFAULTS, loadConfig } from "../shared/config";
import { ConcurrentRunError, ConfigError, DeliveryError, describeError } from "../shared/errors";
import { formatSummary, runExportCycle } from "../shared/export/cycle";
import type { ExportSummary } from "../shared/export/engine";
import { readHostFunctionTimeout } from "../shared/hostSettings";

/** Hourly: new rows of system.access.audit to Blob Storage and Log Analytics, exactly once. */
export async function exportAuditLogs(timer: Timer, context: InvocationContext): Promise<void> {
  let config;
  try {
    config = loadConfig(process.env, { storage: true, functionTimeout: readHostFunctionTimeout() ?? DEFAULTS.functionTimeoutHost });
  } catch (error) {
    context.error(`exportAuditLogs cannot start: ${error instanceof ConfigError ? error.message : describeError(error)}`);
    throw error;
  }
  if (timer.isPastDue) context.warn("exportAuditLogs is running late (past due); it continues from its saved cursor.");
  try {
    const summary = await runExportCycle(config, process.env, { info: (m) => context.log(m), warn: (m) => context.warn(m) });
    context.log(formatSummary(summary));
  } catch (error) {
    if (error instanceof ConcurrentRunError) {
      context.warn(error.message);
      return;
    }
    // Log Analytics behind: the archive did its work; the summary says how far behind and why.
    if (error instanceof DeliveryError && error.summary) context.log(formatSummary(error.summary as ExportSummary));
    context.error(`exportAuditLogs failed: ${describeError(error)}`);
    throw error;
  }
}

app.timer("exportAuditLogs", {
  // Read, not validated, at load: a bad value is reported by the handler, not by a crash at start-up.
  schedule: process.env.EXPORT_SCHEDULE?.trim() || DEFAULTS.schedule,
  runOnStartup: false,
  useMonitor: true,
  handler: exportAuditLogs,
});
