/**
 * `npm run bench [-- --events N] [--rounds R] [--instance-memory MB] [--cloud-fetch | --inline] [--no-cloud-fetch]`: export throughput against
 * the local stack, side by side with the bare driver, peak RSS of the exporting process, Logs
 * Ingestion calls and bytes per call, and the stand-ins' own CPU share. The sandbox, the bare
 * reader and the exporter each run in their own process; bare and export alternate for R
 * rounds (default 3) against one sandbox, so a slow spell of a shared machine hits both sides
 * alike. Both sides run with the V8 heap Node gives itself on a Flex Consumption instance of
 * the given memory (default 512 MB, the smallest), see INSTANCE_HEAPS. The warehouse offers
 * CloudFetch, as a real one does; both sides read as the product does on that instance
 * (DATABRICKS_CLOUD_FETCH=auto, see cloudFetchFor in shared/databricks.ts: inline pages on 512 MB,
 * CloudFetch links from 2,048 MB), or through links with --cloud-fetch, or inline pages with
 * --inline (DATABRICKS_CLOUD_FETCH=true or false). --no-cloud-fetch: a warehouse without CloudFetch.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { readFileSync, readdirSync } from "node:fs";
import { availableParallelism } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import type { IngestionStats } from "../sandbox/logsIngestion";
import type { WarehouseStats } from "../sandbox/sqlWarehouse/server";
import type { SandboxContract } from "../sandbox/stack";
import { cloudFetchFor } from "../shared/databricks";
import { INSTANCE_HEAPS, rerunTrustingSandboxCa, workerProcess } from "./processes";
import type { SinksFloor } from "./sinksFloor";

const MAX_CALL_BYTES = 1_048_576; // the service's limit per call (1 MB)
/** Events the sinks' least work is measured on: enough for a steady figure per event, in a second or two. */
const FLOOR_EVENTS = 20_000;

/**
 * CPU cores of a Flex Consumption instance of each memory size, as Microsoft documents them
 * ("typical allocations"; the Flex Consumption plan page). There the process's own CPU is
 * what limits the export: the warehouse, Blob Storage and Log Analytics run elsewhere.
 */
const INSTANCE_CORES: Record<string, number> = { "512": 0.25, "2048": 1, "4096": 2 };
const root = join(__dirname, "..", "..");

interface WorkerResult {
  mode: string;
  events: number;
  seconds: number;
  maxRssMb: number;
  cpuSeconds: number;
  detail?: { ingestionCalls: number; recordsIngested: number; blobsWritten: number; bytesArchived: number };
}

async function main(): Promise<void> {
  const { events, rounds, instanceMemory, cloudFetch, readerCloudFetch } = readFlags(process.argv.slice(2));
  const heapFlags = INSTANCE_HEAPS[instanceMemory]!;
  if (await rerunTrustingSandboxCa()) return;

  log(`Starting the sandbox with ${events.toLocaleString("en-US")} synthetic events...`);
  log(
    instanceMemory === "none"
      ? "Both sides run with the V8 heap of this machine's own memory."
      : `Both sides run with the V8 heap Node gives itself on a ${instanceMemory} MB instance (${heapFlags.join(" ")}).`,
  );
  const loadStarted = performance.now();
  const { sandbox, contract } = await startSandbox(events, cloudFetch);
  log(
    `  the warehouse ${contract.databricks.cloudFetch ? "offers CloudFetch" : "answers inline only"}; both sides ask for ${readerCloudFetch ? "CloudFetch links" : "inline pages"} (DATABRICKS_CLOUD_FETCH=${readerCloudFetch})`,
  );
  log(`  ready in ${((performance.now() - loadStarted) / 1000).toFixed(1)} s`);
  try {
    const env = {
      ...process.env,
      ...contract.env,
      AUDIT_SERVICES: "*",
      EXPORT_TIME_BUDGET: "PT2H",
      EXPORT_SETTLE_DELAY: "PT1M",
      // The workers are not under the instance's memory limit: the choice auto makes for it, made here.
      DATABRICKS_CLOUD_FETCH: String(readerCloudFetch),
    };
    const results: RoundResult[] = [];
    for (let round = 1; round <= rounds; round++) {
      const label = rounds > 1 ? ` (round ${round} of ${rounds})` : "";
      log(`Bare driver: the export's query, fetched in chunks and thrown away${label}...`);
      const bare = await measured(sandbox.pid!, contract, () => worker("bare", env, heapFlags));
      log(`Full export cycle: Blob + Log Analytics${label}...`);
      await fetch(`${contract.logsIngestion.endpoint}/admin/reset`, { method: "POST" });
      // Each round exports into a container of its own, from no state, like a first run.
      const exported = await measured(sandbox.pid!, contract, () =>
        worker("export", { ...env, EXPORT_CONTAINER: `${contract.storage.container}-bench-${round}` }, heapFlags),
      );
      const stats = (await (await fetch(`${contract.logsIngestion.endpoint}/admin/stats`)).json()) as IngestionStats;
      results.push({ bare, exported, stats });
      log(`  bare ${fmt(rate(bare.run))} events/s, export ${fmt(rate(exported.run))} events/s: ratio ${(rate(exported.run) / rate(bare.run)).toFixed(2)}`);
    }
    log(`The sinks' least work, measured alone on ${fmt(FLOOR_EVENTS)} synthetic events...`);
    const floor = await workerProcess<SinksFloor>(["floor", String(FLOOR_EVENTS)], process.env, heapFlags);
    report(results, floor, instanceMemory, contract.databricks.cloudFetch && readerCloudFetch);
  } finally {
    sandbox.kill("SIGTERM");
    await new Promise((resolve) => sandbox.once("exit", resolve));
  }
}

