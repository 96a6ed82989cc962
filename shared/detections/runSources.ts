import { microsToIso, parseTimestampMicros } from "../timestamps";
import type { NamedSource, SourceAttempt } from "./evaluate";
import type { DetectionProgress, DetectionsState } from "./state";
import { catchUpLimitUs } from "./windows";

/**
 * The sources (SQL warehouses, one per region) during one detections run. Each fails alone: a
 * source that cannot connect, or whose warehouse fails a query (unreachable, refused, no answer
 * in time), is down for the rest of the run and the detections go on over the others; a query
 * the warehouse refuses as SQL fails that detection on that source only.
 *
 * The windows a detection evaluated without a source are not done for good: the detection's
 * progress keeps, per missing source, where its range started (`sourcesBehind`), and the first
 * run in which that source answers re-evaluates from there with every source (up to a week back,
 * windows.ts). Alert ids do not depend on the sources, so alerts raised meanwhile are not raised
 * again; a group that only passes with the missing source's rows raises its alert then.
 */

/** A configured source as the run starts: its open session, or why it could not connect. */
export interface SourceHandle {
  name: string;
  source?: NamedSource["source"];
  connectError?: string;
}

/** How a source did over the whole run (the summary and the state say it per source). */
export interface SourceOutcome {
  name: string;
  /** Queries it answered. */
  answered: number;
  warehouseMs: number;
  /** Why it was down for (part of) the run: cannot connect, unreachable, refused. */
  error?: string;
  /** Detections whose SQL it refused while other sources answered them. */
  failedDetections: string[];
}

export class RunSources {
  private readonly outcomes: SourceOutcome[];
  private readonly firstErrors = new Map<string, string>();

  constructor(private readonly handles: readonly SourceHandle[]) {
    if (handles.length === 0) throw new Error("The detections need at least one source (SQL warehouse).");
    this.outcomes = handles.map((h) => ({
      name: h.name,
      answered: 0,
      warehouseMs: 0,
      failedDetections: [],
      ...(h.connectError ? { error: h.connectError } : {}),
    }));
  }

  get names(): string[] {
    return this.handles.map((h) => h.name);
  }

  /** The sources still able to answer, in configured order. */
  up(): NamedSource[] {
    return this.handles.flatMap((h, i) => (h.source && !this.outcomes[i]!.error ? [{ name: h.name, source: h.source }] : []));
  }

  /** Why each source that is down is, as `name: reason`. */
  downReasons(): string[] {
    return this.outcomes.flatMap((o) => (o.error ? [`${o.name}: ${o.error}`] : []));
  }

  record(detection: string, attempts: readonly SourceAttempt[]): void {
    for (const attempt of attempts) {
      const outcome = this.outcomes.find((o) => o.name === attempt.source);
      if (!outcome) continue;
      outcome.warehouseMs += attempt.warehouseMs;
      if (attempt.error === undefined) {
        outcome.answered += 1;
      } else if (attempt.sourceDown) {
        outcome.error ??= attempt.error;
      } else {
        outcome.failedDetections.push(detection);
        if (!this.firstErrors.has(attempt.source)) this.firstErrors.set(attempt.source, `${detection}: ${attempt.error}`);
      }
    }
  }

  summary(): SourceOutcome[] {
    return this.outcomes.map((o) => ({ ...o, failedDetections: [...o.failedDetections] }));
  }

  /** The state's per-source record: the last success, or the run's first failure (a source that answered everything is healthy again). */
  updateState(state: DetectionsState, nowIso: string): void {
    const previous = state.sources ?? {};
    state.sources = {};
    for (const outcome of this.outcomes) {
      const error = outcome.error ?? this.firstErrors.get(outcome.name);
      const before = previous[outcome.name] ?? {};
      state.sources[outcome.name] =
        error === undefined
          ? { ...(outcome.answered > 0 ? { lastSuccessAt: nowIso } : before.lastSuccessAt ? { lastSuccessAt: before.lastSuccessAt } : {}) }
          : { ...(before.lastSuccessAt ? { lastSuccessAt: before.lastSuccessAt } : {}), lastError: error, lastErrorAt: nowIso };
    }
  }
}

/** Where the sources that answer this run were missing from, for one detection (sources no longer configured are forgotten). */
export function behindUs(progress: DetectionProgress, configured: readonly string[], answering: readonly string[]): number[] {
  const behind = progress.sourcesBehind ?? {};
  for (const name of Object.keys(behind)) if (!configured.includes(name)) delete behind[name];
  return Object.entries(behind).flatMap(([name, iso]) => {
    const us = answering.includes(name) ? parseTimestampMicros(iso) : undefined;
    return us === undefined ? [] : [us];
  });
}

/**
 * After a detection evaluated [fromUs, ...) with some sources answering: those are no longer
 * behind; each configured source that did not answer is behind from fromUs at the latest.
 */
export function markSourcesBehind(progress: DetectionProgress, configured: readonly string[], answered: readonly string[], fromUs: number): void {
  const behind: Record<string, string> = { ...(progress.sourcesBehind ?? {}) };
  for (const name of configured) {
    if (answered.includes(name)) {
      delete behind[name];
      continue;
    }
    const earlier = behind[name] !== undefined ? parseTimestampMicros(behind[name]) : undefined;
    behind[name] = microsToIso(earlier !== undefined ? Math.min(earlier, fromUs) : fromUs);
  }
  if (Object.keys(behind).length > 0) progress.sourcesBehind = behind;
  else delete progress.sourcesBehind;
}

/** Where sources missing from earlier runs will be re-evaluated from (never before the catch-up limit): alert ids from there on are kept. */
export function behindPositionsUs(state: DetectionsState, endUs: number): number[] {
  const limit = catchUpLimitUs(endUs);
  return Object.values(state.detections).flatMap((progress) =>
    Object.values(progress.sourcesBehind ?? {}).flatMap((iso) => {
      const us = parseTimestampMicros(iso);
      return us === undefined ? [] : [Math.max(us, limit)];
    }),
  );
}
