import { alertFromRow, collectedValues, type AlertLine } from "./alerts";
import { passesThreshold, sourceCombination, type SourceCombination } from "./combination";
import { SAMPLE_SIZE, type DetectionRow } from "./sql";
import type { Detection } from "./types";

/**
 * The alerts of a detection read from several SQL warehouses (one per region), put together as
 * its combination says (combination.ts).
 */

/** One source's answer to a detection's query. */
export interface SourceRows {
  source: string;
  rows: readonly DetectionRow[];
}

/**
 * The detection's alerts from every source's rows (sources in configured order): rows of the same
 * window and group (the same alert id) become one alert, measured as the combination says, and
 * only those that pass the threshold remain. `sources` lists the sources whose rows contributed.
 */
export function combineSourceRows(detection: Detection, parts: readonly SourceRows[]): AlertLine[] {
  const combination = sourceCombination(detection);
  const merged = new Map<string, { alert: AlertLine; values?: Set<string> }>();
  for (const part of parts) {
    for (const row of part.rows) {
      const alert = alertFromRow(detection, row, [part.source]);
      const values = combination === "union" && row.measure_set !== undefined ? new Set(collectedValues(row.measure_set)) : undefined;
      const seen = merged.get(alert.alert_id);
      if (!seen) {
        merged.set(alert.alert_id, values ? { alert, values } : { alert });
        continue;
      }
      seen.alert = mergeAlertLines(seen.alert, alert, combination);
      if (seen.values && values) for (const value of values) seen.values.add(value);
    }
  }
  const alerts: AlertLine[] = [];
  for (const { alert, values } of merged.values()) {
    const measured = values ? { ...alert, value: values.size } : alert;
    if (passesThreshold(measured.value, detection.operator, detection.threshold)) alerts.push(measured);
  }
  return alerts.sort((a, b) => a.window_start.localeCompare(b.window_start) || a.alert_id.localeCompare(b.alert_id));
}

/** Two sources' lines of one alert (same id) as one: counts and measures added up, or the higher kept (`per-source`); samples united. */
export function mergeAlertLines(a: AlertLine, b: AlertLine, combination: SourceCombination): AlertLine {
  const base = combination === "per-source" && b.value > a.value ? b : a;
  const additive = combination !== "per-source";
  return {
    ...base,
    count: additive ? a.count + b.count : base.count,
    // `union` recomputes the value from the united sets; until then the sum is an upper bound nobody reads.
    value: additive ? a.value + b.value : base.value,
    first_event_time: a.first_event_time < b.first_event_time ? a.first_event_time : b.first_event_time,
    last_event_time: a.last_event_time > b.last_event_time ? a.last_event_time : b.last_event_time,
    principals: unite(a.principals, b.principals),
    source_ips: unite(a.source_ips, b.source_ips),
    workspaces: unite(a.workspaces, b.workspaces),
    actions: unite(a.actions, b.actions),
    services: unite(a.services, b.services),
    context: Object.fromEntries(Object.keys({ ...a.context, ...b.context }).map((name) => [name, unite(a.context[name] ?? [], b.context[name] ?? [])])),
    sample_event_ids: unite(a.sample_event_ids, b.sample_event_ids),
    sources: [...new Set([...a.sources, ...b.sources])],
  };
}

function unite(a: readonly string[], b: readonly string[]): string[] {
  return [...new Set([...a, ...b])].sort().slice(0, SAMPLE_SIZE);
}
