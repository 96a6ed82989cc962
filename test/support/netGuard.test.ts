import { execFile, spawn, spawnSync } from "node:child_process";
import dgram from "node:dgram";
import dns from "node:dns";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import net from "node:net";
import { tmpdir } from "node:os";
import tls from "node:tls";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { Worker } from "node:worker_threads";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DATABRICKS_DEFAULT_SCOPE } from "../../shared/config";
import { ThreadedWarehouse } from "../../shared/databricksThread";

const GUARD_PATH = resolve(__dirname, "netGuard.mjs");
const REFUSED = /netGuard: a test tried to reach/;
/** TEST-NET-3 (RFC 5737): documentation only, never routed; the guard must refuse it before any packet. */
const OUTSIDE = "203.0.113.1";
const LAUNCHER = resolve(__dirname, "..", "..", "bin", "dbx-audit.js");

/**
 * Tries `net.connect(port, host)` and reports what happened, as one line: the guard's code and
 * message when it refused, "connected: <reply>" when a loopback server answered, else the error.
 * Runs the same in a worker thread (posts the line) and in a child process (prints it).
 */
const PROBE = `
const net = require("node:net");
function probe(host, port, report) {
  try {
    const socket = net.connect(port, host);
    let reply = "";
    socket.on("data", (c) => (reply += c));
    socket.on("end", () => report("connected: " + reply));
    socket.on("error", (e) => report("error " + e.code + " " + e.message));
  } catch (e) {
    report(e.code + " " + e.message);
  }
}
`;

/** Runs `fn`, which must throw synchronously, and returns the socket it was handed (if any). */
function expectRefused(fn: () => unknown, address: string): void {
  let thrown: unknown;
  try {
    fn();
  } catch (error) {
    thrown = error;
  }
  expect(thrown, `connect to ${address} did not throw`).toBeInstanceOf(Error);
  expect((thrown as Error).message).toMatch(REFUSED);
  expect((thrown as Error).message).toContain(address);
  expect((thrown as NodeJS.ErrnoException).code).toBe("ERR_NET_GUARD");
}

