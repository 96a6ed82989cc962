import { MICROS_PER_HOUR } from "../timestamps";

/**
 * Which range a detection evaluates in one run. Runs evaluate whole hours up to now minus the
 * settle delay (never a window that ends later), from the detection's own position (where its
 * last successful evaluation ended), and re-evaluate every window that overlaps the late-row
 * horizon: a late row still raises its alert, and the alert ids already raised stop any repeat.
 * Windows longer than an hour (a day) are evaluated so far, every hour, and alert once when
 * they cross; their range starts at the window's start.
 */

export const MICROS_PER_MINUTE = 60_000_000;
/** At most this much new range per detection and run; a detection further behind catches up over several runs. */
export const MAX_RANGE_US = 7 * 24 * MICROS_PER_HOUR;

export interface PlanInput {
  windowMinutes: number;
  /** End of the last successful evaluation (exclusive), or undefined for a detection never run. */
  positionUs: number | undefined;
  nowMs: number;
  settleDelayMs: number;
  lateHorizonMs: number;
}

export interface EvaluationPlan {
  fromUs: number;
  toUs: number;
  /** The detection's position once this range is evaluated. */
  nextPositionUs: number;
  /** Windows that overlap [fromUs, toUs). */
  windows: number;
}

export function floorTo(us: number, stepUs: number): number {
  return Math.floor(us / stepUs) * stepUs;
}

/** The end of the last complete hour before now minus the settle delay. */
export function evaluationEndUs(nowMs: number, settleDelayMs: number): number {
  return floorTo((nowMs - settleDelayMs) * 1000, MICROS_PER_HOUR);
}

/** The earliest instant a run re-evaluates: the late-row horizon back from the evaluation end, on an hour. */
export function horizonStartUs(endUs: number, lateHorizonMs: number): number {
  return floorTo(endUs - Math.max(lateHorizonMs, 0) * 1000, MICROS_PER_HOUR);
}

export function planEvaluation(input: PlanInput): EvaluationPlan | undefined {
  const windowUs = input.windowMinutes * MICROS_PER_MINUTE;
  const end = evaluationEndUs(input.nowMs, input.settleDelayMs);
  // A detection never run starts at the horizon: a first deployment looks back as far as late rows can come.
  const position = input.positionUs ?? horizonStartUs(end, input.lateHorizonMs);
  const toUs = Math.min(end, Math.max(position, floorTo(position, MICROS_PER_HOUR) + MAX_RANGE_US));
  const fromUs = floorTo(Math.min(position, horizonStartUs(toUs, input.lateHorizonMs)), windowUs);
  if (toUs <= fromUs) return undefined;
  return { fromUs, toUs, nextPositionUs: Math.max(position, toUs), windows: Math.ceil((toUs - fromUs) / windowUs) };
}

/**
 * How far back a run re-evaluates the windows a source missed while it failed (the others
 * answered): a week back from the range's end. Older windows are given up for that source.
 */
export const MAX_SOURCE_CATCH_UP_US = MAX_RANGE_US;

/**
 * The plan's range, extended back to the earliest instant a source that answers again was
 * missing from (`behindUs`), at most MAX_SOURCE_CATCH_UP_US before the range's end. Every
 * source evaluates the extended range: a group that spans regions needs all of them.
 */
export function extendForSourcesBehind(
  plan: EvaluationPlan,
  windowMinutes: number,
  behindUs: readonly number[],
): { fromUs: number; windows: number; givenUpBeforeUs?: number } {
  const windowUs = windowMinutes * MICROS_PER_MINUTE;
  if (behindUs.length === 0) return { fromUs: plan.fromUs, windows: plan.windows };
  const earliest = Math.min(...behindUs);
  const limit = catchUpLimitUs(plan.toUs);
  const fromUs = Math.min(plan.fromUs, floorTo(Math.max(earliest, limit), windowUs));
  const windows = Math.ceil((plan.toUs - fromUs) / windowUs);
  return earliest < limit ? { fromUs, windows, givenUpBeforeUs: limit } : { fromUs, windows };
}

/** The earliest instant a run ending at `endUs` re-evaluates for a source that was missing. */
export function catchUpLimitUs(endUs: number): number {
  return endUs - MAX_SOURCE_CATCH_UP_US;
}

/**
 * Alert ids of windows ending at or before this instant can never come up again, so the state
 * forgets them: the earliest range start any detection can have next time (the horizon's start,
 * or an earlier position of a detection that fell behind), less a day (the longest window,
 * re-evaluated from its start). `positionsUs` includes where sources missing from earlier
 * runs will be re-evaluated from.
 */
export function forgetBeforeUs(endUs: number, lateHorizonMs: number, positionsUs: readonly number[]): number {
  return Math.min(horizonStartUs(endUs, lateHorizonMs), ...positionsUs) - 24 * MICROS_PER_HOUR;
}
