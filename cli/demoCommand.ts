import { spawn } from "node:child_process";
import { join } from "node:path";
import type { Command } from "commander";
import type { ExportState } from "../shared/export/state";
import { BlobServiceClient } from "@azure/storage-blob";
import { BlobExportStore } from "../shared/blobStore";
import { fail } from "./exit";
import { DEMO_ATTACKS, demoAttackRows } from "./demoAttacks";
import type { AlertLine } from "../shared/detections/alerts";

/**
 * The README's one command: start the sandbox with synthetic activity, run one export cycle
 * exactly as `dbx-audit run` does (a separate process with the sandbox's app settings), and
 * show what landed where.
 */
export function registerDemoCommand(program: Command): void {
  program
    .command("demo")
    .description(
      "Start the sandbox with synthetic audit rows and a few attacks, run one export cycle, the detections, the quick health check and a reconciliation, and show what each produced.",
    )
    .option("--synthetic <n>", "synthetic audit rows to load", (v) => Number(v), 5000)
    .action(async (flags: { synthetic: number }) => {
      try {
        await demo(flags.synthetic);
      } catch (error) {
        fail(error);
      }
    });
}

async function demo(rows: number): Promise<void> {
  const say = (text = ""): boolean => process.stdout.write(`${text}\n`);
  const { startSandboxStack } = await import("../sandbox/stack.js");
  say(`Starting the sandbox: SQL warehouse stand-in with ${rows} synthetic audit rows, Azurite, Logs Ingestion and managed identity stand-ins...`);
  const stack = await startSandboxStack({ synthetic: rows });
  try {
    const { contract } = stack;
    const attacks = demoAttackRows(Date.now());
    await stack.warehouse.appendRows(attacks.rows);
    say(`  warehouse  https://${contract.databricks.serverHostname}${contract.databricks.httpPath}`);
    say(`  blob       ${contract.storage.container} container in Azurite`);
    say(`  logs       ${contract.logsIngestion.endpoint} (rule ${contract.logsIngestion.ruleId}, stream ${contract.logsIngestion.streamName})`);
    say();
    say("Running one export cycle: dbx-audit run (the same code as the hourly timer function)");
    const env = { ...process.env, ...contract.env };
    const code = (await runChild(["run"], env)).code;
    if (code !== 0) throw new Error(`dbx-audit run exited with code ${code}.`);

    const container = BlobServiceClient.fromConnectionString(contract.storage.connectionString).getContainerClient(contract.storage.container);
    const store = new BlobExportStore(container);
    const names = (await store.listNames("audit/")).sort();
    let archived = 0;
    let sample: string | undefined;
    const perWorkspace = new Map<string, number>();
    for (const name of names) {
      const lines = await store.readArchive(name);
      archived += lines.length;
      sample ??= lines[0];
      const workspace = /workspace=([^/]+)/.exec(name)?.[1] ?? "?";
      perWorkspace.set(workspace, (perWorkspace.get(workspace) ?? 0) + lines.length);
    }
    const received = (await (await fetch(contract.logsIngestion.receivedUrl)).text()).split("\n").filter(Boolean).length;
    const state = await store.readState();

    say();
    say(`Blob Storage: ${archived} events in ${names.length} blobs (JSONL, gzip), partitioned by workspace/date/hour:`);
    for (const name of names.slice(0, 5)) say(`  ${contract.storage.container}/${name}`);
    if (names.length > 5) say(`  ... and ${names.length - 5} more`);
    say(`  events per workspace: ${[...perWorkspace].map(([w, n]) => `${w === "0" ? "account-level" : w}=${n}`).join(", ")}`);
    say(`Log Analytics: ${received} records accepted on stream ${contract.logsIngestion.streamName} (DatabricksAudit_CL columns)`);
    say(`State: cursor at ${cursorOf(state?.state)} (${contract.storage.container}/_state/export.json); a second run exports only what is new.`);
    say(`Rows in the warehouse: ${await stack.warehouse.rowCount()} (the export reads the default service list up to now minus the settle delay).`);
    if (sample) {
      say();
      say("A sample archived event:");
      say(JSON.stringify(JSON.parse(sample), null, 2));
    }
    await showDetections(say, env, attacks.hourStartMs, attacks.rows.length);
    // The reconciliation first: it keeps its result in Blob, so the quick check then shows it.
    await showReconciliation(say, env, cursorOf(state?.state));
    await showQuickCheck(say, env);
  } finally {
    await stack.close();
  }
}

type Say = (text?: string) => boolean;

