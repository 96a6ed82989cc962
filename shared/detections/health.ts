import type { ContainerClient } from "@azure/storage-blob";
import { type Settings } from "../config";
import { DETECTIONS_DEFAULTS } from "./config";
import { describeError, redactSecrets } from "../errors";
import type { CheckResult, CheckStatus } from "../checks/result";
import { formatAge, scheduleIntervalMs } from "../checks/schedule";
import { parseTimestampMicros } from "../timestamps";
import { DETECTIONS_STATE_BLOB, type DetectionsState } from "./state";
import { BlobDetectionsStore } from "./store";

/**
 * The `detections_state` check: the last window the detections evaluated, their lag, the last
 * error of any detection, sources (SQL warehouses) that failed in the last run and the windows
 * waiting for them, alerts still waiting for Log Analytics and problems of the overrides file.
 * No state yet is a WARN, as for the export: the state cannot tell a fresh deployment from a
 * timer that never fires, and a WARN says what to look at without failing the check.
 */

const FRESH_INTERVALS = 2;
const STALE_INTERVALS = 6;
/** Windows end on a whole hour, after the settle delay: a healthy lag reaches about an hour plus an interval. */
const WINDOW_SLACK_MS = 3_600_000 + 15 * 60_000;
const READ_TIMEOUT_MS = 10_000;

type DetectionsCheck = Omit<CheckResult, "name"> & { name: "detections_state" };

export async function detectionsStateCheck(container: ContainerClient, settings: Settings, nowMs: number): Promise<DetectionsCheck> {
  const schedule = settings.DETECTIONS_SCHEDULE?.trim() || DETECTIONS_DEFAULTS.schedule;
  let timer: NodeJS.Timeout | undefined;
  try {
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`reading ${DETECTIONS_STATE_BLOB} took longer than ${READ_TIMEOUT_MS / 1000} s`)), READ_TIMEOUT_MS);
    });
    const stored = await Promise.race([new BlobDetectionsStore(container).readState(), timeout]);
    return { name: "detections_state", ...assessDetections(stored?.state ?? null, schedule, nowMs) };
  } catch (error) {
    return {
      name: "detections_state",
      status: "WARN",
      detail: `Could not read the detections state ${DETECTIONS_STATE_BLOB}: ${describeError(error)}`,
      remediation:
        "Retry in a few minutes; if the blob is corrupt, delete it: the next run starts again from the late-row horizon (alerts already raised inside it may be raised again).",
    };
  } finally {
    clearTimeout(timer);
  }
}

export function assessDetections(state: DetectionsState | null, schedule: string, nowMs: number): Omit<CheckResult, "name"> {
  const intervalMs = scheduleIntervalMs(schedule);
  const every = `DETECTIONS_SCHEDULE '${schedule}' runs at least every ${formatAge(intervalMs)}`;
  const lookAtRuns =
    "Look at the runDetections invocations and their errors (Application Insights), fix what they report (a detection's SQL, the overrides file, a warehouse, each source of DATABRICKS_SOURCES: 'dbx-audit check'), then let the timer catch up; 'dbx-audit detect' evaluates a range by hand.";
  if (!state) {
    return {
      status: "WARN",
      detail: `The detections have not run yet (no ${DETECTIONS_STATE_BLOB}); ${every}.`,
      remediation: `The runDetections timer writes its state on its first run. If the app was deployed more than one interval ago, check that the function app runs and the timer fires; ${lookAtRuns}`,
    };
  }
  const positions = Object.entries(state.detections).flatMap(([name, p]) => {
    const us = p.evaluatedUntil ? parseTimestampMicros(p.evaluatedUntil) : undefined;
    return us === undefined ? [] : [{ name, us }];
  });
  const failing = Object.entries(state.detections).filter(([, p]) => p.lastError);
  const notes: string[] = [];
  if (failing.length > 0) {
    const [name, first] = failing[0]!;
    notes.push(`${failing.length} detection(s) failing (${failing.map(([n]) => n).join(", ")}); ${name}: ${redactSecrets(first.lastError ?? "")}`);
  }
  const failingSources = Object.entries(state.sources ?? {}).filter(([, s]) => s.lastError);
  if (failingSources.length > 0) {
    const [name, first] = failingSources[0]!;
    notes.push(
      `${failingSources.length} source(s) failed in the last run (${failingSources.map(([n]) => n).join(", ")}; the detections went on over the others); ${name}: ${redactSecrets(first.lastError ?? "")}`,
    );
  }
  const behind = sourcesBehind(state);
  for (const [source, { sinceUs, detections }] of behind) {
    notes.push(
      `windows of ${detections} detection(s) from ${new Date(sinceUs / 1000).toISOString()} wait to be evaluated again over source ${source}, once it answers (up to a week back)`,
    );
  }
  if (state.pending.length > 0) notes.push(`${state.pending.length} alert(s) in Blob still waiting for Log Analytics`);
  if (state.configErrors && state.configErrors.length > 0)
    notes.push(`the overrides file has ${state.configErrors.length} problem(s): ${state.configErrors[0]}`);
  if (state.lock && state.lock.expiresAtMs > nowMs) notes.push(`a run (${state.lock.runId}) holds the lock`);
  const tail = notes.length > 0 ? ` Note: ${notes.join("; ")}.` : "";
  if (positions.length === 0) {
    return {
      status: "WARN",
      detail: `No detection has evaluated a window yet${state.lastRunAt ? ` (last run started ${state.lastRunAt})` : ""}; ${every}.${tail}`,
      remediation: lookAtRuns,
    };
  }
  const laggiest = positions.reduce((a, b) => (b.us < a.us ? b : a));
  const latest = positions.reduce((a, b) => (b.us > a.us ? b : a));
  const lagMs = Math.max(0, nowMs - laggiest.us / 1000);
  const detail = `Last window evaluated ends ${new Date(latest.us / 1000).toISOString()}; lag ${formatAge(lagMs)}${
    laggiest.us < latest.us ? ` (${laggiest.name} is furthest behind)` : ""
  }; ${every}.${tail}`;
  let status: CheckStatus =
    lagMs <= FRESH_INTERVALS * intervalMs + WINDOW_SLACK_MS ? "PASS" : lagMs <= STALE_INTERVALS * intervalMs + WINDOW_SLACK_MS ? "WARN" : "FAIL";
  const problems = failing.length + failingSources.length + behind.size + state.pending.length + (state.configErrors?.length ?? 0);
  if (status === "PASS" && problems > 0) status = "WARN";
  return { status, detail, remediation: status === "PASS" ? "" : lookAtRuns };
}

/** Per source: the earliest window evaluated without it, and how many detections wait for it. */
function sourcesBehind(state: DetectionsState): Map<string, { sinceUs: number; detections: number }> {
  const behind = new Map<string, { sinceUs: number; detections: number }>();
  for (const progress of Object.values(state.detections)) {
    for (const [source, iso] of Object.entries(progress.sourcesBehind ?? {})) {
      const us = parseTimestampMicros(iso);
      if (us === undefined) continue;
      const seen = behind.get(source);
      behind.set(source, { sinceUs: Math.min(seen?.sinceUs ?? us, us), detections: (seen?.detections ?? 0) + 1 });
    }
  }
  return behind;
}
