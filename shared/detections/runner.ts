import { randomUUID } from "node:crypto";
import { ConcurrentRunError, describeError } from "../errors";
import { microsToIso, parseTimestampMicros } from "../timestamps";
import { alertBlobName, alertRecord, type AlertLine, type AlertRecord } from "./alerts";
import { evaluateDetection, type QuerySource } from "./evaluate";
import { DetectionsStateConflictError, initialDetectionsState, type DetectionsState, type DetectionsStore, type PendingAlert } from "./state";
import type { Detection } from "./types";
import { evaluationEndUs, forgetBeforeUs, planEvaluation } from "./windows";

/**
 * One run of the detections (the `runDetections` timer). No SDK, no environment, no clock of
 * its own: the warehouse, the store, Log Analytics and time come in through the ports.
 *
 * Protocol:
 *  1. take the lock (conditional state write); a live lock held by another run stops this one;
 *  2. evaluate every enabled detection, one after the other on the one warehouse session, over
 *     its new windows and the windows still inside the late-row horizon; a detection that fails
 *     (its SQL, the warehouse) is recorded and skipped, the others go on;
 *  3. write each new alert (an id not raised before) to Blob, one deterministic blob per alert;
 *  4. record them as pending and advance each detection's position (conditional write);
 *  5. send every pending alert to Log Analytics; the ones it confirmed become raised, the rest
 *     stay pending for the next run; release the lock.
 * A crash between 3 and 4 re-finds the same ids next run and overwrites the same blobs.
 */

export interface AlertsSink {
  /** Sends the records; answers the AlertIds Log Analytics did not accept, and why. */
  send(records: AlertRecord[]): Promise<{ failedIds: string[]; error?: string }>;
}

export interface DetectionsLog {
  info(message: string): void;
  warn(message: string): void;
}

export interface DetectionsRunOptions {
  detections: readonly Detection[];
  /** Empty: every workspace. */
  workspaceIds: readonly string[];
  settleDelayMs: number;
  lateHorizonMs: number;
  /** Problems of the overrides file, kept in the state for the health check. */
  configErrors?: readonly string[];
  lockTtlMs?: number;
  blobConcurrency?: number;
}

export interface DetectionsRunDeps {
  source: QuerySource;
  store: DetectionsStore;
  /** Log Analytics, when LOGS_INGESTION_ALERTS_STREAM and its endpoint and rule are set. */
  alerts?: AlertsSink;
  /** Milliseconds since the epoch. */
  now: () => number;
  log: DetectionsLog;
}

export interface DetectionOutcome {
  name: string;
  windows: number;
  /** New alerts (ids not raised before) this run wrote. */
  alerts: number;
  warehouseMs: number;
  error?: string;
}

export interface DetectionsRunSummary {
  runId: string;
  /** Windows end here (exclusive): now minus the settle delay, on an hour. */
  evaluatedUntil: string;
  windowsEvaluated: number;
  detections: DetectionOutcome[];
  alertsRaised: number;
  /** Alerts in Blob still waiting for Log Analytics. */
  alertsPending: number;
  /** Alerts Log Analytics accepted in this run (earlier runs' pending ones included). */
  alertsIngested: number;
  logAnalytics: boolean;
  failures: { detection: string; error: string }[];
  deliveryError?: string;
}

const DEFAULT_LOCK_TTL_MS = 10 * 60_000;
const DEFAULT_BLOB_CONCURRENCY = 8;

export async function runDetections(options: DetectionsRunOptions, deps: DetectionsRunDeps): Promise<DetectionsRunSummary> {
  const runId = randomUUID();
  const ttl = options.lockTtlMs ?? DEFAULT_LOCK_TTL_MS;
  const stored = await deps.store.readState();
  let state: DetectionsState = stored?.state ?? initialDetectionsState();
  let etag = stored?.etag ?? null;
  const startedMs = deps.now();
  if (state.lock && state.lock.expiresAtMs > startedMs) {
    throw new ConcurrentRunError(
      `Another detections run (${state.lock.runId}) holds the lock until ${new Date(state.lock.expiresAtMs).toISOString()}; this run did nothing.`,
    );
  }
  const save = async (release = false): Promise<void> => {
    state.lock = release ? null : { runId, expiresAtMs: deps.now() + ttl };
    etag = await deps.store.writeState(state, etag);
  };
  state.lastRunAt = new Date(startedMs).toISOString();
  try {
    await save();
  } catch (error) {
    if (error instanceof DetectionsStateConflictError) throw new ConcurrentRunError("Another detections run took the lock first; this run did nothing.");
    throw error;
  }

  const endUs = evaluationEndUs(startedMs, options.settleDelayMs);
  const summary: DetectionsRunSummary = {
    runId,
    evaluatedUntil: microsToIso(endUs),
    windowsEvaluated: 0,
    detections: [],
    alertsRaised: 0,
    alertsPending: 0,
    alertsIngested: 0,
    logAnalytics: deps.alerts !== undefined,
    failures: [],
  };
  try {
    const known = new Set([...Object.keys(state.raised), ...state.pending.map((p) => p.alert.alert_id)]);
    for (const detection of options.detections) {
      if (!detection.enabled) continue;
      const outcome = await evaluateOne(detection, state, known, options, deps);
      summary.detections.push(outcome);
      summary.windowsEvaluated += outcome.windows;
      summary.alertsRaised += outcome.alerts;
      if (outcome.error) summary.failures.push({ detection: detection.name, error: outcome.error });
      await save();
    }

    await deliverPending(state, deps, summary);
    const positions = options.detections.flatMap((d) => {
      const until = d.enabled ? state.detections[d.name]?.evaluatedUntil : undefined;
      const us = until ? parseTimestampMicros(until) : undefined;
      return us === undefined ? [] : [us];
    });
    const forgetUs = forgetBeforeUs(endUs, options.lateHorizonMs, positions);
    for (const [id, windowEnd] of Object.entries(state.raised)) {
      if ((parseTimestampMicros(windowEnd) ?? 0) <= forgetUs) delete state.raised[id];
    }
    const now = new Date(deps.now()).toISOString();
    if (summary.failures.length === 0 && !summary.deliveryError) {
      state.lastSuccessAt = now;
    } else {
      state.lastFailureAt = now;
      state.lastError = summary.deliveryError ?? summary.failures.map((f) => `${f.detection}: ${f.error}`).join("; ");
    }
    state.configErrors = [...(options.configErrors ?? [])];
    summary.alertsPending = state.pending.length;
    await save(true);
    return summary;
  } catch (error) {
    if (!(error instanceof DetectionsStateConflictError)) {
      // Best effort: say why in the state and release the lock; the original error is what the caller sees.
      state = { ...state, lastFailureAt: new Date(deps.now()).toISOString(), lastError: describeError(error) };
      await save(true).catch(() => undefined);
    }
    throw error;
  }
}

