import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { DBSQLClient } from "@databricks/sql";
import type IDBSQLSession from "@databricks/sql/dist/contracts/IDBSQLSession";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startSqlWarehouse, type SqlWarehouse, type WarehouseStats } from "../../sandbox/sqlWarehouse/server";
import type { SandboxContract } from "../../sandbox/stack";
import { ensureLocalTls } from "../../sandbox/tls";
import {
  CLOUD_FETCH_CONCURRENT_DOWNLOADS,
  USE_CLOUD_FETCH,
  Warehouse,
  isExpiredResultLinkError,
  isWarehouseError,
  type WarehouseOptions,
} from "../../shared/databricks";
import { ThreadedWarehouse } from "../../shared/databricksThread";
import type { DatabricksSettings } from "../../shared/config";
import { auditRow, isoMicros } from "../support/auditRows";

// CloudFetch through the real driver (@databricks/sql): the stand-in answers with result links
// to its HTTPS object store, as a real warehouse does for large results.
process.env.DATABRICKS_TELEMETRY_DISABLED = "true";

const TOKEN = `dapi${randomBytes(16).toString("hex")}`;
const NO_GRANT_TOKEN = `dapi${randomBytes(16).toString("hex")}`;
const SYNTHETIC = 12_000;
/** Small files so that a test-sized result spans many of them. */
const FILE_BYTES = 256 * 1024;
const ORDERED = "SELECT *, unix_micros(event_time) AS event_time_us FROM system.access.audit ORDER BY event_time, event_id";

let warehouse: SqlWarehouse;
let port: number;

interface Link {
  fileLink: string;
  expiryTime: { toNumber(): number };
  startRowOffset: { toNumber(): number };
  rowCount: { toNumber(): number };
  bytesNum: { toNumber(): number };
  httpHeaders: Record<string, string>;
}

/** What the driver's Thrift calls carried, seen by wrapping the driver object (the driver itself runs unchanged). */
interface Wire {
  links: Link[];
  lz4Compressed: boolean[];
  resultFormats: number[];
}

interface Connection {
  client: DBSQLClient;
  session: IDBSQLSession;
  wire: Wire;
  close: () => Promise<void>;
}

/**
 * The driver as a client connects, with the project's download concurrency. `askLz4` makes
 * ExecuteStatement say it can decompress LZ4 even with CloudFetch, as the Python, Go and JDBC
 * drivers do (this driver asks only without CloudFetch).
 */
async function connect(options: { askLz4?: boolean } = {}): Promise<Connection> {
  const client = new DBSQLClient({ logger: { log: () => undefined } });
  client.on("error", () => undefined);
  client.getConfig().cloudFetchConcurrentDownloads = CLOUD_FETCH_CONCURRENT_DOWNLOADS;
  const wire: Wire = { links: [], lz4Compressed: [], resultFormats: [] };
  const driver = await client.getDriver();
  const executeStatement = driver.executeStatement.bind(driver);
  const fetchResults = driver.fetchResults.bind(driver);
  const getResultSetMetadata = driver.getResultSetMetadata.bind(driver);
  driver.executeStatement = (request) => {
    if (options.askLz4) request.canDecompressLZ4Result = true;
    return executeStatement(request);
  };
  driver.fetchResults = async (request) => {
    const response = await fetchResults(request);
    wire.links.push(...((response.results?.resultLinks ?? []) as unknown as Link[]));
    return response;
  };
  driver.getResultSetMetadata = async (request) => {
    const response = await getResultSetMetadata(request);
    wire.lz4Compressed.push(response.lz4Compressed === true);
    wire.resultFormats.push(response.resultFormat ?? -1);
    return response;
  };
  await client.connect({ host: "127.0.0.1", port, path: warehouse.httpPath, authType: "access-token", token: TOKEN, telemetryEnabled: false });
  const session = await client.openSession();
  return {
    client,
    session,
    wire,
    close: async () => {
      await session.close().catch(() => undefined);
      await client.close().catch(() => undefined);
    },
  };
}

/** Every row of a statement, chunk by chunk as the export reads (fetchChunk without buffering). */
async function readAll(session: IDBSQLSession, sql: string, options: { useCloudFetch?: boolean; maxRows?: number } = {}): Promise<Record<string, unknown>[]> {
  const maxRows = options.maxRows ?? 5_000;
  const operation = await session.executeStatement(sql, { maxRows, ...(options.useCloudFetch === false ? { useCloudFetch: false } : {}) });
  const rows: Record<string, unknown>[] = [];
  try {
    do rows.push(...((await operation.fetchChunk({ maxRows, disableBuffering: true })) as Record<string, unknown>[]));
    while (await operation.hasMoreRows());
  } finally {
    await operation.close().catch(() => undefined);
  }
  return rows;
}

