import { spawn } from "node:child_process";
import { join } from "node:path";
import type { Command } from "commander";
import type { ExportState } from "../shared/export/state";
import { BlobServiceClient } from "@azure/storage-blob";
import { BlobExportStore } from "../shared/blobStore";
import { fail } from "./exit";

/**
 * The README's one command: start the sandbox with synthetic activity, run one export cycle
 * exactly as `dbx-audit run` does (a separate process with the sandbox's app settings), and
 * show what landed where.
 */
export function registerDemoCommand(program: Command): void {
  program
    .command("demo")
    .description("Start the sandbox with synthetic audit rows, run one export cycle, and show what landed in Blob Storage and Log Analytics.")
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
    say(`  warehouse  https://${contract.databricks.serverHostname}${contract.databricks.httpPath}`);
    say(`  blob       ${contract.storage.container} container in Azurite`);
    say(`  logs       ${contract.logsIngestion.endpoint} (rule ${contract.logsIngestion.ruleId}, stream ${contract.logsIngestion.streamName})`);
    say();
    say("Running one export cycle: dbx-audit run (the same code as the hourly timer function)");
    const code = await runChild(["run"], { ...process.env, ...contract.env });
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
  } finally {
    await stack.close();
  }
}

function runChild(args: string[], env: NodeJS.ProcessEnv): Promise<number> {
  const launcher = join(__dirname, "..", "..", "bin", "dbx-audit.js");
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [launcher, ...args], { env, stdio: ["ignore", "inherit", "inherit"] });
    child.on("error", reject);
    child.on("exit", (code) => resolve(code ?? 1));
  });
}

/** Where the archive's cursor stands (the first source's, as the demo runs one). */
function cursorOf(state: ExportState | undefined): string {
  const source = state ? Object.values(state.sources)[0] : undefined;
  return source ? new Date(Math.floor(source.cursor.timeUs / 1000)).toISOString() : "?";
}
