import { spawn, type ChildProcess } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DBSQLClient } from "@databricks/sql";
import type { SandboxContract } from "../../sandbox/stack";

/** `dbx-audit sandbox` as a user (or an acceptance test) drives it: the JSON line, the admin URLs, SIGTERM. */
const launcher = join(__dirname, "..", "..", "bin", "dbx-audit.js");
let sandbox: ChildProcess;
let contract: SandboxContract;

beforeAll(async () => {
  // Without NODE_EXTRA_CA_CERTS pointing at the sandbox CA: the launcher must cope by itself.
  const env = { ...process.env, NODE_EXTRA_CA_CERTS: "" };
  sandbox = spawn(process.execPath, [launcher, "sandbox", "--synthetic", "1000"], { env, stdio: ["ignore", "pipe", "inherit"] });
  const line = await new Promise<string>((resolve, reject) => {
    sandbox.once("exit", (code) => reject(new Error(`sandbox exited with ${code}`)));
    createInterface({ input: sandbox.stdout! }).once("line", resolve);
  });
  contract = JSON.parse(line) as SandboxContract;
}, 60_000);

afterAll(() => {
  if (sandbox.exitCode === null) sandbox.kill("SIGKILL");
});

describe("dbx-audit sandbox", () => {
  it("prints one JSON line with every key of the contract", () => {
    expect(Object.keys(contract.databricks).sort()).toEqual(["adminUrl", "caCertPath", "cloudFetch", "httpPath", "noGrantToken", "serverHostname", "token"]);
    expect(contract.databricks.cloudFetch).toBe(true);
    expect(contract.databricks.serverHostname).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(contract.databricks.adminUrl).toMatch(/^https:\/\/127\.0\.0\.1:\d+\/admin$/);
    expect(Object.keys(contract.storage).sort()).toEqual(["connectionString", "container"]);
    expect(Object.keys(contract.logsIngestion).sort()).toEqual(["endpoint", "receivedUrl", "ruleId", "streamName"]);
    for (const name of [
      "DATABRICKS_SERVER_HOSTNAME",
      "DATABRICKS_HTTP_PATH",
      "IDENTITY_ENDPOINT",
      "IDENTITY_HEADER",
      "EXPORT_STORAGE_CONNECTION_STRING",
      "LOGS_INGESTION_ENDPOINT",
      "LOGS_INGESTION_RULE_ID",
      "LOGS_INGESTION_STREAM",
      "NODE_EXTRA_CA_CERTS",
    ]) {
      expect(contract.env[name], name).toBeTruthy();
    }
    expect(readFileSync(contract.databricks.caCertPath, "utf8")).toContain("BEGIN CERTIFICATE");
  });

  it("serves the synthetic rows to the real driver and appends rows through POST {adminUrl}/events", async () => {
    const client = new DBSQLClient({ logger: { log: () => undefined } });
    const [host, port] = contract.databricks.serverHostname.split(":");
    await client.connect({ host: host!, port: Number(port), path: contract.databricks.httpPath, token: contract.databricks.token, telemetryEnabled: false });
    const session = await client.openSession();
    const count = async () => {
      const op = await session.executeStatement("SELECT count(*) AS n FROM system.access.audit");
      const [row] = (await op.fetchAll()) as { n: number }[];
      await op.close();
      return Number(row!.n);
    };
    expect(await count()).toBe(1000);
    const rows = [
      { event_time: "2026-01-01T00:00:00.000001Z", event_id: "posted-1", service_name: "accounts", action_name: "login", workspace_id: "0" },
      { event_time: "2026-01-01T00:00:00.000002Z", event_id: "posted-2", service_name: "jobs", action_name: "runNow", workspace_id: "123" },
    ];
    const response = await fetch(`${contract.databricks.adminUrl}/events`, { method: "POST", body: rows.map((r) => JSON.stringify(r)).join("\n") });
    expect(response.status).toBe(200);
    expect(await count()).toBe(1002);
    await session.close();
    await client.close();
  });

  it("lists accepted Log Analytics records at receivedUrl (JSONL)", async () => {
    const response = await fetch(contract.logsIngestion.receivedUrl);
    expect(response.status).toBe(200);
    expect(await response.text()).toBe("");
  });

  it("stops everything on SIGTERM and exits 0", async () => {
    const exited = new Promise<number | null>((resolve) => sandbox.once("exit", (code) => resolve(code)));
    sandbox.kill("SIGTERM");
    expect(await exited).toBe(0);
    await expect(fetch(contract.logsIngestion.receivedUrl)).rejects.toThrow();
    const blobPort = /BlobEndpoint=https:\/\/127\.0\.0\.1:(\d+)/.exec(contract.storage.connectionString)![1];
    await expect(fetch(`https://127.0.0.1:${blobPort}/`)).rejects.toThrow();
  });
});
