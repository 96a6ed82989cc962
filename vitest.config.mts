import { fileURLToPath } from "node:url";
import { defineConfig } from "vitest/config";
import { ensureLocalTls } from "./sandbox/tls.js";

const netGuard = fileURLToPath(new URL("./test/support/netGuard.mjs", import.meta.url));

export default defineConfig(async () => {
  // Node reads NODE_EXTRA_CA_CERTS only when a process starts: set it here, in the main
  // process, so every test worker forked afterwards trusts the sandbox's local CA.
  const tls = await ensureLocalTls();
  process.env.NODE_EXTRA_CA_CERTS = tls.caCertPath;
  return {
    test: {
      include: ["test/**/*.test.ts"],
      // The CLI's tests run the compiled dist/, which `npm ci` does not build: compiled when stale.
      globalSetup: ["./test/support/compiledBuild.ts"],
      pool: "forks",
      // --expose-gc: the memory test measures what stays live, not garbage V8 has yet to collect.
      execArgv: ["--import", netGuard, "--expose-gc"],
      testTimeout: 60_000,
      hookTimeout: 120_000,
      env: { NODE_EXTRA_CA_CERTS: tls.caCertPath, AZURE_IDENTITY_DISABLE_MULTITENANTAUTH: "true" },
    },
  };
});
