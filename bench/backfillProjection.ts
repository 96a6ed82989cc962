/**
 * The backfill benchmark's projection of a year (backfillBenchmark.ts measures, this models): the
 * time for 20 million events a day with 10, 40 and 100 instances, bounded by the per-instance rate
 * measured, the SQL warehouse's concurrent queries and, with both sinks, the data collection rule.
 */

/** The year the projection is for: 20 million events a day. */
const EVENTS_PER_DAY = 20_000_000;
const YEAR_EVENTS = EVENTS_PER_DAY * 365;
const PROJECTED_INSTANCES = [10, 40, 100];
/**
 * Limits of one data collection rule (the project's DESIGN.md, "Logs Ingestion API"): 2 GB a
 * minute (taken as 10^9 bytes, of uncompressed JSON: the stricter reading) and 12,000 requests a
 * minute; each call carries at most 1 MB.
 */
const DCR_BYTES_PER_MINUTE = 2e9;
const DCR_REQUESTS_PER_MINUTE = 12_000;
/**
 * Concurrent slices one SQL warehouse serves, by default: 40 clusters × 10 queries.
 * - Classic and pro warehouses "have a fixed limit of one cluster per 10 concurrent queries"
 *   (SQL warehouse sizing, scaling, and queuing behavior,
 *   https://docs.azure.cn/en-us/databricks/compute/sql-warehouse/warehouse-behavior; the same page as
 *   https://learn.microsoft.com/en-us/azure/databricks/compute/sql-warehouse/warehouse-behavior).
 *   Serverless warehouses admit queries as capacity allows (Intelligent Workload Management) and
 *   scale out by clusters of the chosen size; Databricks sizes them the same way, "ceil(peak
 *   concurrent rules / 10), up to the 40-cluster maximum"
 *   (https://learn.microsoft.com/azure/databricks/lakewatch/admin/detection-warehouse).
 * - `max_num_clusters` "must be <= 40" and defaults to the minimum, 1 cluster
 *   (https://docs.databricks.com/api/warehouses/v1/warehouse).
 * So 400 is the most one warehouse allows; one left at its default single cluster: --warehouse-slots 10.
 */
export const DEFAULT_WAREHOUSE_SLOTS = 400;
/** CPU of a 512 MB Flex Consumption instance, as Microsoft documents it (typical; INSTANCE_CORES in exportBenchmark.ts). */
const INSTANCE_CORES_512 = 0.25;

export type Sinks = "archive" | "both";

export interface Flags {
  events: number;
  days: number;
  workers: number[];
  sinks: Sinks[];
  warehouseSlots: number;
}

/** The JSON line `backfill work --json` prints. */
export interface WorkLine {
  pid: number;
  deliveries: number;
  done: number;
  failures: number;
  poisoned: number;
  maxRssBytes: number;
}

export interface Run {
  sinks: Sinks;
  workers: number;
  seconds: number;
  lines: WorkLine[];
  /** Peak of the working processes' VmHWM, sampled from /proc (a cross-check of maxRssBytes). */
  vmHwmMb: number;
  /** CPU-seconds of the working processes, sampled from /proc until they exit. */
  cpuSeconds: number;
  archive: { lines: number; distinctEvents: number; blobs: number };
  status: { eventsArchived: number; eventsIngested: number; done: number; total: number };
  logAnalytics?: { records: number; bytes: number; calls: number; bodyBytes: number };
}

export function rate(run: Run): number {
  return run.status.eventsArchived / run.seconds;
}

/**
 * A year of 20 million events a day with I instances, one slice (a UTC day) each (host.json's
 * batchSize 1): events / min(I × the per-instance events/s measured here at K = 1, the warehouse's
 * concurrent slices × the same, for both sinks the DCR's limit). At most 365 slices run at once.
 */
