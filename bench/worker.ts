/**
 * One measured side of the benchmark, in a process of its own so its peak RSS is its own:
 *   bare   - the export's query through the driver, fetched in chunks and thrown away
 *            (bare and export read through CloudFetch links or inline pages as DATABRICKS_CLOUD_FETCH says)
 *   export - one full export cycle (Blob + Log Analytics), exactly as `dbx-audit run`
 *   floor  - the sinks' least work on N synthetic events, measured alone (sinksFloor.ts)
 * Settings come from the environment (the sandbox's app settings). Prints one JSON line.
 */
import { readFileSync } from "node:fs";
import { loadConfig, resolveStart } from "../shared/config";
import { createAzureCredential } from "../shared/composition";
import { Warehouse, cloudFetchFor } from "../shared/databricks";
import { runExportCycle } from "../shared/export/cycle";
import { scanQuery } from "../shared/auditQueries";
import { measureSinksFloor } from "./sinksFloor";

async function main(): Promise<void> {
  const mode = process.argv[2];
  if (mode === "floor") {
    process.stdout.write(`${JSON.stringify(await measureSinksFloor(Number(process.argv[3]), 3))}\n`);
    return;
  }
  const config = loadConfig(process.env);
  // The benchmark sets DATABRICKS_CLOUD_FETCH to what auto chooses on the instance it stands for.
  const warehouseOptions = { cloudFetch: cloudFetchFor(config.cloudFetch, undefined) };
  const started = performance.now();
  let events = 0;
  let detail: unknown;
  if (mode === "bare") {
    const warehouse = await Warehouse.connect(config.databricks, createAzureCredential(config, process.env), warehouseOptions);
    const nowMs = Date.now();
    const query = scanQuery(config.filter, { timeUs: resolveStart(config.start, nowMs), eventId: "" }, (nowMs - config.settleDelayMs) * 1000);
    for await (const rows of warehouse.rows(query)) events += rows.length;
    await warehouse.close();
  } else if (mode === "export") {
    const summary = await runExportCycle(config, process.env, { info: () => undefined, warn: (m) => process.stderr.write(`${m}\n`) });
    events = summary.eventsDelivered;
    detail = summary;
  } else {
    throw new Error(`usage: worker bare|export|floor N (got '${mode}')`);
  }
  const seconds = (performance.now() - started) / 1000;
  const usage = process.resourceUsage();
  process.stdout.write(
    `${JSON.stringify({ mode, events, seconds, maxRssMb: peakRssKb(usage.maxRSS) / 1024, cpuSeconds: (usage.userCPUTime + usage.systemCPUTime) / 1e6, detail })}\n`,
  );
}

/**
 * This process's peak RSS in KB: VmHWM on Linux, which starts afresh with the program. The
 * rusage figure does not: Linux keeps it across fork and exec, so a worker spawned by a large
 * parent (one that hosts the stand-ins) would report the parent's size.
 */
function peakRssKb(fallbackKb: number): number {
  try {
    return Number(/^VmHWM:\s+(\d+) kB/m.exec(readFileSync("/proc/self/status", "utf8"))?.[1] ?? fallbackKb);
  } catch {
    return fallbackKb;
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exit(1);
});
