import { spawn } from "node:child_process";
import { Option, type Command } from "commander";
import { SingleBar, Presets } from "cli-progress";
import { DEFAULTS, loadConfig, type AppConfig } from "../shared/config";
import { readHostFunctionTimeout, readHostMaxDequeueCount } from "../shared/hostSettings";
import { backfillClients, cancelBackfill, startBackfill, type BackfillClients } from "../shared/backfill/control";
import { workQueue, type DeliveryContext } from "../shared/backfill/deliver";
import { formatBackfillStatus, readBackfillStatus, type BackfillStatus } from "../shared/backfill/status";
import { formatAge } from "../shared/checks/schedule";
import { EXIT, fail } from "./exit";

/**
 * `dbx-audit backfill start|work|status|cancel`: a backfill of past days, one queue message per
 * (source, UTC day), exported by the Function App's queue trigger or by `backfill work` from a
 * shell (the same handler), with the app settings in the environment.
 */
export function registerBackfillCommand(program: Command): void {
  const backfill = program
    .command("backfill")
    .description("Backfill past days of the audit table (up to its 365 days) into the archive (and Log Analytics), one queue message per source and UTC day.");

  backfill
    .command("start")
    .description("Enqueue one slice per (source, UTC day) of [from, to); days already backfilled are skipped.")
    .requiredOption("--from <date>", "first UTC day, included (e.g. 2026-01-01)")
    .option("--to <date>", "end, excluded: a UTC midnight, at most where the live export began (default: where it began, so the two never overlap)")
    .option("--sinks <sinks>", "archive (the Blob archive only: the cheap path) or both (archive and Log Analytics)", "archive")
    .option("--source <name>", "only this source (region); default every configured source")
    .option("--json", "print the result as JSON")
    .action(async (flags: { from: string; to?: string; sinks: string; source?: string; json?: boolean }) => {
      try {
        const { config, clients } = open();
        const result = await startBackfill(
          config,
          clients,
          { from: flags.from, ...(flags.to ? { to: flags.to } : {}), sinks: flags.sinks, ...(flags.source ? { source: flags.source } : {}) },
          Date.now(),
        );
        const m = result.manifest;
        if (flags.json)
          process.stdout.write(
            `${JSON.stringify({ id: m.id, from: m.from, to: m.to, sinks: m.sinks, sources: m.sources, enqueued: result.enqueued, skipped: result.skipped.length, queue: clients.queue.name, notes: result.notes })}\n`,
          );
        else {
          process.stdout.write(
            `Backfill ${m.id}: [${m.from}, ${m.to}) of ${m.sources.join(", ")} to ${m.sinks === "both" ? "the archive and Log Analytics" : "the archive"}: ${result.enqueued} slice(s) enqueued on ${clients.queue.name}, ${result.skipped.length} day(s) already done skipped.\n` +
              result.notes.map((n) => `note: ${n}\n`).join("") +
              `The Function App's backfillSlice function runs them; or run 'dbx-audit backfill work --workers K' here. Follow with 'dbx-audit backfill status'.\n`,
          );
        }
      } catch (error) {
        fail(error);
      }
    });

  backfill
    .command("work")
    .description("Run the queue's slices from this shell (the queue trigger's own handler) until none waits.")
    .option("--workers <k>", "worker processes", "1")
    .option("--json", "print each worker's result (deliveries, slices done, failures, peak RSS) as a JSON line")
    .option("--no-progress", "no progress bar even on a terminal")
    // One of K worker processes: the parent prints the status once they are done.
    .addOption(new Option("--worker-process").hideHelp())
    .action(async (flags: { workers: string; json?: boolean; progress?: boolean; workerProcess?: boolean }) => {
      try {
        const workers = Number(flags.workers);
        if (!Number.isInteger(workers) || workers < 1 || workers > 64)
          throw new Error(`--workers must be a whole number of processes from 1 to 64; got '${flags.workers}'.`);
        await work(workers, flags.json === true, flags.progress !== false && !flags.json && !flags.workerProcess, flags.workerProcess !== true);
      } catch (error) {
        fail(error);
      }
    });

  backfill
    .command("status")
    .description("Slices done, running, waiting and failed, events archived and ingested, the rate and the time left.")
    .option("--id <id>", "this backfill (default: the latest)")
    .option("--json", "print the status as JSON")
    .option("--watch", "on a terminal: a progress bar until the backfill finishes")
    .action(async (flags: { id?: string; json?: boolean; watch?: boolean }) => {
      try {
        const { clients } = open();
        if (flags.watch && process.stderr.isTTY && !flags.json) await watch(clients, flags.id);
        const status = await statusWithQueue(clients, flags.id);
        if (!status) {
          process.stdout.write(flags.json ? "null\n" : "No backfill has been started. Start one with 'dbx-audit backfill start --from <day>'.\n");
          return;
        }
        process.stdout.write(flags.json ? `${JSON.stringify(status, null, 2)}\n` : `${formatBackfillStatus(status)}\n`);
        if (status.failed.length > 0) process.exitCode = EXIT.failure;
      } catch (error) {
        fail(error);
      }
    });

  backfill
    .command("cancel")
    .description("Cancel a backfill: its waiting slices are dropped; running ones finish their current invocation. Days done stay done.")
    .option("--id <id>", "this backfill (default: the latest)")
    .action(async (flags: { id?: string }) => {
      try {
        const { clients } = open();
        const manifest = await cancelBackfill(clients.store, Date.now(), flags.id);
        const status = await readBackfillStatus(clients.store, Date.now(), manifest.id);
        process.stdout.write(
          `Backfill ${manifest.id} cancelled at ${manifest.cancelledAt}: ${status?.slices.cancelled ?? 0} waiting slice(s) will not run, ${status?.slices.running ?? 0} running slice(s) stop at the end of their invocation, ${status?.slices.done ?? 0} done stay done.\n`,
        );
      } catch (error) {
        fail(error);
      }
    });
}