describe("netGuard", () => {
  it("is loaded into this test worker by vitest's execArgv", () => {
    expect((globalThis as Record<symbol, unknown>)[Symbol.for("dbx-audit.netGuard")]).toBeTruthy();
    expect(process.execArgv.join(" ")).toContain("netGuard.mjs");
  });

  it("refuses the cloud metadata address synchronously, before the socket does anything", () => {
    const socket = new net.Socket();
    expectRefused(() => socket.connect(80, "169.254.169.254"), "169.254.169.254");
    // The real connect never ran: no handle, not connecting.
    expect(socket.connecting).toBe(false);
    socket.destroy();
    expectRefused(() => net.connect({ host: "169.254.169.254", port: 80 }), "169.254.169.254");
    expectRefused(() => net.createConnection(80, "169.254.169.254"), "169.254.169.254");
    expectRefused(() => http.get("http://169.254.169.254/metadata/identity/oauth2/token"), "169.254.169.254");
  });

  it("refuses public DNS names, public IPs and IPv6 addresses that are not ::1", () => {
    expectRefused(() => tls.connect({ host: "login.microsoftonline.com", port: 443 }), "login.microsoftonline.com");
    expectRefused(() => net.connect(443, "example.com"), "example.com");
    expectRefused(() => net.connect(53, "8.8.8.8"), "8.8.8.8");
    expectRefused(() => net.connect(443, "2606:4700::1111"), "2606:4700::1111");
    expectRefused(() => net.connect(443, "::ffff:8.8.8.8"), "::ffff:8.8.8.8");
    expectRefused(() => dns.lookup("example.com", () => undefined), "example.com");
    expectRefused(() => void dns.promises.lookup("example.com"), "example.com");
    expectRefused(() => dns.resolve4("example.com", () => undefined), "example.com");
    const udp = dgram.createSocket("udp4");
    try {
      expectRefused(() => udp.send("x", 53, "8.8.8.8"), "8.8.8.8");
    } finally {
      udp.close();
    }
  });

  it("makes fetch fail with the guard's error", async () => {
    const error = await fetch("https://example.com/").then(
      () => undefined,
      (e: unknown) => e as Error & { cause?: Error },
    );
    expect(error?.cause?.message ?? error?.message).toMatch(REFUSED);
  });

  it("lets connections to 127.0.0.1 and localhost through", async () => {
    const server = net.createServer((s) => s.end("pong"));
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const { port } = server.address() as net.AddressInfo;
    try {
      for (const host of ["127.0.0.1", "localhost"]) {
        const reply = await new Promise<string>((resolve, reject) => {
          const chunks: Buffer[] = [];
          const socket = net.connect({ host, port, family: 4 });
          socket.on("data", (c: Buffer) => chunks.push(c));
          socket.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
          socket.on("error", reject);
        });
        expect(reply).toBe("pong");
      }
      const addresses = await dns.promises.lookup("localhost", { all: true });
      expect(addresses.length).toBeGreaterThan(0);
    } finally {
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });

  it("guards a plain node process started with --import, whose IPC channel still works", () => {
    const script = [
      "const net = require('node:net');",
      "try { net.connect(443, '20.190.160.1'); console.log('NOT BLOCKED'); }",
      "catch (e) { console.log(e.code + ' ' + e.message); }",
    ].join("\n");
    const result = spawnSync(process.execPath, ["--import", GUARD_PATH, "-e", script], { encoding: "utf8" });
    expect(result.status).toBe(0);
    expect(result.stdout).toContain("ERR_NET_GUARD");
    expect(result.stdout).toContain("20.190.160.1");
  });
});

describe("netGuard in worker threads", () => {
  let dir: string;
  let workerFile: string;
  let server: net.Server;
  let port: number;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "dbx-audit-netguard-"));
    workerFile = join(dir, "probe.cjs");
    writeFileSync(
      workerFile,
      `${PROBE}\nconst { parentPort, workerData } = require("node:worker_threads");\nprobe(workerData.host, workerData.port, (line) => parentPort.postMessage(line));\n`,
    );
    server = net.createServer((s) => s.end("pong"));
    await new Promise<void>((done) => server.listen(0, "127.0.0.1", done));
    port = (server.address() as net.AddressInfo).port;
  });
  afterAll(async () => {
    await new Promise<void>((done) => server.close(() => done()));
    rmSync(dir, { recursive: true, force: true });
  });

  const inWorker = (worker: Worker): Promise<string> =>
    new Promise((done, fail) => {
      worker.once("message", (line: string) => void worker.terminate().then(() => done(line)));
      worker.once("error", fail);
    });

  it("refuses a worker's non-loopback connect with the guard's error, whatever the worker's options", async () => {
    const target = { host: OUTSIDE, port: 443 };
    const lines = await Promise.all([
      inWorker(new Worker(workerFile, { workerData: target })),
      inWorker(new Worker(workerFile, { workerData: target, execArgv: [] })),
      inWorker(new Worker(workerFile, { workerData: target, env: { PATH: process.env.PATH } })),
      inWorker(
        new Worker(`${PROBE}; const w = require("node:worker_threads"); probe(w.workerData.host, w.workerData.port, (l) => w.parentPort.postMessage(l));`, {
          eval: true,
          workerData: target,
        }),
      ),
    ]);
    for (const line of lines) {
      expect(line).toMatch(/^ERR_NET_GUARD /);
      expect(line).toMatch(REFUSED);
      expect(line).toContain(`${OUTSIDE}:443`);
    }
  });

  it("lets a worker reach loopback", async () => {
    expect(await inWorker(new Worker(workerFile, { workerData: { host: "127.0.0.1", port } }))).toBe("connected: pong");
  });

  it("guards the export's reader thread: a warehouse off this machine is refused before any packet", async () => {
    expect(ThreadedWarehouse.available()).toBe(true);
    const settings = {
      serverHostname: `${OUTSIDE}:443`,
      host: OUTSIDE,
      port: 443,
      httpPath: "/sql/1.0/warehouses/x",
      accessToken: "dapi0",
      scope: DATABRICKS_DEFAULT_SCOPE,
    };
    const error = await ThreadedWarehouse.connect(settings, undefined, { retryMaxAttempts: 1 }).then(
      async (warehouse) => {
        await warehouse.close();
        return undefined;
      },
      (e: unknown) => e as Error,
    );
    expect(error?.message).toMatch(REFUSED);
    expect(error?.message).toContain(OUTSIDE);
  });
});

