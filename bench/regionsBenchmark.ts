/**
 * `npm run bench:regions [-- --events N] [--regions R]`: one export cycle over R regions (a
 * warehouse stand-in each, N synthetic events each, region 1's account-level events in every
 * region as Databricks has them), with the regions at once and one at a time, against the same
 * cycle over region 1 alone, each in a process of its own with the V8 heap of a 512 MB Flex
 * Consumption instance. Prints events/s, peak RSS,
 * CPU and the account-level copies skipped. Figures, not a test: nothing here passes or fails.
 */
import { startSandboxStack, type SandboxStack } from "../sandbox/stack";
import { syntheticRows } from "../sandbox/sqlWarehouse/synthetic";
import { INSTANCE_HEAPS, rerunTrustingSandboxCa, workerProcess } from "./processes";

interface ExportRun {
  events: number;
  seconds: number;
  maxRssMb: number;
  cpuSeconds: number;
  detail: { duplicatesSkipped: number; sources: { name: string; eventsDelivered: number; status: string }[] };
}

async function main(): Promise<void> {
  const events = Number(flag("--events") ?? 100_000);
  const regions = Number(flag("--regions") ?? 2);
  if (!Number.isInteger(events) || events < 1 || !Number.isInteger(regions) || regions < 2) {
    throw new Error("usage: regionsBenchmark [--events N (per region, >= 1)] [--regions R (>= 2)]");
  }
  if (await rerunTrustingSandboxCa()) return;
  process.stderr.write(`Starting ${regions} warehouse stand-ins with ${events.toLocaleString("en-US")} synthetic events each...\n`);
  const stack = await startSandboxStack({ synthetic: 0, regions, cloudFetch: false });
  try {
    const shared = await load(stack, events);
    const base = {
      ...process.env,
      ...stack.contract.env,
      AUDIT_SERVICES: "*",
      EXPORT_TIME_BUDGET: "PT2H",
      EXPORT_SETTLE_DELAY: "PT1M",
      EXPORT_START: "P3D",
      // As DATABRICKS_CLOUD_FETCH=auto reads on the 512 MB instance these workers stand for (they lack its memory limit).
      DATABRICKS_CLOUD_FETCH: "false",
    };
    const single: NodeJS.ProcessEnv = { ...base, EXPORT_CONTAINER: "bench-one-region" };
    delete single.DATABRICKS_SOURCES;
    process.stderr.write("One export cycle over region 1 alone...\n");
    const one = await exportCycle(single);
    process.stderr.write(`One export cycle over all ${regions} regions, up to four at once (instances of 1.5 GB and more)...\n`);
    const all = await exportCycle({ ...base, EXPORT_CONTAINER: "bench-all-regions", EXPORT_SOURCE_CONCURRENCY: "4" });
    process.stderr.write(`One export cycle over all ${regions} regions, one at a time (the default under 1.5 GB)...\n`);
    const serial = await exportCycle({ ...base, EXPORT_CONTAINER: "bench-all-regions-serial", EXPORT_SOURCE_CONCURRENCY: "1" });
    const rows: [string, (run: ExportRun) => string][] = [
      ["events archived", (r) => fmt(r.events)],
      ["account-level copies skipped", (r) => fmt(r.detail.duplicatesSkipped ?? 0)],
      ["seconds", (r) => r.seconds.toFixed(2)],
      ["events/s", (r) => fmt(r.events / r.seconds)],
      ["peak RSS (MB)", (r) => fmt(r.maxRssMb)],
      ["process CPU per event (us)", (r) => ((r.cpuSeconds / r.events) * 1e6).toFixed(1)],
    ];
    const out = [
      `\n${"".padEnd(32)}${"region 1 alone".padStart(16)}${`${regions} at once`.padStart(16)}${`${regions}, 1 at a time`.padStart(18)}`,
      ...rows.map(([label, value]) => `${label.padEnd(32)}${value(one).padStart(16)}${value(all).padStart(16)}${value(serial).padStart(18)}`),
      `\n${fmt(shared)} account-level events of region 1 are in every region; per source: ${all.detail.sources.map((s) => `${s.name} ${fmt(s.eventsDelivered)} (${s.status})`).join(", ")}`,
    ];
    process.stdout.write(`${out.join("\n")}\n`);
  } finally {
    await stack.close();
  }
}

/** N synthetic events per region (a seed and workspaces of its own), and region 1's account-level events in every other region too. */
async function load(stack: SandboxStack, events: number): Promise<number> {
  const start = new Date(Date.now() - 2 * 86_400_000);
  const end = new Date(Date.now() - 10 * 60_000);
  const account = [...syntheticRows(events, { seed: 1, start, end })].filter((row) => row.workspace_id === "0");
  await Promise.all(
    stack.warehouses.map(async (warehouse, index) => {
      const workspaceIds = [1, 2].map((n) => `${index + 1}00000000000000${n}`);
      await warehouse.appendSynthetic(events, { seed: index + 1, start, end, ...(index === 0 ? {} : { workspaceIds }) });
      if (index > 0) await warehouse.appendRows(account);
    }),
  );
  return account.length;
}

function exportCycle(env: NodeJS.ProcessEnv): Promise<ExportRun> {
  return workerProcess<ExportRun>(["export"], env, INSTANCE_HEAPS["512"]!);
}

function flag(name: string): string | undefined {
  const index = process.argv.indexOf(name);
  return index >= 0 ? process.argv[index + 1] : undefined;
}

function fmt(n: number): string {
  return Math.round(n).toLocaleString("en-US");
}

main().catch((error: unknown) => {
  process.stderr.write(`${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exit(1);
});