function delta(before: WarehouseStats): WarehouseStats {
  const now = warehouse.stats();
  return Object.fromEntries(Object.entries(now).map(([key, value]) => [key, value - before[key as keyof WarehouseStats]])) as unknown as WarehouseStats;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The stand-in as the export's settings name it. */
function readerSettings(): DatabricksSettings {
  return { serverHostname: warehouse.serverHostname, host: "127.0.0.1", port, httpPath: warehouse.httpPath, accessToken: TOKEN, scope: "" };
}

/** Rows whose values are easy to get wrong: nulls, non-ASCII, maps, structs, microseconds, ties. */
const EDGE_ROWS = [
  auditRow("2024-05-01T12:00:00.000001Z", {
    event_id: "edge-unicode",
    user_identity: { email: "zoë.ünïcødé@exämple.com", subject_name: "名前 😀" },
    request_params: { clé: "välue", empty: "", emoji: "🚀", quote: 'a"b\\c' },
    response: { status_code: 403, error_message: "Zugriff verweigert – ✗", result: null },
    identity_metadata: { run_by: "ops@example.com", run_as: "svc-principal" },
  }),
  auditRow("2024-05-01T12:00:00.000001Z", {
    event_id: "edge-nulls",
    user_identity: null,
    request_params: null,
    response: null,
    identity_metadata: null,
    source_ip_address: null,
    user_agent: null,
    workspace_id: null,
  }),
  auditRow("2024-05-01T23:59:59.999999Z", { event_id: "edge-late", request_params: {} }),
];

beforeAll(async () => {
  const tls = await ensureLocalTls();
  warehouse = await startSqlWarehouse({ tls, token: TOKEN, noGrantToken: NO_GRANT_TOKEN, cloudFetch: { fileBytes: FILE_BYTES } });
  port = Number(warehouse.serverHostname.split(":")[1]);
  await warehouse.appendSynthetic(SYNTHETIC, { seed: 11, start: new Date("2024-05-01T00:00:00Z"), end: new Date("2024-05-02T00:00:00Z") });
  await warehouse.appendRows(EDGE_ROWS);
});

afterAll(async () => {
  await warehouse?.close();
});

describe("CloudFetch from the warehouse stand-in, through the real driver", () => {
  it("returns the same rows through result links as inline, nested types, nulls, non-ASCII and microseconds included", async () => {
    const { session, wire, close } = await connect();
    try {
      let before = warehouse.stats();
      const viaLinks = await readAll(session, ORDERED);
      const linked = delta(before);
      before = warehouse.stats();
      const inline = await readAll(session, ORDERED, { useCloudFetch: false });
      const inlined = delta(before);

      expect(viaLinks.length).toBe(SYNTHETIC + EDGE_ROWS.length);
      expect(viaLinks).toEqual(inline);
      // The driver really went through links: several files, each downloaded once, in full.
      expect(wire.resultFormats).toEqual([3 /* URL_BASED_SET */, 0 /* ARROW_BASED_SET */]);
      expect(linked.linksIssued).toBeGreaterThanOrEqual(10);
      expect(linked.filesServed).toBe(linked.linksIssued);
      expect(linked.bytesServed).toBe(wire.links.reduce((sum, link) => sum + link.bytesNum.toNumber(), 0));
      expect(linked.lz4FilesServed).toBe(0); // this driver does not ask for LZ4 with CloudFetch
      expect(inlined.linksIssued).toBe(0);
      expect(inlined.filesServed).toBe(0);

      const byId = new Map(viaLinks.map((row) => [row.event_id, row]));
      const unicode = byId.get("edge-unicode")!;
      expect(unicode.user_identity).toEqual({ email: "zoë.ünïcødé@exämple.com", subject_name: "名前 😀" });
      expect(unicode.request_params).toEqual({ clé: "välue", empty: "", emoji: "🚀", quote: 'a"b\\c' });
      expect(unicode.response).toEqual({ status_code: 403, error_message: "Zugriff verweigert – ✗", result: null });
      expect(unicode.event_time).toEqual(new Date("2024-05-01T12:00:00.000Z"));
      expect(isoMicros(Number(unicode.event_time_us))).toBe("2024-05-01T12:00:00.000001Z");
      const nulls = byId.get("edge-nulls")!;
      expect([nulls.user_identity, nulls.request_params, nulls.response, nulls.identity_metadata, nulls.workspace_id]).toEqual([null, null, null, null, null]);
      expect(isoMicros(Number(byId.get("edge-late")!.event_time_us))).toBe("2024-05-01T23:59:59.999999Z");
    } finally {
      await close();
    }
  });

  it("issues links as a real warehouse does: presigned HTTPS on another port, expiry, contiguous row ranges, files of the configured size", async () => {
    const { session, wire, close } = await connect();
    try {
      const started = Date.now();
      const rows = await readAll(session, ORDERED);
      const ttl = warehouse.cloudFetch().linkTtlMs;
      expect(ttl).toBe(15 * 60_000);
      let offset = 0;
      for (const link of wire.links) {
        const url = new URL(link.fileLink);
        expect(url.protocol).toBe("https:");
        expect(url.hostname).toBe("127.0.0.1");
        expect(url.port).not.toBe(String(port));
        expect(url.pathname).toMatch(/^\/results\/[0-9a-f]{32}$/);
        expect(url.searchParams.get("sig")).toMatch(/^[\w-]{43}$/);
        expect(link.expiryTime.toNumber()).toBeGreaterThanOrEqual(started + ttl);
        expect(link.expiryTime.toNumber()).toBeLessThanOrEqual(Date.now() + ttl);
        expect(link.startRowOffset.toNumber()).toBe(offset);
        offset += link.rowCount.toNumber();
        expect(link.httpHeaders["x-ms-encryption-key"]).toMatch(/^[A-Za-z0-9+/]{43}=$/);
      }
      expect(offset).toBe(rows.length);
      expect(new Set(wire.links.map((link) => new URL(link.fileLink).pathname)).size).toBe(wire.links.length);
      // After the first file the stand-in cuts files close to the size asked for.
      const sizes = wire.links.slice(1, -1).map((link) => link.bytesNum.toNumber());
      expect(Math.max(...sizes)).toBeLessThan(FILE_BYTES * 1.1);
      expect(Math.min(...sizes)).toBeGreaterThan(FILE_BYTES * 0.8);
    } finally {
      await close();
    }
  });

  it("compresses the files with LZ4 when the client can decompress it, and inline batches too", async () => {
    const plain = await connect();
    const lz4 = await connect({ askLz4: true });
    try {
      let before = warehouse.stats();
      const expected = await readAll(plain.session, ORDERED);
      const plainBytes = delta(before).bytesServed;
      before = warehouse.stats();
      expect(await readAll(lz4.session, ORDERED)).toEqual(expected);
      const compressed = delta(before);
      expect(compressed.lz4FilesServed).toBe(compressed.filesServed);
      expect(compressed.filesServed).toBeGreaterThanOrEqual(10);
      expect(compressed.bytesServed).toBeLessThan(plainBytes / 2);
      expect(lz4.wire.lz4Compressed).toEqual([true]);
      // Without CloudFetch the driver asks for LZ4 itself: inline batches come compressed.
      expect(await readAll(plain.session, ORDERED, { useCloudFetch: false })).toEqual(expected);
      expect(plain.wire.lz4Compressed).toEqual([false, true]);
    } finally {
      await plain.close();
      await lz4.close();
    }
  });

  it("serves the export's reader inline pages by default, and links when it asks for them", async () => {
    const inline = await Warehouse.connect(readerSettings(), undefined);
    const linked = await Warehouse.connect(readerSettings(), undefined, { cloudFetch: true });
    try {
      expect(USE_CLOUD_FETCH).toBe(false);
      let before = warehouse.stats();
      const expected = await inline.all({ sql: ORDERED, params: {} });
      expect(delta(before)).toMatchObject({ linksIssued: 0, rowsSent: SYNTHETIC + EDGE_ROWS.length });
      before = warehouse.stats();
      expect(await linked.all({ sql: ORDERED, params: {} })).toEqual(expected);
      const links = delta(before);
      expect(links.filesServed).toBeGreaterThanOrEqual(10);
      expect(links.filesServed).toBe(links.linksIssued);
    } finally {
      await inline.close();
      await linked.close();
    }
  });

  it.each([
    ["in the same thread", (options: WarehouseOptions) => Warehouse.connect(readerSettings(), undefined, options)],
    ["on the reader thread", (options: WarehouseOptions) => ThreadedWarehouse.connect(readerSettings(), undefined, options)],
  ] as const)(
    "makes the export's reader (%s) fail on an expired link as isExpiredResultLinkError recognises, and a re-issued query succeeds",
    async (_where, open) => {
      expect(ThreadedWarehouse.available()).toBe(true); // the reader thread runs from the build
      const reader = await open({ cloudFetch: true });
      const count = async (pauseMs: number): Promise<number> => {
        let read = 0;
        for await (const chunk of reader.rows({ sql: ORDERED, params: {} })) {
          read += chunk.length;
          if (pauseMs > 0) await sleep(pauseMs);
        }
        return read;
      };
      try {
        // Small files, so one FetchResults answer carries several links; the reader downloads
        // one at a time, so the later ones wait, and expire while the export is slow to take rows.
        warehouse.setCloudFetch({ linkTtlMs: 1_000, fileBytes: 64 * 1024 });
        const before = warehouse.stats();
        const error = await count(1_500).catch((e: unknown) => e);
        expect(error).toBeInstanceOf(Error);
        expect((error as Error).message).toBe("CloudFetch link has expired");
        expect(isExpiredResultLinkError(error)).toBe(true);
        expect(isWarehouseError(error)).toBe(true);
        const { linksIssued, filesServed, rowsSent } = delta(before);
        expect(filesServed).toBeGreaterThan(0);
        expect(linksIssued).toBeGreaterThan(filesServed);
        expect(rowsSent).toBeLessThan(SYNTHETIC);

        // Recovery: the same query, issued again, gets fresh links.
        warehouse.setCloudFetch({ linkTtlMs: 15 * 60_000, fileBytes: FILE_BYTES });
        expect(await count(0)).toBe(SYNTHETIC + EDGE_ROWS.length);
      } finally {
        warehouse.setCloudFetch({ linkTtlMs: 15 * 60_000, fileBytes: FILE_BYTES });
        await reader.close();
      }
    },
  );

  it("isExpiredResultLinkError matches the driver's two expired-link errors and nothing else", () => {
    expect(isExpiredResultLinkError(new Error("CloudFetch link has expired"))).toBe(true);
    expect(isExpiredResultLinkError(new Error("CloudFetch HTTP error 403 Forbidden"))).toBe(true);
    expect(isExpiredResultLinkError({ message: "CloudFetch link has expired" })).toBe(true);
    expect(isExpiredResultLinkError(new Error("CloudFetch HTTP error 404 Not Found"))).toBe(false);
    expect(isExpiredResultLinkError(new Error("CloudFetch HTTP error 4031"))).toBe(false);
    expect(isExpiredResultLinkError(new Error("request failed: CloudFetch link has expired"))).toBe(false);
    expect(isExpiredResultLinkError(new Error("[INSUFFICIENT_PERMISSIONS] 403"))).toBe(false);
    expect(isExpiredResultLinkError(undefined)).toBe(false);
    expect(isExpiredResultLinkError("CloudFetch link has expired")).toBe(false);
  });

  it("answers 403 once links are expired at the store, which the driver reports and isExpiredResultLinkError recognises", async () => {
    const { session, close } = await connect();
    try {
      const operation = await session.executeStatement(ORDERED, { maxRows: 5_000 });
      const first = await operation.fetchChunk({ maxRows: 5_000, disableBuffering: true });
      expect(first.length).toBeGreaterThan(0);
      const before = warehouse.stats();
      const answer = await fetch(`${warehouse.adminUrl}/cloudfetch`, { method: "POST", body: JSON.stringify({ expireNow: true }) });
      expect(answer.status).toBe(200);
      const error = await (async () => {
        while (await operation.hasMoreRows()) await operation.fetchChunk({ maxRows: 5_000, disableBuffering: true });
      })().catch((e: unknown) => e);
      await operation.close().catch(() => undefined);
      expect((error as Error).message).toMatch(/^CloudFetch HTTP error 403\b/);
      expect(isExpiredResultLinkError(error)).toBe(true);
      expect(delta(before).expiredLinksRefused).toBeGreaterThanOrEqual(1);
    } finally {
      await close();
    }
  });

  it("refuses a link with another query's signature, a guessed path, a link without its headers, and a closed statement's link", async () => {
    const { session, wire, close } = await connect();
    try {
      const a = await session.executeStatement(ORDERED, { maxRows: 5_000 });
      await a.fetchChunk({ maxRows: 5_000, disableBuffering: true });
      const linkA = wire.links.at(-1)!;
      const b = await session.executeStatement(ORDERED, { maxRows: 5_000 });
      await b.fetchChunk({ maxRows: 5_000, disableBuffering: true });
      const linkB = wire.links.at(-1)!;
      await b.close();
      const urlA = new URL(linkA.fileLink);
      const urlB = new URL(linkB.fileLink);
      const get = async (url: string, headers: Record<string, string> = linkA.httpHeaders) => {
        const response = await fetch(url, { headers });
        return { status: response.status, code: response.headers.get("x-ms-error-code"), bytes: (await response.arrayBuffer()).byteLength };
      };
      const before = warehouse.stats();

      expect(await get(linkA.fileLink)).toEqual({ status: 200, code: null, bytes: linkA.bytesNum.toNumber() });
      expect(await get(`${urlA.origin}${urlA.pathname}${urlB.search}`)).toMatchObject({ status: 403, code: "AuthenticationFailed" });
      expect(await get(`${urlA.origin}/results/${randomBytes(16).toString("hex")}${urlA.search}`)).toMatchObject({ status: 403 });
      expect(await get(`${urlA.origin}${urlA.pathname}`)).toMatchObject({ status: 403 });
      expect(await get(linkA.fileLink, {})).toMatchObject({ status: 409, code: "BlobUsesCustomerSpecifiedEncryption" });
      expect(await get(linkB.fileLink, linkB.httpHeaders)).toMatchObject({ status: 404, code: "BlobNotFound" }); // b was closed
      expect(delta(before)).toMatchObject({ linksRefused: 3, filesNotFound: 1, filesServed: 1 });
      await a.close();
    } finally {
      await close();
    }
  });

  it("validates its admin settings", async () => {
    const post = async (body: string) => {
      const response = await fetch(`${warehouse.adminUrl}/cloudfetch`, { method: "POST", body });
      return { status: response.status, body: (await response.json()) as { cloudFetch?: Record<string, unknown>; error?: string } };
    };
    expect(await post(JSON.stringify({ fileBytes: 12 }))).toMatchObject({ status: 400 });
    expect(await post(JSON.stringify({ nope: true }))).toMatchObject({ status: 400 });
    expect(await post(JSON.stringify({ enabled: "yes" }))).toMatchObject({ status: 400 });
    expect(await post("[1]")).toMatchObject({ status: 400 });
    expect(await post(JSON.stringify({ linksPerFetch: 3 }))).toEqual({
      status: 200,
      body: { cloudFetch: { enabled: true, linkTtlMs: 15 * 60_000, fileBytes: FILE_BYTES, linksPerFetch: 3 } },
    });
    expect(await post(JSON.stringify({ linksPerFetch: 10 }))).toMatchObject({ status: 200 });
  });
});

describe("dbx-audit sandbox --no-cloud-fetch", () => {
  const launcher = join(__dirname, "..", "..", "bin", "dbx-audit.js");
  let sandbox: ChildProcess;
  let contract: SandboxContract;

  beforeAll(async () => {
    sandbox = spawn(process.execPath, [launcher, "sandbox", "--no-cloud-fetch", "--synthetic", "3000"], { stdio: ["ignore", "pipe", "inherit"] });
    const line = await new Promise<string>((resolve, reject) => {
      sandbox.once("exit", (code) => reject(new Error(`sandbox exited with ${code}`)));
      createInterface({ input: sandbox.stdout! }).once("line", resolve);
    });
    contract = JSON.parse(line) as SandboxContract;
  }, 60_000);

  afterAll(async () => {
    if (sandbox.exitCode !== null) return;
    const exited = new Promise((resolve) => sandbox.once("exit", resolve));
    sandbox.kill("SIGTERM");
    await exited;
  });

  it("answers inline until CloudFetch is switched on through the admin endpoint", async () => {
    expect(contract.databricks.cloudFetch).toBe(false);
    const stats = async () => (await (await fetch(`${contract.databricks.adminUrl}/stats`)).json()) as WarehouseStats;
    const client = new DBSQLClient({ logger: { log: () => undefined } });
    const [host, sandboxPort] = contract.databricks.serverHostname.split(":");
    await client.connect({
      host: host!,
      port: Number(sandboxPort),
      path: contract.databricks.httpPath,
      token: contract.databricks.token,
      telemetryEnabled: false,
    });
    const session = await client.openSession();
    try {
      expect((await readAll(session, ORDERED)).length).toBe(3000);
      expect(await stats()).toMatchObject({ linksIssued: 0, filesServed: 0, rowsSent: 3000 });

      const switched = await fetch(`${contract.databricks.adminUrl}/cloudfetch`, { method: "POST", body: JSON.stringify({ enabled: true }) });
      expect(switched.status).toBe(200);
      expect((await readAll(session, ORDERED)).length).toBe(3000);
      expect(await stats()).toMatchObject({ linksIssued: 1, filesServed: 1, rowsSent: 6000 });
    } finally {
      await session.close().catch(() => undefined);
      await client.close().catch(() => undefined);
    }
  });
});
