/**
 * `npm run bench:backfill [-- --events N] [--days D] [--workers 1,2] [--sinks archive,both] [--warehouse-slots S]`:
 * a backfill's throughput against the local stack. N synthetic events (default 200,000) spread over
 * D whole UTC days (default 8) that end where the live export begins (an absolute EXPORT_START, the
 * UTC midnight two days ago, with no live state), so the backfill's `--to` defaults to it. For each
 * of the sinks (`archive`, `both`) and each K (1, 2), into a container and a queue of its own: the
 * backfill is started in this process (`startBackfill`, as `dbx-audit backfill start` calls it),
 * then K processes `bin/dbx-audit.js backfill work --workers 1 --json` take the slices (a UTC day
 * each) until none waits, each with the V8 heap of a 512 MB Flex Consumption instance. Prints the
 * seconds from spawning them until the last exits, events/s, the scaling efficiency against K = 1,
 * the workers' peak RSS, what Log Analytics received with both sinks, a check that the archive holds
 * every event once, and a projection of a year of 20 million events a day with 10, 40 and 100
 * instances, bounded by the warehouse and the data collection rule. Figures, not a test: nothing
 * here passes or fails.
 */
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { gunzip as gunzipCallback } from "node:zlib";
import { BlobServiceClient } from "@azure/storage-blob";
import { DEFAULT_STREAM_NAME } from "../sandbox/logsIngestion";
import { startSandboxStack, type SandboxStack } from "../sandbox/stack";
import type { AuditRowInput } from "../sandbox/sqlWarehouse/auditTable";
import { syntheticRows } from "../sandbox/sqlWarehouse/synthetic";
import { backfillClients, startBackfill } from "../shared/backfill/control";
import { readBackfillStatus } from "../shared/backfill/status";
import { DEFAULTS, loadConfig } from "../shared/config";
import { readHostFunctionTimeout } from "../shared/hostSettings";
import { INSTANCE_HEAPS, rerunTrustingSandboxCa } from "./processes";
import { DEFAULT_WAREHOUSE_SLOTS, fmt, projection, rate, type Flags, type Run, type Sinks, type WorkLine } from "./backfillProjection";

const gunzip = promisify(gunzipCallback);
const root = join(__dirname, "..", "..");
const launcher = join(root, "bin", "dbx-audit.js");
const DAY_MS = 86_400_000;
const LOAD_BATCH = 10_000;
/** Linux's clock ticks per second for /proc/<pid>/stat (USER_HZ, 100 on every mainstream kernel). */
const CLOCK_TICKS = 100;
const SAMPLE_MS = 200;

async function main(): Promise<void> {
  const flags = readFlags(process.argv.slice(2));
  if (await rerunTrustingSandboxCa()) return;

  const liveStartMs = Math.floor(Date.now() / DAY_MS) * DAY_MS - 2 * DAY_MS;
  const fromMs = liveStartMs - flags.days * DAY_MS;
  const liveStart = new Date(liveStartMs).toISOString();
  const from = new Date(fromMs).toISOString().slice(0, 10);
  log(`Starting the sandbox with ${fmt(flags.events)} synthetic events over ${flags.days} UTC days, ${from} to ${liveStart} (the live export's start)...`);
  const loadStarted = performance.now();
  const stack = await startSandboxStack({ synthetic: 0, cloudFetch: false });
  try {
    await load(stack, flags.events, fromMs, liveStartMs);
    log(`  ready in ${((performance.now() - loadStarted) / 1000).toFixed(1)} s`);
    const settingsFor = (name: string): NodeJS.ProcessEnv => ({
      ...process.env,
      ...stack.contract.env,
      AUDIT_SERVICES: "*",
      EXPORT_START: liveStart,
      // As DATABRICKS_CLOUD_FETCH=auto reads on the 512 MB instance these workers stand for (they lack its memory limit).
      DATABRICKS_CLOUD_FETCH: "false",
      EXPORT_CONTAINER: name,
      BACKFILL_QUEUE: name,
    });
    const heapFlags = INSTANCE_HEAPS["512"]!;
    await probeHeap(workerEnv(settingsFor("bench-backfill-probe"), heapFlags));
    // The first backfill against a fresh stack runs slower (the stand-ins' code not yet optimized): one day, not measured.
    const lastDay = new Date(liveStartMs - DAY_MS).toISOString().slice(0, 10);
    log("Warm-up (not measured):");
    await backfillRun(stack, settingsFor("bench-backfill-warm-up"), "both", 1, lastDay, heapFlags, undefined);

    const runs: Run[] = [];
    for (const sinks of flags.sinks) {
      for (const workers of flags.workers) {
        runs.push(await backfillRun(stack, settingsFor(`bench-backfill-${sinks}-k${workers}`), sinks, workers, from, heapFlags, flags.events));
      }
    }
    process.stdout.write(`${[...figures(runs, flags), "", ...projection(runs, flags)].join("\n")}\n`);
  } finally {
    await stack.close();
  }
}