/** The detections over the hour that holds the attacks (a complete hour, as the timer evaluates), as `dbx-audit detect` finds them. */
async function showDetections(say: Say, env: NodeJS.ProcessEnv, hourStartMs: number, attackRows: number): Promise<void> {
  const start = new Date(hourStartMs).toISOString();
  const end = new Date(hourStartMs + 3_600_000).toISOString();
  say();
  say(`Running the detections: dbx-audit detect --start ${start} --end ${end} (${attackRows} attack rows were added to that hour)`);
  const result = await runChild(["detect", "--start", start, "--end", end], env, { capture: true });
  if (result.code !== 0) throw new Error(`dbx-audit detect exited with code ${result.code}:\n${result.stderr}`);
  const alerts = result.stdout
    .split("\n")
    .filter(Boolean)
    .map((line) => JSON.parse(line) as AlertLine);
  const summary = result.stderr.trim().split("\n").at(-1) ?? "";
  say(`  ${summary}`);
  const ours = DEMO_ATTACKS.map((attack) => ({
    attack,
    alert: alerts.find((a) => a.detection === attack.detection && a.principals.includes(attack.principal)),
  }));
  for (const { attack, alert } of ours) {
    if (!alert) throw new Error(`The ${attack.detection} detection raised no alert for the demo's attack (${attack.story} by ${attack.principal}).`);
    say();
    say(`  ALERT ${alert.detection} [${alert.severity}, ${alert.tactic} ${alert.technique}] (attack: ${attack.story})`);
    say(
      `    ${alert.measure_name} = ${alert.value} (condition ${alert.condition}); ${alert.count} event(s) ${alert.first_event_time} .. ${alert.last_event_time}`,
    );
    say(`    principal ${alert.principals.join(", ") || "-"}; IP ${alert.source_ips.join(", ") || "-"}; workspace ${alert.workspaces.join(", ") || "-"}`);
    say(`    actions ${alert.actions.join(", ")}${contextText(alert.context)}`);
  }
  const others = alerts.length - ours.length;
  if (others > 0)
    say(
      `  ... and ${others} alert(s) the random synthetic activity raised (${[...new Set(alerts.filter((a) => !ours.some((o) => o.alert === a)).map((a) => a.detection))].join(", ")})`,
    );
}

function contextText(context: Record<string, string[]>): string {
  const parts = Object.entries(context)
    .filter(([, values]) => values.length > 0)
    .map(([name, values]) => `${name}: ${values.slice(0, 4).join(", ")}${values.length > 4 ? ", ..." : ""}`);
  return parts.length > 0 ? `; ${parts.join("; ")}` : "";
}

/** The quick health check reads only Blob (state, lag, detections), as after a deployment. */
async function showQuickCheck(say: Say, env: NodeJS.ProcessEnv): Promise<void> {
  say();
  say("Running the quick health check: dbx-audit check --quick");
  const { code } = await runChild(["check", "--quick"], env);
  // 1 is a FAIL; a WARN (e.g. no reconciliation has run yet) exits 0 and the table shows it.
  if (code !== 0) throw new Error(`dbx-audit check --quick exited with code ${code}.`);
}

/** The archive and Log Analytics compared over every synthetic row's hour up to where the export stopped. */
async function showReconciliation(say: Say, env: NodeJS.ProcessEnv, cursorIso: string): Promise<void> {
  if (Number.isNaN(Date.parse(cursorIso))) throw new Error("The export cycle left no cursor in its state: nothing to reconcile.");
  const since = new Date(Math.floor((Date.parse(cursorIso) - 25 * 3_600_000) / 3_600_000) * 3_600_000).toISOString();
  say();
  say(`Running a reconciliation: dbx-audit reconcile --since ${since} --until ${cursorIso}`);
  const { code } = await runChild(["reconcile", "--since", since, "--until", cursorIso], env);
  if (code === 4) throw new Error("dbx-audit reconcile found differences between the Blob archive and Log Analytics (exit code 4).");
  if (code !== 0) throw new Error(`dbx-audit reconcile exited with code ${code}.`);
  say("  The Blob archive and Log Analytics agree.");
}

interface ChildResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the CLI as a separate process, as an operator would; `capture` keeps its output instead of showing it. */
function runChild(args: string[], env: NodeJS.ProcessEnv, options: { capture?: boolean } = {}): Promise<ChildResult> {
  const launcher = join(__dirname, "..", "..", "bin", "dbx-audit.js");
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [launcher, ...args], {
      env,
      stdio: ["ignore", options.capture ? "pipe" : "inherit", options.capture ? "pipe" : "inherit"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout?.on("data", (chunk: Buffer) => (stdout += chunk.toString("utf8")));
    child.stderr?.on("data", (chunk: Buffer) => (stderr += chunk.toString("utf8")));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code: code ?? 1, stdout, stderr }));
  });
}

/** Where the archive's cursor stands (the first source's, as the demo runs one). */
function cursorOf(state: ExportState | undefined): string {
  const source = state ? Object.values(state.sources)[0] : undefined;
  return source ? new Date(Math.floor(source.cursor.timeUs / 1000)).toISOString() : "?";
}