interface Measured {
  run: WorkerResult;
  /** CPU seconds the stand-ins (the sandbox process and its children) used meanwhile. */
  standInCpu: number;
  /** CPU seconds the hypervisor gave to others meanwhile, all cores. */
  stolen: number;
  /** CloudFetch links the warehouse issued and files it served meanwhile. */
  links: number;
  files: number;
  fileBytes: number;
}

interface RoundResult {
  bare: Measured;
  exported: Measured;
  stats: IngestionStats;
}

async function measured(sandboxPid: number, contract: SandboxContract, run: () => Promise<WorkerResult>): Promise<Measured> {
  const warehouse = async (): Promise<WarehouseStats> => (await (await fetch(`${contract.databricks.adminUrl}/stats`)).json()) as WarehouseStats;
  const before = await warehouse();
  const cpu = sandboxCpu(sandboxPid);
  const steal = machineSteal();
  const result = await run();
  const standInCpu = sandboxCpu(sandboxPid) - cpu;
  const stolen = machineSteal() - steal;
  const after = await warehouse();
  return {
    run: result,
    standInCpu,
    stolen,
    links: after.linksIssued - before.linksIssued,
    files: after.filesServed - before.filesServed,
    fileBytes: after.bytesServed - before.bytesServed,
  };
}

/**
 * The table and the last line. With several rounds, each side's figures are from its fastest
 * round: on a shared machine, interference only ever slows a run down. Peak RSS is the highest
 * of any round.
 */