describe("netGuard in child processes", () => {
  const run = (args: string[], env?: NodeJS.ProcessEnv): Promise<{ code: number | null; out: string }> =>
    new Promise((done, fail) => {
      const child = spawn(process.execPath, args, { stdio: ["ignore", "pipe", "pipe"], ...(env ? { env } : {}) });
      let out = "";
      child.stdout.on("data", (c: Buffer) => (out += c.toString()));
      child.stderr.on("data", (c: Buffer) => (out += c.toString()));
      child.once("error", fail);
      child.once("exit", (code) => done({ code, out }));
    });
  const probeScript = (host: string, port: number) => `${PROBE}\nprobe(${JSON.stringify(host)}, ${port}, (line) => console.log(line));`;

  it("passes itself on through NODE_OPTIONS", () => {
    expect(process.env.NODE_OPTIONS).toContain("netGuard.mjs");
  });

  it("refuses a child's non-loopback connect, with the environment inherited or given afresh", async () => {
    const inherited = await run(["-e", probeScript(OUTSIDE, 443)]);
    const fresh = await run(["-e", probeScript(OUTSIDE, 443)], { PATH: process.env.PATH });
    const sync = spawnSync(process.execPath, ["-e", probeScript(OUTSIDE, 443)], { encoding: "utf8", env: { PATH: process.env.PATH } });
    // util.promisify keeps exec/execFile's { stdout, stderr } answer.
    const { stdout: promised } = await promisify(execFile)(process.execPath, ["-e", probeScript(OUTSIDE, 443)], { env: { PATH: process.env.PATH } });
    for (const out of [inherited.out, fresh.out, sync.stdout, promised]) {
      expect(out).toMatch(/^ERR_NET_GUARD /);
      expect(out).toMatch(REFUSED);
      expect(out).toContain(`${OUTSIDE}:443`);
    }
  });

  it("lets a child reach loopback", async () => {
    const server = net.createServer((s) => s.end("pong"));
    await new Promise<void>((done) => server.listen(0, "127.0.0.1", done));
    try {
      const { out } = await run(["-e", probeScript("127.0.0.1", (server.address() as net.AddressInfo).port)]);
      expect(out.trim()).toBe("connected: pong");
    } finally {
      await new Promise<void>((done) => server.close(() => done()));
    }
  });

  const checkFlags = (host: string) => ["check", "--server-hostname", host, "--http-path", "/sql/1.0/warehouses/x", "--access-token", "dapi0", "--json"];

  it("refuses the CLI's connect to a warehouse off this machine", async () => {
    const { out } = await run([LAUNCHER, ...checkFlags(OUTSIDE)], { PATH: process.env.PATH, DATABRICKS_TELEMETRY_DISABLED: "true" });
    expect(out).toMatch(REFUSED);
    expect(out).toContain(OUTSIDE);
  });

  it("also guards the CLI when it starts itself again to trust the sandbox's CA", async () => {
    // A loopback setting makes the launcher re-run itself with NODE_EXTRA_CA_CERTS; its warehouse is still off this machine.
    const env = { PATH: process.env.PATH, DATABRICKS_TELEMETRY_DISABLED: "true", NODE_EXTRA_CA_CERTS: "", LOGS_INGESTION_ENDPOINT: "https://127.0.0.1:9/" };
    const { out } = await run([LAUNCHER, ...checkFlags(OUTSIDE)], env);
    expect(out).toMatch(REFUSED);
    expect(out).toContain(OUTSIDE);
  });

  it("lets the CLI reach loopback (nothing listens there: refused by the kernel, not the guard)", async () => {
    const server = net.createServer();
    await new Promise<void>((done) => server.listen(0, "127.0.0.1", done));
    const { port } = server.address() as net.AddressInfo;
    await new Promise<void>((done) => server.close(() => done()));
    const { out } = await run([LAUNCHER, ...checkFlags(`127.0.0.1:${port}`)], { PATH: process.env.PATH, DATABRICKS_TELEMETRY_DISABLED: "true" });
    expect(out).toContain("ECONNREFUSED");
    expect(out).not.toMatch(REFUSED);
  });
});