/** N synthetic events over [from, live start), appended in batches (a fixed seed: the same rows each run). */
async function load(stack: SandboxStack, events: number, fromMs: number, toMs: number): Promise<void> {
  let batch: AuditRowInput[] = [];
  for (const row of syntheticRows(events, { seed: 1, start: new Date(fromMs), end: new Date(toMs) })) {
    batch.push(row);
    if (batch.length >= LOAD_BATCH) {
      await stack.warehouse.appendRows(batch);
      batch = [];
    }
  }
  if (batch.length > 0) await stack.warehouse.appendRows(batch);
  const count = await stack.warehouse.rowCount();
  if (count !== events) throw new Error(`the warehouse holds ${count} rows, not ${events}`);
}

/**
 * The workers' environment. The heap flags go in NODE_OPTIONS: bin/dbx-audit.js re-runs itself to
 * trust the sandbox's CA without passing its own V8 flags on, and the process it starts is the one
 * that works. NODE_EXTRA_CA_CERTS is left out so that it does re-run: the kernel's peak RSS
 * (`maxRssBytes`, from rusage) is kept across fork and exec, so a worker forked straight from this
 * process (which hosts the warehouse stand-in) would report this process's size; one started by the
 * small launcher reports its own.
 */
function workerEnv(settings: NodeJS.ProcessEnv, heapFlags: string[]): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...settings, NODE_OPTIONS: [settings.NODE_OPTIONS, ...heapFlags].filter(Boolean).join(" ") };
  delete env.NODE_EXTRA_CA_CERTS;
  delete env.DBX_AUDIT_CA_ADDED;
  return env;
}

