import { DEFAULT_MEASURE, type Detection, type ThresholdOperator } from "./types";

/**
 * Several SQL warehouses, one per region: how one detection's rows from each become its alerts.
 * A warehouse holds its region's workspace events, and every warehouse holds the account-level
 * events (workspace "0", the same event_id everywhere). Alert ids do not depend on the sources,
 * so re-evaluating a window with another set of sources never raises a second alert.
 *
 *  - `concatenate`: grouped by workspace. A workspace lives in one region, so each group's rows
 *    are in one warehouse; account-level rows come from one warehouse only (the first that
 *    answers). Each warehouse applies the threshold itself; no group comes from two.
 *  - `sum`: a group that spans workspaces (per principal, source IP, metastore), measured by
 *    `count(...)` or `sum(...)`. Each warehouse returns every group's partial measure, without
 *    the threshold; account-level rows from one warehouse only. The partials are added up, then
 *    compared with the threshold: 1 failed login in one region and 1 in another are 2.
 *  - `union`: as `sum`, for `count(DISTINCT x)`: each warehouse returns its set of x; the
 *    threshold applies to the size of the union (3 workspaces in one region and 2 in another
 *    are 5; an account-level value seen by two warehouses is one).
 *  - `per-source`: a measure that cannot be put together from parts (e.g.
 *    high_number_of_read_writes). Each warehouse is evaluated on its own, account-level rows
 *    included; a group that passes in several warehouses is one alert, with the highest value.
 */
export type SourceCombination = "concatenate" | "sum" | "union" | "per-source";

/** The measure as the SQL states it, when it is one aggregate that can be put together from parts. */
export type MeasureShape = { kind: "additive" } | { kind: "distinct"; expression: string } | { kind: "other" };

export function sourceCombination(detection: Pick<Detection, "groupBy" | "measure">): SourceCombination {
  if (detection.groupBy.includes("workspace_id")) return "concatenate";
  const shape = measureShape(detection.measure ?? DEFAULT_MEASURE);
  if (shape.kind === "additive") return "sum";
  if (shape.kind === "distinct") return "union";
  return "per-source";
}

/** Each combination in a word or two (the docs' table says it so; docsText.ts explains them). */
export const COMBINATION_LABELS: Record<SourceCombination, string> = {
  concatenate: "per workspace",
  sum: "added up",
  union: "united",
  "per-source": "per region",
};

/**
 * `count(*)`, `count(x)` and `sum(x)` add up; `count(DISTINCT x)` (one expression) unites; any
 * other text (several aggregates, CASE around them, `sum(DISTINCT x)`) is `other`. String
 * literals are skipped when matching parentheses.
 */
export function measureShape(measure: string): MeasureShape {
  const match = /^(count|sum)\s*\(([\s\S]*)\)$/i.exec(measure.trim());
  if (!match) return { kind: "other" };
  const inner = match[2]!;
  if (!isOneExpression(inner)) return { kind: "other" };
  const distinct = /^\s*distinct\s+([\s\S]+)$/i.exec(inner);
  if (!distinct) return { kind: "additive" };
  return match[1]!.toLowerCase() === "count" ? { kind: "distinct", expression: distinct[1]!.trim() } : { kind: "other" };
}

/** Balanced parentheses that never close below zero and no comma at the top level, outside string literals. */
function isOneExpression(text: string): boolean {
  const outsideLiterals = text.replace(/'(?:[^'\\]|\\.|'')*'/g, "''");
  let depth = 0;
  for (const char of outsideLiterals) {
    if (char === "(") depth += 1;
    if (char === ")") depth -= 1;
    if (depth < 0 || (char === "," && depth === 0)) return false;
  }
  return depth === 0 && outsideLiterals.trim().length > 0;
}

/**
 * Whether a source's query includes the account-level rows: always for `per-source`; otherwise
 * only the first source that answers (the caller asks the sources one after the other, so a
 * source that failed hands them to the next).
 */
export function includesAccountLevel(combination: SourceCombination, anEarlierSourceAnswered: boolean): boolean {
  return combination === "per-source" || !anEarlierSourceAnswered;
}

/** Whether the warehouse leaves the threshold out so that the parts can be added up (only when several sources are read). */
export function thresholdAfterCombining(combination: SourceCombination, sourceCount: number): boolean {
  return sourceCount > 1 && (combination === "sum" || combination === "union");
}

export function passesThreshold(value: number, operator: ThresholdOperator, threshold: number): boolean {
  return operator === ">=" ? value >= threshold : value > threshold;
}
