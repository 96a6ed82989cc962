import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DBSQLClient } from "@databricks/sql";
import type { DatabricksSource, SandboxContract } from "../../sandbox/stack";
import { runCli } from "../support/cli";

/** `dbx-audit sandbox` as a user (or an acceptance test) drives it: the JSON line, the admin URLs, SIGTERM. */
const launcher = join(__dirname, "..", "..", "bin", "dbx-audit.js");
let sandbox: ChildProcess;
let contract: SandboxContract;
let firstLine: string;
let stdout = "";
let dir: string;

const row = (event_time: string, event_id: string, workspace_id = "123") => ({
  event_time,
  event_id,
  service_name: "jobs",
  action_name: "runNow",
  workspace_id,
});
// Region 2 holds the earliest event: EXPORT_START must look at every warehouse, not the first.
const REGION1_ROWS = [row("2025-03-01T10:15:00.000001Z", "r1-a"), row("2025-03-01T11:20:00.000002Z", "r1-b"), row("2025-03-02T00:00:00Z", "r1-c")];
const REGION2_ROWS = [row("2025-02-01T07:30:00.5Z", "r2-a", "456"), row("2025-02-01T08:00:00Z", "r2-b", "456")];
const toJsonl = (rows: object[]) => rows.map((r) => JSON.stringify(r)).join("\n") + "\n";

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "dbx-audit-sandbox-events-"));
  writeFileSync(join(dir, "eu.jsonl"), toJsonl(REGION1_ROWS));
  writeFileSync(join(dir, "us.jsonl"), toJsonl(REGION2_ROWS));
  // Without NODE_EXTRA_CA_CERTS pointing at the sandbox CA: the launcher must cope by itself.
  const env = { ...process.env, NODE_EXTRA_CA_CERTS: "" };
  const args = [launcher, "sandbox", "--synthetic", "1000", "--events", join(dir, "eu.jsonl"), "--events", join(dir, "us.jsonl")];
  sandbox = spawn(process.execPath, args, { env, stdio: ["ignore", "pipe", "inherit"] });
  sandbox.stdout!.on("data", (chunk: Buffer) => (stdout += chunk.toString("utf8")));
  firstLine = await new Promise<string>((resolve, reject) => {
    sandbox.once("exit", (code) => reject(new Error(`sandbox exited with ${code}`)));
    createInterface({ input: sandbox.stdout! }).once("line", resolve);
  });
  contract = JSON.parse(firstLine) as SandboxContract;
}, 60_000);

afterAll(() => {
  if (sandbox.exitCode === null) sandbox.kill("SIGKILL");
  rmSync(dir, { recursive: true, force: true });
});

/** The real driver against one warehouse of the contract, with that entry's token and CA. */
async function query<T>(source: DatabricksSource, sql: string): Promise<T[]> {
  const client = new DBSQLClient({ logger: { log: () => undefined } });
  const [host, port] = source.serverHostname.split(":");
  await client.connect({
    host: host!,
    port: Number(port),
    path: source.httpPath,
    token: source.token,
    customCaCert: readFileSync(source.caCertPath),
    telemetryEnabled: false,
  });
  try {
    const session = await client.openSession();
    const op = await session.executeStatement(sql);
    const rows = (await op.fetchAll()) as T[];
    await op.close();
    await session.close();
    return rows;
  } finally {
    await client.close();
  }
}

const count = async (source: DatabricksSource) => Number((await query<{ n: number }>(source, "SELECT count(*) AS n FROM system.access.audit"))[0]!.n);
const eventIds = async (source: DatabricksSource) =>
  (await query<{ event_id: string }>(source, "SELECT event_id FROM system.access.audit ORDER BY event_id")).map((r) => r.event_id);

