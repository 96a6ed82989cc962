import { app, type InvocationContext, type Timer } from "@azure/functions";
import { DETECTIONS_DEFAULTS, loadDetectionsConfig } from "../shared/detections/config";
import { ConcurrentRunError, ConfigError, describeError } from "../shared/errors";
import { runDetectionsCycle } from "../shared/detections/cycle";
import { formatDetectionsSummary, runProblems } from "../shared/detections/runner";

/**
 * Hourly, after the export: every enabled detection over its complete windows (and the windows
 * late rows can still change) on every source (SQL warehouse, one per region), each alert
 * exactly once, to Blob and Log Analytics. A source that fails does not stop the others; the
 * invocation then fails, after the summary line says which.
 */
export async function runDetections(timer: Timer, context: InvocationContext): Promise<void> {
  let config;
  try {
    config = loadDetectionsConfig(process.env);
  } catch (error) {
    context.error(`runDetections cannot start: ${error instanceof ConfigError ? error.message : describeError(error)}`);
    throw error;
  }
  if (timer.isPastDue) context.warn("runDetections is running late (past due); it continues from its saved windows.");
  try {
    const { summary } = await runDetectionsCycle(config, process.env, { info: (m) => context.log(m), warn: (m) => context.warn(m) });
    context.log(formatDetectionsSummary(summary));
    const problems = runProblems(summary);
    if (problems.length > 0) {
      throw new Error(`runDetections finished with failures (every other detection's and source's alerts were delivered): ${problems.join("; ")}`);
    }
  } catch (error) {
    if (error instanceof ConcurrentRunError) {
      context.warn(error.message);
      return;
    }
    context.error(`runDetections failed: ${describeError(error)}`);
    throw error;
  }
}

app.timer("runDetections", {
  // Read, not validated, at load: a bad value is reported by the handler, not by a crash at start-up.
  schedule: process.env.DETECTIONS_SCHEDULE?.trim() || DETECTIONS_DEFAULTS.schedule,
  runOnStartup: false,
  useMonitor: true,
  handler: runDetections,
});