async function evaluateOne(
  detection: Detection,
  state: DetectionsState,
  known: Set<string>,
  options: DetectionsRunOptions,
  deps: DetectionsRunDeps,
): Promise<DetectionOutcome> {
  const progress = (state.detections[detection.name] ??= {});
  const positionUs = progress.evaluatedUntil ? parseTimestampMicros(progress.evaluatedUntil) : undefined;
  const plan = planEvaluation({
    windowMinutes: detection.windowMinutes,
    positionUs,
    nowMs: deps.now(),
    settleDelayMs: options.settleDelayMs,
    lateHorizonMs: options.lateHorizonMs,
  });
  const outcome: DetectionOutcome = { name: detection.name, windows: 0, alerts: 0, warehouseMs: 0 };
  if (!plan) return outcome;
  let fresh: AlertLine[];
  try {
    const evaluation = await evaluateDetection(deps.source, detection, plan, options.workspaceIds, deps.now);
    outcome.warehouseMs = evaluation.warehouseMs;
    fresh = evaluation.alerts.filter((alert) => !known.has(alert.alert_id));
    await forEachLimited(fresh, options.blobConcurrency ?? DEFAULT_BLOB_CONCURRENCY, (alert) =>
      deps.store.writeLines(alertBlobName(alert), [JSON.stringify(alert)]),
    );
  } catch (error) {
    const message = describeError(error);
    progress.lastError = message;
    progress.lastErrorAt = new Date(deps.now()).toISOString();
    deps.log.warn(`detection ${detection.name} failed, the others go on: ${message}`);
    return { ...outcome, error: message };
  }
  const raisedAt = new Date(deps.now()).toISOString();
  for (const alert of fresh) {
    known.add(alert.alert_id);
    if (deps.alerts) state.pending.push({ alert, raisedAt });
    else state.raised[alert.alert_id] = alert.window_end;
  }
  progress.evaluatedUntil = microsToIso(plan.nextPositionUs);
  progress.lastSuccessAt = raisedAt;
  delete progress.lastError;
  delete progress.lastErrorAt;
  return { ...outcome, windows: plan.windows, alerts: fresh.length };
}

/** Sends every pending alert to Log Analytics; accepted ones become raised. Without Log Analytics, Blob alone is enough. */
async function deliverPending(state: DetectionsState, deps: DetectionsRunDeps, summary: DetectionsRunSummary): Promise<void> {
  const pending: PendingAlert[] = state.pending;
  if (pending.length === 0) return;
  let failed = new Set<string>();
  if (deps.alerts) {
    let result: { failedIds: string[]; error?: string };
    try {
      result = await deps.alerts.send(pending.map((p) => alertRecord(p.alert, p.raisedAt)));
    } catch (error) {
      result = { failedIds: pending.map((p) => p.alert.alert_id), error: describeError(error) };
    }
    failed = new Set(result.failedIds);
    summary.alertsIngested = pending.length - failed.size;
    if (failed.size > 0) {
      summary.deliveryError = `Log Analytics did not accept ${failed.size} of ${pending.length} alerts (they are in Blob and stay pending for the next run): ${result.error ?? "no reason given"}`;
      deps.log.warn(`${summary.deliveryError}; ${summary.alertsIngested} delivered.`);
    }
  }
  for (const p of pending) if (!failed.has(p.alert.alert_id)) state.raised[p.alert.alert_id] = p.alert.window_end;
  state.pending = pending.filter((p) => failed.has(p.alert.alert_id));
}

async function forEachLimited<T>(items: readonly T[], limit: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const workers = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const item = items[next++]!;
      await work(item);
    }
  });
  await Promise.all(workers);
}

/** The run's one summary line: windows evaluated, alerts per detection, warehouse time per detection. */
export function formatDetectionsSummary(summary: DetectionsRunSummary): string {
  const ran = summary.detections.filter((d) => d.windows > 0 || d.error);
  const perDetection = ran.map((d) => `${d.name}=${d.error ? "FAILED" : d.alerts}/${d.warehouseMs}ms`).join(" ");
  return [
    `detections until ${summary.evaluatedUntil}`,
    `windows evaluated ${summary.windowsEvaluated}`,
    `alerts raised ${summary.alertsRaised}`,
    summary.logAnalytics ? `ingested ${summary.alertsIngested}, pending ${summary.alertsPending}` : "Log Analytics off",
    `failed ${summary.failures.length}`,
    `per detection (alerts/warehouse time) ${perDetection || "none due"}`,
  ].join("; ");
}