describe("dbx-audit sandbox", () => {
  it("prints one JSON line with every key of the contract", () => {
    expect(stdout.startsWith(`${firstLine}\n`)).toBe(true);
    expect(firstLine).not.toContain("\n");
    expect(Object.keys(contract).sort()).toEqual(["databricks", "databricksSources", "env", "logAnalytics", "logsIngestion", "storage"]);
    expect(Object.keys(contract.databricks).sort()).toEqual(["adminUrl", "caCertPath", "cloudFetch", "httpPath", "noGrantToken", "serverHostname", "token"]);
    expect(contract.databricks.cloudFetch).toBe(true);
    expect(contract.databricks.serverHostname).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(contract.databricks.adminUrl).toMatch(/^https:\/\/127\.0\.0\.1:\d+\/admin$/);
    expect(Object.keys(contract.storage).sort()).toEqual(["connectionString", "container", "queueUrl"]);
    // Added for the backfill: Azurite's queue service, in the same connection string as the blob service.
    expect(contract.storage.queueUrl).toMatch(/^https:\/\/127\.0\.0\.1:\d+\/devstoreaccount1$/);
    expect(contract.storage.connectionString).toMatch(/;BlobEndpoint=https:\/\/127\.0\.0\.1:\d+\/devstoreaccount1;/);
    expect(contract.storage.connectionString).toContain(`;QueueEndpoint=${contract.storage.queueUrl};`);
    expect(contract.env.AzureWebJobsStorage).toBe(contract.storage.connectionString);
    expect(contract.env.BACKFILL_QUEUE).toBe("dbx-audit-backfill");
    expect(Object.keys(contract.logsIngestion).sort()).toEqual(["endpoint", "receivedUrl", "ruleId", "streamName"]);
    // Added for reconciliation: the Logs Query API the same stand-in answers.
    expect(contract.logAnalytics.queryEndpoint).toBe(`${contract.logsIngestion.endpoint}/v1`);
    expect(contract.logAnalytics.workspaceId).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
    for (const name of [
      "DATABRICKS_SERVER_HOSTNAME",
      "DATABRICKS_HTTP_PATH",
      "DATABRICKS_SOURCES",
      "IDENTITY_ENDPOINT",
      "IDENTITY_HEADER",
      "EXPORT_STORAGE_CONNECTION_STRING",
      "AzureWebJobsStorage",
      "BACKFILL_QUEUE",
      "LOGS_INGESTION_ENDPOINT",
      "LOGS_INGESTION_RULE_ID",
      "LOGS_INGESTION_STREAM",
      "LOG_ANALYTICS_WORKSPACE_ID",
      "LOG_ANALYTICS_QUERY_ENDPOINT",
      "NODE_EXTRA_CA_CERTS",
    ]) {
      expect(contract.env[name], name).toBeTruthy();
    }
    expect(readFileSync(contract.databricks.caCertPath, "utf8")).toContain("BEGIN CERTIFICATE");
  });

  it("lists one warehouse per --events file, in flag order, each on its own port, path and admin URL", () => {
    const sources = contract.databricksSources;
    expect(sources.map((s) => s.name)).toEqual(["region1", "region2"]);
    for (const source of sources) {
      expect(Object.keys(source).sort()).toEqual(["adminUrl", "caCertPath", "cloudFetch", "httpPath", "name", "noGrantToken", "serverHostname", "token"]);
      expect(source.serverHostname).toMatch(/^127\.0\.0\.1:\d+$/);
      expect(source.adminUrl).toBe(`https://${source.serverHostname}/admin`);
    }
    expect(new Set(sources.map((s) => s.serverHostname)).size).toBe(2);
    expect(new Set(sources.map((s) => s.httpPath)).size).toBe(2);
    const { name, ...first } = sources[0]!;
    expect(name).toBe("region1");
    expect(contract.databricks).toEqual(first);
  });

  it("configures every warehouse in env, the first one also through the single-source settings", () => {
    expect(JSON.parse(contract.env.DATABRICKS_SOURCES!)).toEqual(
      contract.databricksSources.map(({ name, serverHostname, httpPath }) => ({ name, serverHostname, httpPath })),
    );
    expect(contract.env.DATABRICKS_SERVER_HOSTNAME).toBe(contract.databricksSources[0]!.serverHostname);
    expect(contract.env.DATABRICKS_HTTP_PATH).toBe(contract.databricksSources[0]!.httpPath);
    // The earliest event of all (region 2's), floored to its hour.
    expect(contract.env.EXPORT_START).toBe("2025-02-01T07:00:00.000Z");
  });

  it("serves each warehouse's own rows to the real driver (the synthetic ones go to the first)", async () => {
    const [region1, region2] = contract.databricksSources as [DatabricksSource, DatabricksSource];
    expect(await count(region1)).toBe(1000 + REGION1_ROWS.length);
    expect(await eventIds(region2)).toEqual(REGION2_ROWS.map((r) => r.event_id));
  });

  it("appends rows through POST {adminUrl}/events to that warehouse only", async () => {
    const [region1, region2] = contract.databricksSources as [DatabricksSource, DatabricksSource];
    const posted = [row("2026-01-01T00:00:00.000001Z", "posted-1", "0"), row("2026-01-01T00:00:00.000002Z", "posted-2")];
    const response = await fetch(`${region2.adminUrl}/events`, { method: "POST", body: toJsonl(posted) });
    expect(response.status).toBe(200);
    expect(await eventIds(region2)).toEqual([...posted, ...REGION2_ROWS].map((r) => r.event_id).sort());
    expect(await count(region1)).toBe(1000 + REGION1_ROWS.length);
  });

  it("lists accepted Log Analytics records at receivedUrl (JSONL)", async () => {
    const response = await fetch(contract.logsIngestion.receivedUrl);
    expect(response.status).toBe(200);
    expect(await response.text()).toBe("");
  });

  it("runs every region with `dbx-audit run` and its env: an account-level event both regions hold reaches Log Analytics once", async () => {
    const [region1] = contract.databricksSources as [DatabricksSource, DatabricksSource];
    // posted-1 (workspace "0") is already in region 2; region 1 gets the same event.
    const copy = row("2026-01-01T00:00:00.000001Z", "posted-1", "0");
    expect((await fetch(`${region1.adminUrl}/events`, { method: "POST", body: toJsonl([copy]) })).status).toBe(200);
    const run = await runCli(["run", "--until-caught-up", "--json"], { ...process.env, ...contract.env });
    expect(run.code, run.stderr).toBe(0);
    const summaries = run.stdout
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line) as { sources: { name: string; status: string; eventsDelivered: number; duplicatesSkipped: number }[] });
    expect(summaries.at(-1)!.sources.map((s) => [s.name, s.status])).toEqual([
      ["region1", "ok"],
      ["region2", "ok"],
    ]);
    const skipped = summaries.flatMap((s) => s.sources).reduce((n, s) => n + s.duplicatesSkipped, 0);
    expect(skipped).toBe(1);
    const received = (await (await fetch(contract.logsIngestion.receivedUrl)).text())
      .split("\n")
      .filter(Boolean)
      .map((line) => (JSON.parse(line) as { EventId: string }).EventId);
    expect(received.filter((id) => id === "posted-1")).toHaveLength(1);
    expect(new Set(received).size).toBe(received.length);
    for (const id of ["r1-a", "r1-c", "r2-a", "r2-b", "posted-2"]) expect(received).toContain(id);
  }, 120_000);

  it("stops everything on SIGTERM, every warehouse included, and exits 0", async () => {
    const exited = new Promise<number | null>((resolve) => sandbox.once("exit", (code) => resolve(code)));
    sandbox.kill("SIGTERM");
    expect(await exited).toBe(0);
    await expect(fetch(contract.logsIngestion.receivedUrl)).rejects.toThrow();
    const blobPort = /BlobEndpoint=https:\/\/127\.0\.0\.1:(\d+)/.exec(contract.storage.connectionString)![1];
    await expect(fetch(`https://127.0.0.1:${blobPort}/`)).rejects.toThrow();
    await expect(fetch(contract.storage.queueUrl)).rejects.toThrow();
    for (const source of contract.databricksSources) await expect(fetch(`${source.adminUrl}/events`)).rejects.toThrow();
  });
});

describe("dbx-audit sandbox with an events file it cannot load", () => {
  it("exits with an error that names the file and the line, printing no contract", async () => {
    writeFileSync(join(dir, "good.jsonl"), toJsonl(REGION1_ROWS));
    writeFileSync(join(dir, "bad.jsonl"), `${JSON.stringify(REGION2_ROWS[0])}\n{"event_time": oops}\n`);
    const { code, stdout, stderr } = await runCli(["sandbox", "--events", join(dir, "good.jsonl"), "--events", join(dir, "bad.jsonl")], process.env);
    expect(code).not.toBe(0);
    expect(stdout).toBe("");
    expect(stderr).toContain(`${join(dir, "bad.jsonl")}:2: not valid JSON`);
  });
});
