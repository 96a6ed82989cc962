#!/usr/bin/env node
"use strict";
// Thin launcher for the compiled CLI. `npm ci` installs without building: package.json has no
// "prepare", since the Functions build service's production-only install would run it without
// TypeScript. `npm run build` compiles (`npm run demo` and `npm test` do it themselves).
//
// The sandbox serves HTTPS with a local CA, and Node reads NODE_EXTRA_CA_CERTS only at
// start-up. So when this process will talk to the sandbox (the sandbox and demo commands,
// or settings/flags that point at 127.0.0.1/localhost) and the CA is not trusted yet, it
// re-runs itself once with the sandbox's CA added to NODE_EXTRA_CA_CERTS (keeping any bundle
// already named there). Real deployments never point at loopback.
const { spawn, spawnSync } = require("node:child_process");
const { createHash } = require("node:crypto");
const { existsSync, readFileSync, renameSync, writeFileSync } = require("node:fs");
const { join } = require("node:path");
const { tmpdir } = require("node:os");

const main = join(__dirname, "..", "dist", "cli", "main.js");
if (!existsSync(main)) {
  console.error("dbx-audit is not built yet: run 'npm run build' in the project folder first (after 'npm ci').");
  process.exit(1);
}

const command = process.argv[2];
const tlsDir = process.env.DBX_AUDIT_SANDBOX_TLS_DIR || join(tmpdir(), "dbx-audit-sandbox-tls");
const caPath = join(tlsDir, "ca-cert.pem");
const loopback = /(^|[/@=:;\s])(127\.\d+\.\d+\.\d+|localhost)([:/;]|$)/i;
const pointsAtLoopback = () =>
  process.argv.slice(3).some((a) => loopback.test(a)) ||
  ["DATABRICKS_SERVER_HOSTNAME", "EXPORT_STORAGE_CONNECTION_STRING", "EXPORT_STORAGE_ACCOUNT_URL", "LOGS_INGESTION_ENDPOINT"].some((n) =>
    loopback.test(process.env[n] || ""),
  );
const wantsSandboxCa = command === "sandbox" || command === "demo" || pointsAtLoopback();

function read(path) {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return "";
  }
}

/** The bundle to trust: the sandbox CA, plus whatever NODE_EXTRA_CA_CERTS already named. */
function bundleWithSandboxCa() {
  const ca = read(caPath).trim();
  const current = process.env.NODE_EXTRA_CA_CERTS;
  if (!ca) return undefined;
  if (current && read(current).includes(ca)) return undefined; // already trusted
  const existing = current ? read(current).trim() : "";
  if (!existing) return caPath;
  const bundle = join(tlsDir, `bundle-${createHash("sha256").update(existing).update(ca).digest("hex").slice(0, 16)}.pem`);
  if (!existsSync(bundle)) {
    const temporary = `${bundle}.${process.pid}.tmp`;
    writeFileSync(temporary, `${existing}\n${ca}\n`, { mode: 0o644 });
    renameSync(temporary, bundle);
  }
  return bundle;
}

if (wantsSandboxCa && !existsSync(caPath)) {
  spawnSync(process.execPath, [join(__dirname, "..", "dist", "sandbox", "ensureTls.js")], { stdio: ["ignore", "ignore", "inherit"] });
}
const bundle = wantsSandboxCa && !process.env.DBX_AUDIT_CA_ADDED ? bundleWithSandboxCa() : undefined;
if (!bundle) {
  require(main);
} else {
  const child = spawn(process.execPath, process.argv.slice(1), {
    stdio: "inherit",
    env: { ...process.env, NODE_EXTRA_CA_CERTS: bundle, DBX_AUDIT_CA_ADDED: "1" },
  });
  for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"]) process.on(signal, () => child.kill(signal));
  child.on("exit", (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
}
