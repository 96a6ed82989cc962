import { randomUUID } from "node:crypto";
import { ConcurrentRunError, describeError } from "../errors";
import { microsToIso, parseTimestampMicros } from "../timestamps";
import { alertBlobName, alertRecord, type AlertLine, type AlertRecord } from "./alerts";
import { evaluateOverSources, type SourcesEvaluation } from "./evaluate";
import { behindPositionsUs, behindUs, markSourcesBehind, RunSources, type SourceHandle, type SourceOutcome } from "./runSources";
import { DetectionsStateConflictError, initialDetectionsState, type DetectionsState, type DetectionsStore, type PendingAlert } from "./state";
import type { Detection } from "./types";
import { evaluationEndUs, extendForSourcesBehind, forgetBeforeUs, planEvaluation } from "./windows";

/**
 * One run of the detections (the `runDetections` timer). No SDK, no environment, no clock of
 * its own: the warehouse, the store, Log Analytics and time come in through the ports.
 *
 * Protocol:
 *  1. take the lock (conditional state write); a live lock held by another run stops this one;
 *  2. evaluate every enabled detection, one after the other, over its new windows and the windows
 *     still inside the late-row horizon, on every source (SQL warehouse, one per region; one
 *     session each), the sources' rows put together (combine.ts); a detection that fails (its
 *     SQL on every source) is recorded and skipped, the others go on; a source that fails is
 *     recorded, the detections go on over the others and re-evaluate its windows once it is
 *     back (runSources.ts);
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
  /** Every configured source in configured order (never empty), connected or with the reason it is not. */
  sources: readonly SourceHandle[];
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
  /** Every source failed it (or none could answer): nothing was evaluated. */
  error?: string;
  /** Sources that failed it while others answered; their windows are re-evaluated once they are back. */
  sourceErrors?: { source: string; error: string; sourceDown?: boolean }[];
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
  /** Detections that failed: on every source (no `source`), or their SQL on one source while others answered. */
  failures: { detection: string; source?: string; error: string }[];
  /** Each source in configured order; one with an `error` was down for (part of) the run. */
  sources: SourceOutcome[];
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
    sources: [],
  };
  const sources = new RunSources(deps.sources);
  for (const reason of sources.downReasons()) deps.log.warn(`detections source ${reason}; the detections go on over the other sources.`);
  try {
    const known = new Set([...Object.keys(state.raised), ...state.pending.map((p) => p.alert.alert_id)]);
    for (const detection of options.detections) {
      // No source at all: the sources' errors say why; each detection keeps its position and state.
      if (!detection.enabled || sources.up().length === 0) continue;
      const outcome = await evaluateOne(detection, state, known, options, deps, sources);
      summary.detections.push(outcome);
      summary.windowsEvaluated += outcome.windows;
      summary.alertsRaised += outcome.alerts;
      if (outcome.error) summary.failures.push({ detection: detection.name, error: outcome.error });
      // A source that is down is the source's problem (summary.sources), not each detection's.
      for (const failed of outcome.sourceErrors ?? [])
        if (!failed.sourceDown) summary.failures.push({ detection: detection.name, source: failed.source, error: failed.error });
      await save();
    }
    summary.sources = sources.summary();

    await deliverPending(state, deps, summary);
    const positions = options.detections.flatMap((d) => {
      const until = d.enabled ? state.detections[d.name]?.evaluatedUntil : undefined;
      const us = until ? parseTimestampMicros(until) : undefined;
      return us === undefined ? [] : [us];
    });
    const forgetUs = forgetBeforeUs(endUs, options.lateHorizonMs, [...positions, ...behindPositionsUs(state, endUs)]);
    for (const [id, windowEnd] of Object.entries(state.raised)) {
      if ((parseTimestampMicros(windowEnd) ?? 0) <= forgetUs) delete state.raised[id];
    }
    const now = new Date(deps.now()).toISOString();
    sources.updateState(state, now);
    const problems = runProblems(summary);
    if (problems.length === 0) {
      state.lastSuccessAt = now;
    } else {
      state.lastFailureAt = now;
      state.lastError = problems.join("; ");
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
  sources: RunSources,
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
  const up = sources.up();
  // Windows evaluated earlier without a source that is up now are evaluated again, with every source.
  const range = extendForSourcesBehind(
    plan,
    detection.windowMinutes,
    behindUs(
      progress,
      sources.names,
      up.map((s) => s.name),
    ),
  );
  if (range.givenUpBeforeUs !== undefined) {
    deps.log.warn(
      `detection ${detection.name}: a source was missing for longer than a week; its windows before ${microsToIso(range.givenUpBeforeUs)} are not evaluated again.`,
    );
  }
  let evaluation: SourcesEvaluation;
  let fresh: AlertLine[];
  try {
    evaluation = await evaluateOverSources(up, detection, { fromUs: range.fromUs, toUs: plan.toUs }, options.workspaceIds, deps.now);
    sources.record(detection.name, evaluation.attempts);
    outcome.warehouseMs = evaluation.warehouseMs;
    if (evaluation.attempts.every((a) => a.error !== undefined)) {
      throw new Error(evaluation.attempts.map((a) => (up.length > 1 ? `${a.source}: ${a.error}` : a.error)).join("; "));
    }
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
  const answered = evaluation.attempts.filter((a) => a.error === undefined).map((a) => a.source);
  markSourcesBehind(progress, sources.names, answered, range.fromUs);
  const sourceErrors = evaluation.attempts.flatMap((a) =>
    a.error !== undefined ? [{ source: a.source, error: a.error, sourceDown: a.sourceDown === true }] : [],
  );
  for (const failed of sourceErrors) {
    deps.log.warn(
      `detection ${detection.name} failed on source ${failed.source} (evaluated over ${answered.join(", ")}; it is evaluated again once the source answers): ${failed.error}`,
    );
  }
  progress.evaluatedUntil = microsToIso(plan.nextPositionUs);
  progress.lastSuccessAt = raisedAt;
  delete progress.lastError;
  delete progress.lastErrorAt;
  return { ...outcome, windows: range.windows, alerts: fresh.length, ...(sourceErrors.length > 0 ? { sourceErrors } : {}) };
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

/** What went wrong in a run, one entry each: a detection (on every source, or on one), a source that was down, Log Analytics. */
export function runProblems(summary: DetectionsRunSummary): string[] {
  return [
    ...summary.sources.flatMap((s) => (s.error !== undefined ? [`source ${s.name}: ${s.error}`] : [])),
    ...summary.failures.map((f) => `${f.detection}${f.source !== undefined ? ` on source ${f.source}` : ""}: ${f.error}`),
    ...(summary.deliveryError ? [summary.deliveryError] : []),
  ];
}

/** The run's one summary line: windows evaluated, alerts per detection, warehouse time per detection, and each source when there are several. */
export function formatDetectionsSummary(summary: DetectionsRunSummary): string {
  const ran = summary.detections.filter((d) => d.windows > 0 || d.error);
  const perDetection = ran
    .map(
      (d) =>
        `${d.name}=${d.error ? "FAILED" : d.alerts}/${d.warehouseMs}ms${d.sourceErrors ? ` (failed on ${d.sourceErrors.map((e) => e.source).join(", ")})` : ""}`,
    )
    .join(" ");
  const failedSources = summary.sources.filter((s) => s.error !== undefined || s.failedDetections.length > 0);
  const perSource = summary.sources
    .map(
      (s) => `${s.name}=${s.error !== undefined ? "FAILED" : s.failedDetections.length > 0 ? `${s.failedDetections.length} failed` : "ok"}/${s.warehouseMs}ms`,
    )
    .join(" ");
  return [
    `detections until ${summary.evaluatedUntil}`,
    `windows evaluated ${summary.windowsEvaluated}`,
    `alerts raised ${summary.alertsRaised}`,
    summary.logAnalytics ? `ingested ${summary.alertsIngested}, pending ${summary.alertsPending}` : "Log Analytics off",
    `failed ${summary.failures.length}`,
    ...(summary.sources.length > 1 || failedSources.length > 0 ? [`sources (state/warehouse time) ${perSource}`] : []),
    `per detection (alerts/warehouse time) ${perDetection || "none due"}`,
  ].join("; ");
}
