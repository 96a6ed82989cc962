import { spawnSync } from "node:child_process";
import dgram from "node:dgram";
import dns from "node:dns";
import http from "node:http";
import net from "node:net";
import tls from "node:tls";
import { resolve } from "node:path";
import { describe, expect, it } from "vitest";

const GUARD_PATH = resolve(__dirname, "netGuard.mjs");
const REFUSED = /netGuard: a test tried to reach/;

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