export function projection(runs: Run[], flags: Flags): string[] {
  const out = [
    `Projection: a year of ${fmt(EVENTS_PER_DAY)} events a day (${(YEAR_EVENTS / 1e9).toFixed(1)} billion events), one slice per instance;`,
    `per-instance events/s = this machine's at K = 1 (not a Flex Consumption instance's); warehouse: ${fmt(flags.warehouseSlots)} concurrent slices (--warehouse-slots);`,
    `DCR: ${DCR_BYTES_PER_MINUTE / 1e9} GB/min and ${fmt(DCR_REQUESTS_PER_MINUTE)} requests/min per data collection rule, with the measured bytes per record and records per call.`,
  ];
  const header = ["sinks", "instances", "per-instance ev/s", "instances ev/s", "warehouse ev/s", "DCR ev/s", "binding", "events/s", "hours", "days"];
  const rows: string[][] = [];
  const cpuBound: string[] = [];
  for (const sinks of flags.sinks) {
    const one = runs.find((r) => r.sinks === sinks && r.workers === 1);
    if (!one) {
      out.push(`(${sinks}: no K = 1 run, no projection)`);
      continue;
    }
    const la = one.logAnalytics;
    const dcr =
      sinks === "both" && la && la.records > 0 && la.calls > 0
        ? Math.min(DCR_BYTES_PER_MINUTE / (la.bytes / la.records), DCR_REQUESTS_PER_MINUTE * (la.records / la.calls)) / 60
        : Infinity;
    for (const instances of PROJECTED_INSTANCES) {
      const p = project(rate(one), instances, flags.warehouseSlots, dcr);
      rows.push([
        sinks,
        String(instances),
        fmt(rate(one)),
        fmt(p.instances),
        fmt(p.warehouse),
        Number.isFinite(dcr) ? fmt(dcr) : "-",
        p.binding,
        fmt(p.eventsPerSecond),
        (p.seconds / 3600).toFixed(1),
        (p.seconds / 86_400).toFixed(1),
      ]);
    }
    // Where the instance's CPU is the limit: the working process's CPU per event, on the 512 MB instance's typical 0.25 core.
    const onInstance = INSTANCE_CORES_512 / (one.cpuSeconds / one.status.eventsArchived);
    cpuBound.push(
      `  ${sinks}: ${fmt(onInstance)} events/s per instance; ${PROJECTED_INSTANCES.map((i) => {
        const p = project(onInstance, i, flags.warehouseSlots, dcr);
        return `${i} instances ${(p.seconds / 3600).toFixed(1)} h (${p.binding})`;
      }).join(", ")}`,
    );
  }
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const format = (cells: string[]): string => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("  ");
  out.push(format(header), ...rows.map(format));
  if (cpuBound.length > 0) {
    out.push(
      `The same where a 512 MB instance's CPU is the limit (${INSTANCE_CORES_512} core, Microsoft's typical figure; events/s = ${INSTANCE_CORES_512} / the worker's CPU per event measured here):`,
      ...cpuBound,
    );
  }
  const both = runs.find((r) => r.sinks === "both" && r.workers === 1)?.logAnalytics;
  if (both && both.records > 0) {
    const perRecord = both.bytes / both.records;
    out.push(
      `Ingestion volume with --sinks both: ${fmt(perRecord)} bytes per record (JSON, uncompressed), ${fmt((perRecord * EVENTS_PER_DAY) / 1e9)} GB a day, ${fmt((perRecord * YEAR_EVENTS) / 1e9)} GB for the year (GB = 10^9 bytes; Log Analytics bills its own size of each row's stored columns, which Microsoft puts about 25 % under the incoming JSON).`,
    );
  }
  return out;
}

/** The year's backfill at `perInstance` events/s per instance: each limit in events/s, the one that binds, and the time. */
function project(
  perInstance: number,
  instances: number,
  warehouseSlots: number,
  dcr: number,
): { instances: number; warehouse: number; eventsPerSecond: number; binding: string; seconds: number } {
  const limits: [string, number][] = [
    ["instances", Math.min(instances, 365) * perInstance],
    ["warehouse", Math.min(warehouseSlots, 365) * perInstance],
    ["DCR", dcr],
  ];
  const eventsPerSecond = Math.min(...limits.map(([, v]) => v));
  return {
    instances: limits[0]![1],
    warehouse: limits[1]![1],
    eventsPerSecond,
    binding: limits
      .filter(([, v]) => v === eventsPerSecond)
      .map(([name]) => name)
      .join(" = "),
    seconds: YEAR_EVENTS / eventsPerSecond,
  };
}

export function fmt(n: number): string {
  return Math.round(n).toLocaleString("en-US");
}
