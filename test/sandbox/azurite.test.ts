import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import type { AccessToken, TokenCredential } from "@azure/core-auth";
import { ManagedIdentityCredential } from "@azure/identity";
import { BlobServiceClient, type ContainerClient, RestError } from "@azure/storage-blob";
import { QueueServiceClient } from "@azure/storage-queue";
import ts from "typescript";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DEVSTORE_KEY, devstoreConnectionString, startAzurite, type AzuriteBlob, type AzuriteService } from "../../sandbox/azurite";
import { startIdentityEndpoint, type IdentityEndpoint } from "../../sandbox/identityEndpoint";
import { ensureLocalTls, type LocalTls } from "../../sandbox/tls";
import { AUDIENCE, issueToken } from "../../sandbox/tokens";
import { queueRoundTrip } from "../support/queues";

const HAS_PROC = existsSync("/proc/self/stat");
let tls: LocalTls;
let azurite: AzuriteBlob;
let queueService: AzuriteService;
let identity: IdentityEndpoint;

beforeAll(async () => {
  tls = await ensureLocalTls();
  // One identity endpoint for the file, announced before any credential asks for a token.
  identity = await startIdentityEndpoint();
  process.env.IDENTITY_ENDPOINT = identity.endpoint;
  process.env.IDENTITY_HEADER = identity.header;
  [azurite, queueService] = await Promise.all([
    startAzurite({ tls: { certPath: tls.caCertPath, keyPath: tls.keyPath } }),
    startAzurite({ service: "queue", tls: { certPath: tls.caCertPath, keyPath: tls.keyPath } }),
  ]);
});

afterAll(async () => {
  await azurite?.close();
  await queueService?.close();
  await identity?.close();
  delete process.env.IDENTITY_ENDPOINT;
  delete process.env.IDENTITY_HEADER;
});

async function statusOf(promise: Promise<unknown>): Promise<{ status?: number; code?: string }> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof RestError) return { status: error.statusCode, code: error.code };
    throw error;
  }
  return {};
}

/** Create, upload, download, conditional writes and a lease: what the exporter relies on. */
async function exerciseContainer(container: ContainerClient): Promise<void> {
  await container.create();
  expect(await statusOf(container.create())).toMatchObject({ status: 409, code: "ContainerAlreadyExists" });

  const blob = container.getBlockBlobClient("_state/cursor.json");
  const first = await blob.upload('{"v":1}', 7, { conditions: { ifNoneMatch: "*" } });
  expect(first.etag).toBeTruthy();
  expect((await blob.downloadToBuffer()).toString("utf8")).toBe('{"v":1}');

  // A second "first write" loses: 409 BlobAlreadyExists, as in Azure.
  expect(await statusOf(blob.upload('{"v":2}', 7, { conditions: { ifNoneMatch: "*" } }))).toMatchObject({
    status: 409,
    code: "BlobAlreadyExists",
  });
  // An update with the current ETag wins, the stale ETag then loses with 412.
  const second = await blob.upload('{"v":3}', 7, { conditions: { ifMatch: first.etag } });
  expect(await statusOf(blob.upload('{"v":4}', 7, { conditions: { ifMatch: first.etag } }))).toMatchObject({
    status: 412,
    code: "ConditionNotMet",
  });
  expect((await blob.downloadToBuffer()).toString("utf8")).toBe('{"v":3}');
  expect(second.etag).not.toBe(first.etag);

  // A lease: writes without it are refused, with it accepted.
  const leaseClient = blob.getBlobLeaseClient();
  const lease = await leaseClient.acquireLease(15);
  expect(lease.leaseId).toBeTruthy();
  expect((await statusOf(blob.upload("{}", 2))).status).toBe(412);
  await blob.upload('{"v":5}', 7, { conditions: { leaseId: leaseClient.leaseId } });
  await leaseClient.releaseLease();
  expect((await blob.downloadToBuffer()).toString("utf8")).toBe('{"v":5}');
}