function open(): { config: AppConfig; clients: BackfillClients } {
  const config = loadConfig(process.env, { storage: true, functionTimeout: readHostFunctionTimeout() ?? DEFAULTS.functionTimeoutHost });
  return { config, clients: backfillClients(config, process.env) };
}

async function statusWithQueue(clients: BackfillClients, id?: string): Promise<BackfillStatus | null> {
  const status = await readBackfillStatus(clients.store, Date.now(), id);
  if (!status) return null;
  return { ...status, queue: { waiting: await clients.queue.approximateCount(), poison: await clients.queue.approximatePoisonCount() } };
}

/** One worker here, or K worker processes, each the queue trigger's handler, until no slice waits. */
async function work(workers: number, json: boolean, progress: boolean, report: boolean): Promise<void> {
  const { config, clients } = open();
  const bar = progress ? startBar(clients) : undefined;
  try {
    if (workers === 1) {
      const log = { info: (m: string) => process.stderr.write(`${m}\n`), warn: (m: string) => process.stderr.write(`warning: ${m}\n`) };
      const context: DeliveryContext = {
        config,
        log,
        queue: clients.queue,
        backfill: clients.store,
        credential: clients.credential,
        maxDequeueCount: readHostMaxDequeueCount(),
      };
      const result = await workQueue(context);
      if (json) process.stdout.write(`${JSON.stringify({ pid: process.pid, ...result, maxRssBytes: process.resourceUsage().maxRSS * 1024 })}\n`);
      if (result.poisoned > 0) process.exitCode = EXIT.failure;
    } else {
      const codes = await Promise.all(Array.from({ length: workers }, (_, index) => runWorkerProcess(index + 1, json)));
      if (codes.some((code) => code !== 0)) process.exitCode = EXIT.failure;
    }
  } finally {
    await bar?.stop();
  }
  const status = report && !json ? await statusWithQueue(clients) : null;
  if (status) process.stderr.write(`${formatBackfillStatus(status)}\n`);
}

function runWorkerProcess(index: number, json: boolean): Promise<number> {
  const child = spawn(
    process.execPath,
    [...process.execArgv, process.argv[1]!, "backfill", "work", "--workers", "1", "--worker-process", ...(json ? ["--json"] : [])],
    {
      env: process.env,
      stdio: ["ignore", "inherit", "pipe"],
    },
  );
  child.stderr.setEncoding("utf8");
  let partial = "";
  child.stderr.on("data", (text: string) => {
    const lines = (partial + text).split("\n");
    partial = lines.pop() ?? "";
    for (const line of lines) process.stderr.write(`[worker ${index}] ${line}\n`);
  });
  return new Promise((resolve) => child.on("close", (code) => resolve(code ?? 1)));
}

/** A bar over a backfill's slices, on standard error. */
function backfillBar(): { update: (status: BackfillStatus) => void; stop: () => void } {
  const bar = new SingleBar(
    { stream: process.stderr, format: "backfill [{bar}] {value}/{total} slices | {events} events | {rate} events/s | {left}", hideCursor: true },
    Presets.shades_classic,
  );
  let started = false;
  return {
    update(status) {
      const values = {
        events: status.eventsArchived,
        rate: status.eventsPerSecond,
        left: status.finished ? "finished" : status.secondsLeft !== undefined ? `${formatAge(status.secondsLeft * 1000)} left` : "",
      };
      if (!started) bar.start(status.slices.total, status.slices.done, values);
      else bar.update(status.slices.done, values);
      started = true;
    },
    stop: () => started && bar.stop(),
  };
}

/** While workers run: the latest backfill's bar, refreshed from its status every few seconds. */
function startBar(clients: BackfillClients): { stop: () => Promise<void> } | undefined {
  if (!process.stderr.isTTY) return undefined;
  const bar = backfillBar();
  const refresh = async (): Promise<void> => {
    const status = await readBackfillStatus(clients.store, Date.now()).catch(() => null);
    if (status) bar.update(status);
  };
  let pending = refresh();
  const timer = setInterval(() => {
    pending = pending.then(refresh);
  }, 2000);
  return {
    stop: async () => {
      clearInterval(timer);
      await pending.then(refresh);
      bar.stop();
    },
  };
}

/** `status --watch`: the bar until nothing waits or runs. */
async function watch(clients: BackfillClients, id?: string): Promise<void> {
  const bar = backfillBar();
  for (;;) {
    const status = await readBackfillStatus(clients.store, Date.now(), id);
    if (!status) break;
    bar.update(status);
    if (status.finished) break;
    await new Promise((resolve) => setTimeout(resolve, 5000));
  }
  bar.stop();
}