/** Once: the V8 heap limit and starting peak RSS of the process that works, through the same launcher and NODE_OPTIONS. */
async function probeHeap(env: NodeJS.ProcessEnv): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "dbx-audit-bench-probe-"));
  const probe = join(dir, "probe.js");
  writeFileSync(
    probe,
    `process.stderr.write("heap-probe " + JSON.stringify({ pid: process.pid, reRun: process.env.DBX_AUDIT_CA_ADDED === "1", heapLimit: require("node:v8").getHeapStatistics().heap_size_limit, maxRss: process.resourceUsage().maxRSS * 1024 }) + "\\n");\n`,
  );
  try {
    const child = spawn(process.execPath, [launcher, "backfill", "status", "--json"], {
      cwd: root,
      env: { ...env, NODE_OPTIONS: `${env.NODE_OPTIONS ?? ""} --require ${JSON.stringify(probe)}` },
      stdio: ["ignore", "ignore", "pipe"],
    });
    let err = "";
    child.stderr.on("data", (d: Buffer) => (err += d.toString()));
    await new Promise((resolve) => child.on("close", resolve));
    const seen = [...err.matchAll(/^heap-probe (.*)$/gm)].map((m) => JSON.parse(m[1]!) as { pid: number; reRun: boolean; heapLimit: number; maxRss: number });
    const working = seen.find((p) => p.reRun) ?? seen[seen.length - 1];
    if (!working) throw new Error(`the heap probe printed nothing: ${err.trim()}`);
    log(
      `Heap probe: the process that works (pid ${working.pid}, ${working.reRun ? "started by bin/dbx-audit.js to trust the sandbox's CA" : "not re-run"}) has heap_size_limit ${mb(working.heapLimit)} MB with NODE_OPTIONS="${env.NODE_OPTIONS}"; its peak RSS at start ${mb(working.maxRss)} MB (the launcher's: ${seen.length > 1 ? `${mb(seen[0]!.maxRss)} MB` : "-"}).`,
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function backfillRun(
  stack: SandboxStack,
  settings: NodeJS.ProcessEnv,
  sinks: Sinks,
  workers: number,
  from: string,
  heapFlags: string[],
  /** Events expected in the archive (undefined: not checked). */
  events: number | undefined,
): Promise<Run> {
  const config = loadConfig(settings, { storage: true, functionTimeout: readHostFunctionTimeout() ?? DEFAULTS.functionTimeoutHost });
  const clients = backfillClients(config, settings);
  stack.logsIngestion.reset();
  const started = await startBackfill(config, clients, { from, sinks }, Date.now());
  log(
    `Backfill to ${sinks === "both" ? "the archive and Log Analytics" : "the archive"} with ${workers} worker process(es): ${started.enqueued} slices of [${started.manifest.from}, ${started.manifest.to}) on queue ${clients.queue.name}...`,
  );

  const env = workerEnv(settings, heapFlags);
  const t0 = performance.now();
  const children = Array.from({ length: workers }, () => {
    const child = spawn(process.execPath, [...heapFlags, launcher, "backfill", "work", "--workers", "1", "--json", "--no-progress"], {
      cwd: root,
      env,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    let err = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    child.stderr.on("data", (d: Buffer) => (err += d.toString()));
    const exited = new Promise<{ code: number | null; out: string; err: string; ms: number }>((resolve) =>
      child.on("close", (code) => resolve({ code, out, err, ms: performance.now() - t0 })),
    );
    return { child, exited };
  });
  const samples = children.map((c) => sampler(c.child.pid!));
  const results = await Promise.all(children.map((c) => c.exited));
  const seconds = Math.max(...results.map((r) => r.ms)) / 1000;
  for (const s of samples) s.stop();

  const lines = results.map((r, index) => {
    const line = r.out
      .trim()
      .split("\n")
      .reverse()
      .find((l) => l.startsWith("{"));
    if (!line) throw new Error(`worker ${index + 1} printed no JSON line (exit code ${r.code}):\n${r.err.trim().split("\n").slice(-15).join("\n")}`);
    if (r.code !== 0) log(`  worker ${index + 1} exited with code ${r.code}:\n${r.err.trim().split("\n").slice(-10).join("\n")}`);
    return JSON.parse(line) as WorkLine;
  });
  for (const [index, s] of samples.entries()) {
    if (s.workingPid() !== lines[index]!.pid) log(`  note: worker ${index + 1} sampled pid ${s.workingPid()}, its JSON names pid ${lines[index]!.pid}`);
  }

  const archive = await countArchive(settings.EXPORT_STORAGE_CONNECTION_STRING!, settings.EXPORT_CONTAINER!);
  const status = await readBackfillStatus(clients.store, Date.now(), started.manifest.id);
  const run: Run = {
    sinks,
    workers,
    seconds,
    lines,
    vmHwmMb: Math.max(...samples.map((s) => s.vmHwmKb())) / 1024,
    cpuSeconds: samples.reduce((sum, s) => sum + s.cpuSeconds(), 0),
    archive,
    status: {
      eventsArchived: status?.eventsArchived ?? 0,
      eventsIngested: status?.eventsIngested ?? 0,
      done: status?.slices.done ?? 0,
      total: status?.slices.total ?? 0,
    },
  };
  if (sinks === "both") {
    const records = stack.logsIngestion.received(DEFAULT_STREAM_NAME);
    const stats = stack.logsIngestion.stats();
    run.logAnalytics = {
      records: records.length,
      bytes: records.reduce((sum, record) => sum + Buffer.byteLength(JSON.stringify(record)), 0),
      calls: stats.acceptedCalls,
      bodyBytes: stats.bytes.reduce((a, b) => a + b, 0),
    };
  }
  const once = archive.lines === archive.distinctEvents && (events === undefined || archive.lines === events);
  log(
    `  ${seconds.toFixed(1)} s; archive: ${fmt(archive.lines)} lines in ${fmt(archive.blobs)} blobs under audit/, ${fmt(archive.distinctEvents)} distinct event_id (${once ? "every event once" : `NOT every event once: ${fmt(events ?? archive.distinctEvents)} expected`}); status: ${fmt(run.status.eventsArchived)} archived, ${run.status.done}/${run.status.total} slices done${run.logAnalytics ? `, ${fmt(run.status.eventsIngested)} ingested; Log Analytics received ${fmt(run.logAnalytics.records)} records in ${fmt(run.logAnalytics.calls)} calls` : ""}`,
  );
  return run;
}

/**
 * Samples the process that works (the launcher's child, or the launcher itself if it did not re-run)
 * every 0.2 s: its VmHWM and its CPU time, the last reading before it exits.
 */
function sampler(launcherPid: number): { stop: () => void; vmHwmKb: () => number; cpuSeconds: () => number; workingPid: () => number } {
  let pid: number | undefined;
  let hwm = 0;
  let ticks = 0;
  const sample = (): void => {
    try {
      if (pid === undefined) {
        const child = readFileSync(`/proc/${launcherPid}/task/${launcherPid}/children`, "utf8").trim().split(/\s+/)[0];
        if (child) pid = Number(child);
      }
      const target = pid ?? launcherPid;
      const status = readFileSync(`/proc/${target}/status`, "utf8");
      hwm = Math.max(hwm, Number(/^VmHWM:\s+(\d+) kB/m.exec(status)?.[1] ?? 0));
      // Fields after the command's closing parenthesis: utime and stime are the 12th and 13th.
      const fields = readFileSync(`/proc/${target}/stat`, "utf8").split(") ")[1]!.split(" ");
      ticks = Number(fields[11]) + Number(fields[12]);
    } catch {
      // The process is gone (or not started yet): keep the last reading.
    }
  };
  const timer = setInterval(sample, SAMPLE_MS);
  sample();
  return {
    stop: () => clearInterval(timer),
    vmHwmKb: () => hwm,
    cpuSeconds: () => ticks / CLOCK_TICKS,
    workingPid: () => pid ?? launcherPid,
  };
}

/** Every line of every archive blob under audit/, and how many distinct event_id they hold. */
async function countArchive(connectionString: string, containerName: string): Promise<{ lines: number; distinctEvents: number; blobs: number }> {
  const container = BlobServiceClient.fromConnectionString(connectionString).getContainerClient(containerName);
  const names: string[] = [];
  for await (const blob of container.listBlobsFlat({ prefix: "audit/" })) names.push(blob.name);
  const ids = new Set<string>();
  let lines = 0;
  let next = 0;
  const worker = async (): Promise<void> => {
    for (let i = next++; i < names.length; i = next++) {
      const text = (await gunzip(await container.getBlobClient(names[i]!).downloadToBuffer())).toString("utf8");
      for (const line of text.split("\n")) {
        if (!line) continue;
        lines += 1;
        ids.add((JSON.parse(line) as { event_id: string }).event_id);
      }
    }
  };
  await Promise.all(Array.from({ length: 8 }, worker));
  return { lines, distinctEvents: ids.size, blobs: names.length };
}

function figures(runs: Run[], flags: Flags): string[] {
  const header = [
    "sinks",
    "K",
    "events",
    "seconds",
    "events/s",
    "efficiency",
    "peak RSS/worker MB",
    "VmHWM MB",
    "CPU us/event",
    "slices done",
    "LA records",
    "LA MB",
    "bytes/record",
    "records/call",
  ];
  const rows = runs.map((run) => {
    const one = runs.find((r) => r.sinks === run.sinks && r.workers === 1);
    const la = run.logAnalytics;
    return [
      run.sinks,
      String(run.workers),
      fmt(run.status.eventsArchived),
      run.seconds.toFixed(1),
      fmt(rate(run)),
      one ? (rate(run) / (run.workers * rate(one))).toFixed(2) : "-",
      fmt(Math.max(...run.lines.map((l) => l.maxRssBytes)) / 1_048_576),
      fmt(run.vmHwmMb),
      ((run.cpuSeconds / run.status.eventsArchived) * 1e6).toFixed(1),
      `${run.lines.reduce((sum, l) => sum + l.done, 0)}/${run.status.total}`,
      la ? fmt(la.records) : "-",
      la ? (la.bytes / 1e6).toFixed(1) : "-",
      la && la.records > 0 ? fmt(la.bytes / la.records) : "-",
      la && la.calls > 0 ? fmt(la.records / la.calls) : "-",
    ];
  });
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const format = (cells: string[]): string => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("  ");
  return [
    "",
    `Backfill of ${fmt(flags.events)} events over ${flags.days} UTC days (a slice each), K processes 'backfill work --workers 1' on the 512 MB instance's heap (${INSTANCE_HEAPS["512"]!.join(" ")}):`,
    format(header),
    ...rows.map(format),
    "efficiency: events/s at K / (K x events/s at K = 1); peak RSS/worker: the largest maxRssBytes of the run's workers; VmHWM and CPU: sampled from /proc every 0.2 s;",
    "LA: what the Logs Ingestion stand-in received (bytes: JSON of each record, uncompressed). Every figure is this machine's, the stand-ins on the same cores.",
    ...runs.map(
      (r) =>
        `  ${r.sinks}, K=${r.workers}: archive ${fmt(r.archive.lines)} lines, ${fmt(r.archive.distinctEvents)} distinct event_id (${r.archive.lines === flags.events && r.archive.distinctEvents === flags.events ? "every event once" : "NOT every event once"}); status eventsArchived ${fmt(r.status.eventsArchived)}${r.sinks === "both" ? `, eventsIngested ${fmt(r.status.eventsIngested)}` : ""}; deliveries ${r.lines.map((l) => l.deliveries).join("+")}, failures ${r.lines.reduce((s, l) => s + l.failures, 0)}, poisoned ${r.lines.reduce((s, l) => s + l.poisoned, 0)}`,
    ),
  ];
}

function readFlags(argv: string[]): Flags {
  const value = (name: string): string | undefined => {
    const index = argv.indexOf(name);
    return index >= 0 ? argv[index + 1] : undefined;
  };
  const events = Number(value("--events") ?? 200_000);
  const days = Number(value("--days") ?? 8);
  const workers = (value("--workers") ?? "1,2").split(",").map(Number);
  const sinks = (value("--sinks") ?? "archive,both").split(",") as Sinks[];
  const warehouseSlots = Number(value("--warehouse-slots") ?? DEFAULT_WAREHOUSE_SLOTS);
  if (
    !Number.isInteger(events) ||
    events < 1 ||
    !Number.isInteger(days) ||
    days < 1 ||
    days > 360 ||
    workers.some((k) => !Number.isInteger(k) || k < 1 || k > 16) ||
    sinks.some((s) => s !== "archive" && s !== "both") ||
    !Number.isInteger(warehouseSlots) ||
    warehouseSlots < 1
  ) {
    throw new Error(
      "usage: backfillBenchmark [--events N (>= 1)] [--days D (1..360)] [--workers 1,2 (processes, 1..16)] [--sinks archive,both] [--warehouse-slots S (>= 1, default 400)]",
    );
  }
  return { events, days, workers, sinks, warehouseSlots };
}

function log(message: string): void {
  process.stderr.write(`${message}\n`);
}

function mb(bytes: number): string {
  return fmt(bytes / 1_048_576);
}

main().catch((error: unknown) => {
  process.stderr.write(`${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exit(1);
});
