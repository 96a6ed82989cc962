#!/usr/bin/env node
"use strict";
// Thin launcher for the compiled CLI (npm ci builds it through "prepare").
//
// The sandbox serves HTTPS with a local CA, and Node reads NODE_EXTRA_CA_CERTS only at
// start-up. So when this process will talk to the sandbox (the sandbox and demo commands,
// or settings/flags that point at 127.0.0.1/localhost) and no CA was given, it re-runs
// itself once with the sandbox's CA trusted. Real deployments never point at loopback.
const { spawn, spawnSync } = require("node:child_process");
const { existsSync } = require("node:fs");
const { join } = require("node:path");
const { tmpdir } = require("node:os");

const main = join(__dirname, "..", "dist", "cli", "main.js");
if (!existsSync(main)) {
  console.error("dbx-audit is not built yet: run 'npm ci' (or 'npm run build') in the project folder first.");
  process.exit(1);
}

const command = process.argv[2];
const caPath = join(process.env.DBX_AUDIT_SANDBOX_TLS_DIR || join(tmpdir(), "dbx-audit-sandbox-tls"), "ca-cert.pem");
const loopback = /(^|[/@=:;\s])(127\.\d+\.\d+\.\d+|localhost)([:/;]|$)/i;
const pointsAtLoopback = () =>
  process.argv.slice(3).some((a) => loopback.test(a)) ||
  ["DATABRICKS_SERVER_HOSTNAME", "EXPORT_STORAGE_CONNECTION_STRING", "EXPORT_STORAGE_ACCOUNT_URL", "LOGS_INGESTION_ENDPOINT"].some((n) =>
    loopback.test(process.env[n] || ""),
  );
const needsSandboxCa = !process.env.NODE_EXTRA_CA_CERTS && (command === "sandbox" || command === "demo" || pointsAtLoopback());

if (!needsSandboxCa) {
  require(main);
} else {
  if (!existsSync(caPath)) {
    const made = spawnSync(process.execPath, [join(__dirname, "..", "dist", "sandbox", "ensureTls.js")], { stdio: ["ignore", "ignore", "inherit"] });
    if (made.status !== 0 && (command === "sandbox" || command === "demo")) process.exit(made.status || 1);
  }
  if (!existsSync(caPath)) {
    require(main);
  } else {
    const child = spawn(process.execPath, process.argv.slice(1), { stdio: "inherit", env: { ...process.env, NODE_EXTRA_CA_CERTS: caPath } });
    for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"]) process.on(signal, () => child.kill(signal));
    child.on("exit", (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
  }
}