function report(results: RoundResult[], floor: SinksFloor, instanceMemory: string, cloudFetch: boolean): void {
  const fastest = (side: "bare" | "exported"): Measured => results.map((r) => r[side]).reduce((a, b) => (b.run.seconds < a.run.seconds ? b : a));
  const bare = fastest("bare");
  const exported = fastest("exported");
  const { stats } = results.find((r) => r.exported === exported)!;
  const peakRss = (side: "bare" | "exported"): number => Math.max(...results.map((r) => r[side].run.maxRssMb));
  const totalBytes = stats.bytes.reduce((a, b) => a + b, 0);
  const fewestCalls = Math.ceil(totalBytes / MAX_CALL_BYTES);
  const ratio = rate(exported.run) / rate(bare.run);
  const ratios = results.map((r) => rate(r.exported.run) / rate(r.bare.run));
  const rows: [string, string, string][] = [
    ["events", fmt(bare.run.events), fmt(exported.run.events)],
    ["seconds", bare.run.seconds.toFixed(2), exported.run.seconds.toFixed(2)],
    ["events/s", fmt(rate(bare.run)), fmt(rate(exported.run))],
    ["peak RSS (MB, highest of any round)", peakRss("bare").toFixed(0), peakRss("exported").toFixed(0)],
    ["process CPU (s)", bare.run.cpuSeconds.toFixed(1), exported.run.cpuSeconds.toFixed(1)],
    ["process CPU per event (us)", cpuPerEventUs(bare.run).toFixed(1), cpuPerEventUs(exported.run).toFixed(1)],
    ["stand-ins CPU (s)", bare.standInCpu.toFixed(1), exported.standInCpu.toFixed(1)],
    ["stand-ins CPU share of wall", pct(bare.standInCpu / bare.run.seconds), pct(exported.standInCpu / exported.run.seconds)],
    // All the CPU both sides needed, spread over every core: no schedule can run faster than this.
    [`shortest possible on ${cpus} cores (s)`, cpuFloor(bare).toFixed(2), cpuFloor(exported).toFixed(2)],
    // Time the hypervisor gave this machine's CPUs to others: high values make every figure slower.
    ["CPU steal (share of all cores)", pct(bare.stolen / bare.run.seconds / cpus), pct(exported.stolen / exported.run.seconds / cpus)],
    ["CloudFetch links issued / files served", `${fmt(bare.links)} / ${fmt(bare.files)}`, `${fmt(exported.links)} / ${fmt(exported.files)}`],
    ["CloudFetch MB downloaded", (bare.fileBytes / 1e6).toFixed(1), (exported.fileBytes / 1e6).toFixed(1)],
    ["Logs Ingestion calls", "-", fmt(stats.calls)],
    ["fewest calls the 1 MB limit allows", "-", fmt(fewestCalls)],
    ["bytes per call (mean, uncompressed)", "-", fmt(stats.calls ? totalBytes / stats.calls : 0)],
    ["records accepted", "-", fmt(stats.records)],
    ["blobs / bytes archived (gzip)", "-", exported.run.detail ? `${fmt(exported.run.detail.blobsWritten)} / ${fmt(exported.run.detail.bytesArchived)}` : "-"],
  ];
  const width = Math.max(...rows.map((r) => r[0].length));
  const heading = results.length > 1 ? ` (fastest of ${results.length} rounds each; ratio per round ${ratios.map((r) => r.toFixed(2)).join(", ")})` : "";
  print(`\nV8 heap: ${instanceMemory === "none" ? "this machine's own memory" : `as on a ${instanceMemory} MB Flex Consumption instance`}`);
  print(
    `results: ${cloudFetch ? "through CloudFetch links" : "inline Arrow pages"} (DATABRICKS_CLOUD_FETCH=${cloudFetch}; auto chooses by the instance memory)`,
  );
  print(`\n${"".padEnd(width)}  ${"bare driver".padStart(14)}  ${"full export".padStart(14)}${heading}`);
  for (const [name, a, b] of rows) print(`${name.padEnd(width)}  ${a.padStart(14)}  ${b.padStart(14)}`);
  print(
    `\nthe CPU both sides need caps the ratio on this machine at ${(bare.run.seconds / cpuFloor(exported)).toFixed(2)} (bare seconds / the export's shortest possible)`,
  );
  const cores = INSTANCE_CORES[instanceMemory];
  if (cores !== undefined) {
    const perSecond = (cores * 1e6) / cpuPerEventUs(exported.run);
    print(
      `on a ${instanceMemory} MB instance (${cores} ${cores > 1 ? "cores" : "core"}; the warehouse and the sinks elsewhere) its CPU allows the export at most ${fmt(perSecond)} events/s (${fmt(perSecond * 3600)} an hour), and caps the ratio at ${(cpuPerEventUs(bare.run) / cpuPerEventUs(exported.run)).toFixed(2)} (bare CPU / export CPU per event)`,
    );
  }
  // What the sinks' required parts cost alone, on top of the bare read, bounds the ratio whatever the export does.
  const floorUs = ((floor.clientCpuSeconds + floor.archiveGzipCpuSeconds) * 1e6) / floor.events;
  const floorSeconds = (floorUs * exported.run.events) / 1e6;
  print(
    `the sinks' least work, measured alone on ${fmt(floor.events)} events: the Logs Ingestion client's upload of their records (${fmt(floor.calls)} calls, answered at once) ${perEventUs(floor.clientCpuSeconds, floor.events)} us an event, the archive's gzip ${perEventUs(floor.archiveGzipCpuSeconds, floor.events)} us`,
  );
  print(
    `with only that on top of the bare read the ratio could reach at most ${(bare.run.seconds / ((bare.run.cpuSeconds + floorSeconds + exported.standInCpu) / cpus)).toFixed(2)} on this machine (with the export's stand-ins' CPU) ` +
      `and ${(cpuPerEventUs(bare.run) / (cpuPerEventUs(bare.run) + floorUs)).toFixed(2)} where the process's CPU is the limit; the export's own work beyond it: ${(cpuPerEventUs(exported.run) - cpuPerEventUs(bare.run) - floorUs).toFixed(1)} us an event`,
  );
  print(
    `\nexport/bare ratio ${ratio.toFixed(2)}, events/s ${fmt(rate(exported.run))}, peak RSS ${peakRss("exported").toFixed(0)} MB, calls ${stats.calls}, results ${cloudFetch ? `through CloudFetch (${fmt(exported.files)} files)` : "inline"}`,
  );
}

const perEventUs = (cpuSeconds: number, events: number): string => ((cpuSeconds * 1e6) / events).toFixed(1);
const rate = (run: WorkerResult): number => (run.seconds > 0 ? run.events / run.seconds : 0);
const cpuPerEventUs = (run: WorkerResult): number => (run.events > 0 ? (run.cpuSeconds * 1e6) / run.events : 0);
const cpuFloor = (side: Measured): number => (side.run.cpuSeconds + side.standInCpu) / cpus;

