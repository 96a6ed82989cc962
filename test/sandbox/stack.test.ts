import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ManagedIdentityCredential } from "@azure/identity";
import { BlobServiceClient } from "@azure/storage-blob";
import { QueueServiceClient } from "@azure/storage-queue";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startSandboxStack, type SandboxStack } from "../../sandbox/stack";
import { AUDIENCE } from "../../sandbox/tokens";
import { queueRoundTrip } from "../support/queues";

/** startSandboxStack with events files, in process: the stack object, the regions' settings, closing. */
let dir: string;
const file = (name: string, lines: string[]): string => {
  const path = join(dir, name);
  writeFileSync(path, lines.join("\n") + "\n");
  return path;
};
const row = (event_time: string, event_id: string) => JSON.stringify({ event_time, event_id, service_name: "jobs", action_name: "runNow", workspace_id: "1" });

/** Listening TCP servers in this process (the warehouses, the Logs Ingestion and identity stand-ins are among them). */
const listeningServers = () => process.getActiveResourcesInfo().filter((kind) => kind === "TCPServerWrap").length;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "dbx-audit-stack-"));
});
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe("startSandboxStack", () => {
  it("keeps eventsFile working as one warehouse, configured by the single-source settings alone (the backfill queue too)", async () => {
    const stack = await startSandboxStack({ eventsFile: file("one.jsonl", [row("2025-05-05T05:05:05Z", "one-a")]) });
    try {
      expect(stack.warehouses).toHaveLength(1);
      expect(stack.warehouse).toBe(stack.warehouses[0]);
      expect(await stack.warehouse.rowCount()).toBe(1);
      const { databricks, databricksSources, env } = stack.contract;
      expect(databricksSources).toEqual([{ name: "region1", ...databricks }]);
      expect(env.DATABRICKS_SOURCES).toBeUndefined();
      expect(env).toMatchObject({ DATABRICKS_SERVER_HOSTNAME: databricks.serverHostname, DATABRICKS_HTTP_PATH: databricks.httpPath });
      expect(env.EXPORT_START).toBe("2025-05-05T05:00:00.000Z");
      await expectBackfillQueue(stack);
    } finally {
      await stack.close();
    }
  });

  it("starts one warehouse per file, eventsFile first, and closing stops every one", async () => {
    const stack = await startSandboxStack({
      eventsFile: file("a.jsonl", [row("2025-05-05T05:05:05Z", "a-1")]),
      eventsFiles: [file("b.jsonl", [row("2025-05-06T00:00:00Z", "b-1"), row("2025-05-06T00:00:01Z", "b-2")])],
      synthetic: 10,
    });
    const admins = stack.contract.databricksSources.map((s) => s.adminUrl);
    const { queueUrl } = stack.contract.storage;
    try {
      expect(stack.warehouses).toHaveLength(2);
      expect(stack.warehouse).toBe(stack.warehouses[0]);
      expect(await Promise.all(stack.warehouses.map((w) => w.rowCount()))).toEqual([1 + 10, 2]);
      expect(stack.contract.databricksSources.map((s) => [s.name, s.serverHostname])).toEqual(
        stack.warehouses.map((w, i) => [`region${i + 1}`, w.serverHostname]),
      );
    } finally {
      await stack.close();
    }
    for (const admin of admins) await expect(fetch(`${admin}/events`)).rejects.toThrow();
    await expect(fetch(queueUrl)).rejects.toThrow();
  });

  it("stops everything it started when a file cannot be loaded, and names the file and line", async () => {
    const before = listeningServers();
    const bad = file("bad.jsonl", [row("2025-05-05T05:05:05Z", "ok"), "[1, 2]"]);
    await expect(startSandboxStack({ eventsFiles: [file("good.jsonl", [row("2025-05-05T05:05:05Z", "good")]), bad] })).rejects.toThrow(
      `${bad}:2: expected one JSON object per line`,
    );
    expect(listeningServers()).toBe(before);
  });
});

/**
 * The backfill's queue from the contract alone, as the Functions host and the CLI reach it with
 * the sandbox's env: by managed identity (IDENTITY_ENDPOINT, IDENTITY_HEADER and the local CA
 * from env; vitest already set NODE_EXTRA_CA_CERTS to the same CA) and by AzureWebJobsStorage.
 */
async function expectBackfillQueue(stack: SandboxStack): Promise<void> {
  const { storage, env } = stack.contract;
  expect(storage.queueUrl).toMatch(/^https:\/\/127\.0\.0\.1:\d+\/devstoreaccount1$/);
  expect(storage.queueUrl).toBe(stack.queue.accountUrl);
  expect(storage.connectionString).toContain(`BlobEndpoint=${stack.blob.accountUrl};`);
  expect(storage.connectionString).toContain(`QueueEndpoint=${storage.queueUrl};`);
  expect(env).toMatchObject({
    AzureWebJobsStorage: storage.connectionString,
    EXPORT_STORAGE_CONNECTION_STRING: storage.connectionString,
    BACKFILL_QUEUE: "dbx-audit-backfill",
  });
  // The blob users of the connection string still find the archive container.
  expect(await BlobServiceClient.fromConnectionString(storage.connectionString).getContainerClient(storage.container).exists()).toBe(true);

  expect(env.NODE_EXTRA_CA_CERTS).toBe(process.env.NODE_EXTRA_CA_CERTS);
  process.env.IDENTITY_ENDPOINT = env.IDENTITY_ENDPOINT;
  process.env.IDENTITY_HEADER = env.IDENTITY_HEADER;
  try {
    const credential = new ManagedIdentityCredential({ retryOptions: { maxRetries: 0 } });
    await queueRoundTrip(new QueueServiceClient(storage.queueUrl, credential), env.BACKFILL_QUEUE!);
    expect(stack.identity.requests().map((r) => r.resource)).toContain(AUDIENCE.storage);
  } finally {
    delete process.env.IDENTITY_ENDPOINT;
    delete process.env.IDENTITY_HEADER;
  }
  await queueRoundTrip(QueueServiceClient.fromConnectionString(env.AzureWebJobsStorage!), env.BACKFILL_QUEUE!);
}
