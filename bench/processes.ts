/** What the benchmarks share: the V8 heaps of Flex Consumption instances, and their measured worker processes. */
import { spawn } from "node:child_process";
import { join } from "node:path";
import { ensureLocalTls } from "../sandbox/tls";

/**
 * Node sizes V8's heap from the memory its container may use (the cgroup limit), so on a
 * Flex Consumption instance the exporting process runs with a heap sized to the instance, not
 * to the machine underneath. These are the limits Node 20 chose when run under a memory cgroup
 * of each size (heap_size_limit 259, 1,048 and 2,096 MB; new space 2, 16 and 32 MB), given as
 * the flags that reproduce them on a machine without such a limit. "none": the machine's own
 * memory, as when the CLI runs on a workstation.
 */
export const INSTANCE_HEAPS: Record<string, string[]> = {
  "512": ["--max-old-space-size=256", "--max-semi-space-size=1"],
  "2048": ["--max-old-space-size=1024", "--max-semi-space-size=8"],
  "4096": ["--max-old-space-size=2048", "--max-semi-space-size=16"],
  none: [],
};

/** One measured side in a process of its own (worker.ts), with these V8 heap flags; its one JSON line. */
export function workerProcess<T>(args: string[], env: NodeJS.ProcessEnv, heapFlags: string[]): Promise<T> {
  const child = spawn(process.execPath, [...heapFlags, join(__dirname, "worker.js"), ...args], { env, stdio: ["ignore", "pipe", "inherit"] });
  let out = "";
  child.stdout.on("data", (d: Buffer) => (out += d.toString()));
  return new Promise((resolve, reject) => {
    child.on("exit", (code) => (code === 0 ? resolve(JSON.parse(out.trim()) as T) : reject(new Error(`the ${args[0]} worker exited with code ${code}`))));
  });
}

/**
 * Node reads NODE_EXTRA_CA_CERTS only at start-up: unless this process already trusts the
 * sandbox's local CA, run this script again trusting it and exit with its code. True when it did.
 */
export async function rerunTrustingSandboxCa(): Promise<boolean> {
  const tls = await ensureLocalTls();
  if (process.env.NODE_EXTRA_CA_CERTS === tls.caCertPath) return false;
  const child = spawn(process.execPath, process.argv.slice(1), { stdio: "inherit", env: { ...process.env, NODE_EXTRA_CA_CERTS: tls.caCertPath } });
  child.on("exit", (code) => process.exit(code ?? 1));
  return true;
}