function readFlags(args: string[]): { events: number; rounds: number; instanceMemory: string; cloudFetch: boolean; readerCloudFetch: boolean } {
  const number = (flag: string, fallback: number): number => {
    const index = args.indexOf(flag);
    if (index < 0) return fallback;
    const value = Number(args[index + 1]);
    if (!Number.isInteger(value) || value < 1) throw new Error(`${flag} must be a whole number above 0; got '${args[index + 1] ?? ""}'.`);
    return value;
  };
  for (const arg of args)
    if (arg.startsWith("--") && !["--events", "--rounds", "--instance-memory", "--cloud-fetch", "--inline", "--no-cloud-fetch"].includes(arg))
      throw new Error(
        `Unknown option '${arg}': use --events N, --rounds N, --instance-memory ${Object.keys(INSTANCE_HEAPS).join("|")}, --cloud-fetch or --inline, and --no-cloud-fetch.`,
      );
  if (args.includes("--cloud-fetch") && args.includes("--no-cloud-fetch"))
    throw new Error("--cloud-fetch needs a warehouse with CloudFetch: drop --no-cloud-fetch.");
  if (args.includes("--cloud-fetch") && args.includes("--inline")) throw new Error("--cloud-fetch and --inline contradict each other: give one.");
  const memoryAt = args.indexOf("--instance-memory");
  const instanceMemory = memoryAt < 0 ? "512" : (args[memoryAt + 1] ?? "");
  if (!Object.hasOwn(INSTANCE_HEAPS, instanceMemory))
    throw new Error(
      `--instance-memory must be one of ${Object.keys(INSTANCE_HEAPS).join(", ")} (MB of a Flex Consumption instance, or none); got '${instanceMemory}'.`,
    );
  return {
    events: number("--events", 200_000),
    rounds: number("--rounds", 3),
    instanceMemory,
    cloudFetch: !args.includes("--no-cloud-fetch"),
    readerCloudFetch: args.includes("--cloud-fetch")
      ? true
      : args.includes("--inline")
        ? false
        : cloudFetchFor(undefined, instanceMemory === "none" ? undefined : Number(instanceMemory) * 1024 ** 2),
  };
}

function startSandbox(events: number, cloudFetch: boolean): Promise<{ sandbox: ChildProcess; contract: SandboxContract }> {
  const flags = ["sandbox", "--synthetic", String(events), ...(cloudFetch ? [] : ["--no-cloud-fetch"])];
  const sandbox = spawn(process.execPath, [join(root, "dist", "cli", "main.js"), ...flags], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  return new Promise((resolve, reject) => {
    sandbox.once("exit", (code) => reject(new Error(`the sandbox exited with code ${code} before it was ready`)));
    createInterface({ input: sandbox.stdout }).once("line", (line) => resolve({ sandbox, contract: JSON.parse(line) as SandboxContract }));
  });
}

function worker(mode: "bare" | "export", env: NodeJS.ProcessEnv, heapFlags: string[]): Promise<WorkerResult> {
  return workerProcess<WorkerResult>([mode], env, heapFlags);
}

const cpus = availableParallelism();

/** CPU seconds stolen from this (virtual) machine so far, all cores (Linux /proc/stat; 0 elsewhere). */
function machineSteal(): number {
  try {
    const fields = readFileSync("/proc/stat", "utf8").split("\n")[0]!.trim().split(/\s+/);
    return Number(fields[8] ?? 0) / 100; // USER_HZ
  } catch {
    return 0;
  }
}

/** CPU seconds used so far by a process and all its descendants (Linux /proc). */
function sandboxCpu(pid: number): number {
  const ticks = 100; // USER_HZ on Linux
  const parents = new Map<number, number>();
  const cpu = new Map<number, number>();
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      parents.set(Number(entry), Number(fields[1]));
      cpu.set(Number(entry), (Number(fields[11]) + Number(fields[12])) / ticks);
    } catch {
      // the process ended while we looked
    }
  }
  let total = 0;
  for (const [child] of cpu) {
    for (let p: number | undefined = child; p !== undefined && p > 1; p = parents.get(p)) {
      if (p === pid) {
        total += cpu.get(child) ?? 0;
        break;
      }
    }
  }
  return total;
}

const fmt = (n: number): string => Math.round(n).toLocaleString("en-US");
const pct = (x: number): string => `${(x * 100).toFixed(0)}%`;
const log = (text: string): void => void process.stderr.write(`${text}\n`);
const print = (text: string): void => void process.stdout.write(`${text}\n`);

main().catch((error: unknown) => {
  process.stderr.write(`${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