describe("Azurite blob service (child process, HTTPS)", () => {
  it("listens on loopback with a free port and an explicit devstoreaccount1 connection string", () => {
    expect(azurite.accountUrl).toMatch(/^https:\/\/127\.0\.0\.1:\d+\/devstoreaccount1$/);
    expect(azurite.accountUrl).not.toContain(":10000/");
    expect(azurite.connectionString).toContain("AccountName=devstoreaccount1;");
    expect(azurite.connectionString).toContain(`BlobEndpoint=${azurite.accountUrl};`);
    expect(azurite.pid).toBeGreaterThan(0);
  });

  it.skipIf(!HAS_PROC)("runs with telemetry disabled and this process's preloads (the network guard)", () => {
    const cmdline = readFileSync(`/proc/${azurite.pid}/cmdline`, "utf8").split("\0");
    expect(cmdline).toContain("--disableTelemetry");
    expect(cmdline).toContain("--skipApiVersionCheck");
    expect(cmdline).toContain("--inMemoryPersistence");
    expect(cmdline).toContain("basic");
    expect(cmdline.some((arg) => arg.endsWith("netGuard.mjs"))).toBe(true);
  });

  it("works with the real storage SDK by connection string", async () => {
    const service = BlobServiceClient.fromConnectionString(azurite.connectionString);
    await exerciseContainer(service.getContainerClient("by-connection-string"));
  });

  it("works with the real storage SDK and ManagedIdentityCredential (bearer tokens, --oauth basic)", async () => {
    const credential = new ManagedIdentityCredential({ retryOptions: { maxRetries: 0 } });
    const service = new BlobServiceClient(azurite.accountUrl, credential);
    await exerciseContainer(service.getContainerClient("by-managed-identity"));
    expect(identity.requests().map((r) => r.resource)).toContain(AUDIENCE.storage);
  });

  it("refuses a bearer token issued for another audience", async () => {
    const service = new BlobServiceClient(azurite.accountUrl, wrongAudience, { retryOptions: { maxTries: 1 } });
    const result = await statusOf(service.getContainerClient("wrong-audience").create());
    expect(result).toMatchObject({ status: 403, code: "AuthenticationFailed" });
  });

  it("close() waits for the child to exit", async () => {
    const extra = await startAzurite({ tls: { certPath: tls.caCertPath, keyPath: tls.keyPath }, oauth: false });
    expect(isAlive(extra.pid)).toBe(true);
    await extra.close();
    expect(isAlive(extra.pid)).toBe(false);
    await extra.close(); // idempotent
  });

  it("dies with its parent, even when the parent is SIGKILLed", async () => {
    // A plain Node parent that starts Azurite through this same module (transpiled on the fly)
    // and then just waits; the test kills it with SIGKILL and watches the Azurite child go.
    const dir = mkdtempSync(join(tmpdir(), "dbx-audit-azurite-parent-"));
    try {
      const source = readFileSync(resolve(__dirname, "../../sandbox/azurite.ts"), "utf8");
      const js = ts.transpileModule(source, { compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022 } });
      writeFileSync(join(dir, "azurite.cjs"), js.outputText);
      writeFileSync(
        join(dir, "parent.cjs"),
        [
          "const { startAzurite } = require('./azurite.cjs');",
          `startAzurite({ tls: { certPath: ${JSON.stringify(tls.caCertPath)}, keyPath: ${JSON.stringify(tls.keyPath)} } })`,
          "  .then((a) => { console.log(JSON.stringify({ pid: a.pid })); setInterval(() => {}, 1000); })",
          "  .catch((e) => { console.error(e); process.exit(1); });",
        ].join("\n"),
      );
      const guard = resolve(__dirname, "../support/netGuard.mjs");
      const parent = spawn(process.execPath, ["--import", guard, join(dir, "parent.cjs")], {
        env: { ...process.env, NODE_PATH: resolve(__dirname, "../../node_modules") },
        stdio: ["ignore", "pipe", "pipe"],
      });
      let stderr = "";
      parent.stderr.on("data", (c: Buffer) => (stderr += c.toString()));
      const childPid = await new Promise<number>((resolvePid, reject) => {
        let out = "";
        parent.stdout.on("data", (c: Buffer) => {
          out += c.toString();
          const line = /\{"pid":(\d+)\}/.exec(out);
          if (line?.[1]) resolvePid(Number(line[1]));
        });
        parent.once("exit", (code) => reject(new Error(`parent exited early (${code}): ${stderr}`)));
      });
      expect(isAlive(childPid)).toBe(true);
      const parentExit = new Promise((r) => parent.once("exit", r));
      parent.kill("SIGKILL");
      await parentExit;
      await waitUntil(() => !isAlive(childPid), 15_000);
      expect(isAlive(childPid)).toBe(false);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("Azurite queue service (child process, HTTPS)", () => {
  it("listens on loopback with a free port and a connection string naming its QueueEndpoint only", () => {
    expect(queueService.service).toBe("queue");
    expect(queueService.accountUrl).toMatch(/^https:\/\/127\.0\.0\.1:\d+\/devstoreaccount1$/);
    expect(queueService.accountUrl).not.toContain(":10001/");
    expect(queueService.accountUrl).not.toBe(azurite.accountUrl);
    expect(queueService.connectionString).toBe(
      `DefaultEndpointsProtocol=https;AccountName=devstoreaccount1;AccountKey=${DEVSTORE_KEY};QueueEndpoint=${queueService.accountUrl};`,
    );
    expect(queueService.pid).toBeGreaterThan(0);
    expect(queueService.pid).not.toBe(azurite.pid);
  });

  it.skipIf(!HAS_PROC)("runs Azurite's queue entry with the blob service's flags and preloads", () => {
    const cmdline = readFileSync(`/proc/${queueService.pid}/cmdline`, "utf8").split("\0");
    expect(cmdline.some((arg) => arg.replaceAll("\\", "/").endsWith("azurite/dist/src/queue/main.js"))).toBe(true);
    expect(cmdline.join(" ")).toContain("--queueHost 127.0.0.1 --queuePort 0");
    expect(cmdline.join(" ")).toContain(`--cert ${tls.caCertPath} --key ${tls.keyPath} --oauth basic`);
    for (const flag of ["--inMemoryPersistence", "--disableTelemetry", "--skipApiVersionCheck", "--silent"]) expect(cmdline).toContain(flag);
    expect(cmdline.some((arg) => arg.endsWith("netGuard.mjs"))).toBe(true);
  });

  it("works with the real queue SDK by connection string", async () => {
    await queueRoundTrip(QueueServiceClient.fromConnectionString(queueService.connectionString), "by-connection-string");
  });

  it("works with the real queue SDK and ManagedIdentityCredential (bearer tokens, --oauth basic)", async () => {
    const credential = new ManagedIdentityCredential({ retryOptions: { maxRetries: 0 } });
    await queueRoundTrip(new QueueServiceClient(queueService.accountUrl, credential), "by-managed-identity");
    expect(identity.requests().map((r) => r.resource)).toContain(AUDIENCE.storage);
  });

  it("refuses a bearer token issued for another audience", async () => {
    const service = new QueueServiceClient(queueService.accountUrl, wrongAudience, { retryOptions: { maxTries: 1 } });
    const result = await statusOf(service.getQueueClient("wrong-audience").create());
    expect(result).toMatchObject({ status: 403, code: "AuthenticationFailed" });
  });

  it("close() waits for the child to exit", async () => {
    const extra = await startAzurite({ service: "queue", tls: { certPath: tls.caCertPath, keyPath: tls.keyPath }, oauth: false });
    expect(isAlive(extra.pid)).toBe(true);
    await extra.close();
    expect(isAlive(extra.pid)).toBe(false);
    await extra.close(); // idempotent
  });
});

describe("devstoreConnectionString", () => {
  it("names every endpoint it is given, so the blob and the queue SDKs each find their own", async () => {
    const both = devstoreConnectionString({ blob: azurite.accountUrl, queue: queueService.accountUrl });
    expect(both).toBe(
      `DefaultEndpointsProtocol=https;AccountName=devstoreaccount1;AccountKey=${DEVSTORE_KEY};BlobEndpoint=${azurite.accountUrl};QueueEndpoint=${queueService.accountUrl};`,
    );
    expect(devstoreConnectionString({ blob: azurite.accountUrl })).toBe(azurite.connectionString);
    const container = BlobServiceClient.fromConnectionString(both).getContainerClient("both-endpoints");
    expect(container.url).toBe(`${azurite.accountUrl}/both-endpoints`);
    await container.create();
    const queue = QueueServiceClient.fromConnectionString(both).getQueueClient("both-endpoints");
    expect(queue.url).toBe(`${queueService.accountUrl}/both-endpoints`);
    await queue.create();
  });
});

/** Alive = the pid exists and is not a zombie waiting for a reaper. */
function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  if (!HAS_PROC) return true;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
  } catch {
    return false;
  }
}

async function waitUntil(condition: () => boolean, limitMs: number): Promise<void> {
  const deadline = Date.now() + limitMs;
  while (!condition() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
}

/** A valid token for Azure Monitor, not for storage: Azurite must refuse it. */
const wrongAudience: TokenCredential = {
  getToken: (): Promise<AccessToken> => {
    const { token, expiresOn } = issueToken(AUDIENCE.monitor, 600);
    return Promise.resolve({ token, expiresOnTimestamp: expiresOn * 1000 });
  },
};
