import { spawn, type ChildProcess } from "node:child_process";
import { readFileSync, rmSync } from "node:fs";
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";

/**
 * What differs between the services: the installed package's bin, the host/port flags, the
 * name in the "Azurite <Name> service successfully listens on <url>" line, and the connection
 * string key of the endpoint.
 */
const SERVICES = {
  blob: { bin: "azurite-blob", hostFlag: "--blobHost", portFlag: "--blobPort", label: "Blob", endpointKey: "BlobEndpoint" },
  queue: { bin: "azurite-queue", hostFlag: "--queueHost", portFlag: "--queuePort", label: "Queue", endpointKey: "QueueEndpoint" },
} as const;

export type AzuriteServiceName = keyof typeof SERVICES;

/**
 * One of Azurite's services (blob or queue) as a child process, on 127.0.0.1 with a free port,
 * over HTTPS. Both are started the same way, each in a process of its own.
 *
 * Always started with `--disableTelemetry` (by default Azurite reports to Application Insights
 * and probes the cloud metadata address), `--skipApiVersionCheck` (the storage SDKs send a newer
 * API version than Azurite knows) and `--inMemoryPersistence`. With `oauth` (the default) it
 * runs `--oauth basic`: it then accepts bearer tokens whose aud is https://storage.azure.com and
 * whose iss starts with https://sts.windows.net/ (signature not checked; iat, nbf, exp needed),
 * which Azurite allows only over HTTPS.
 */
export interface AzuriteService {
  service: AzuriteServiceName;
  /** `https://127.0.0.1:<port>/devstoreaccount1`: this service's endpoint for devstoreaccount1. */
  accountUrl: string;
  /** The explicit devstoreaccount1 connection string with this service's https endpoint only (BlobEndpoint or QueueEndpoint). */
  connectionString: string;
  pid: number;
  close(): Promise<void>;
}

/** A started blob service (the archive's): the name the blob users import. */
export type AzuriteBlob = AzuriteService;

export interface AzuriteOptions {
  tls: { certPath: string; keyPath: string };
  /** Which service to start; default "blob". */
  service?: AzuriteServiceName;
  /** Accept Entra ID bearer tokens (`--oauth basic`); default true. */
  oauth?: boolean;
  /** How long to wait for the "listens on" line; default 30 s. */
  startTimeoutMs?: number;
}

/** Azurite's well-known development account (public, documented; not a secret). */
export const DEVSTORE_ACCOUNT = "devstoreaccount1";
export const DEVSTORE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/**
 * Runs in the child before Azurite: the parent holds the child's IPC channel, and when the
 * parent goes away for any reason (exit, crash, SIGKILL) the channel closes and the child
 * follows. close() uses the same path: it disconnects. `process.argv[1]` is Azurite's entry.
 * On exit the child removes its working folder (the private temporary one; rmdir only removes
 * it when empty, which it is with in-memory persistence) in case the parent could not.
 */
const CHILD_BOOTSTRAP = [
  "process.on('disconnect', () => process.exit(0));",
  "process.on('exit', () => { try { require('node:fs').rmdirSync(process.cwd()); } catch {} });",
  "if (!process.connected) process.exit(0);",
  "require(process.argv[1]);",
].join("\n");

export async function startAzurite(options: AzuriteOptions): Promise<AzuriteService> {
  const service = options.service ?? "blob";
  const { hostFlag, portFlag, label } = SERVICES[service];
  const oauth = options.oauth ?? true;
  const location = await mkdtemp(join(tmpdir(), `dbx-audit-azurite-${service}-`));
  const args = [
    hostFlag,
    "127.0.0.1",
    portFlag,
    "0",
    "--inMemoryPersistence",
    "--disableTelemetry",
    "--skipApiVersionCheck",
    "--silent",
    "--cert",
    options.tls.certPath,
    "--key",
    options.tls.keyPath,
    ...(oauth ? ["--oauth", "basic"] : []),
  ];
  const env = { ...process.env };
  delete env.AZURITE_DB; // would switch Azurite to SQL metadata, which refuses --inMemoryPersistence

  // No --location (Azurite refuses it with --inMemoryPersistence): it defaults to the working
  // directory, so run in a private temporary folder, removed on exit.
  const child = spawn(process.execPath, [...preloadArgs(), "-e", CHILD_BOOTSTRAP, azuriteEntry(service), ...args], {
    cwd: location,
    env,
    stdio: ["ignore", "pipe", "pipe", "ipc"],
    windowsHide: true,
  });
  const exited = new Promise<void>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve();
    else child.once("exit", () => resolve());
  });
  const cleanup = () => rmSync(location, { recursive: true, force: true });
  void exited.then(cleanup);

  let url: URL;
  try {
    url = await waitForListening(child, label, options.startTimeoutMs ?? 30_000);
  } catch (error) {
    await stop(child, exited);
    throw error;
  }
  // Keep draining output so a chatty child never blocks on a full pipe; and do not let a
  // forgotten Azurite keep this process alive (when we exit, the IPC channel closes and it follows).
  child.stdout?.resume();
  child.stderr?.resume();
  unrefChild(child);

  const port = url.port;
  const accountUrl = `https://127.0.0.1:${port}/${DEVSTORE_ACCOUNT}`;
  return {
    service,
    accountUrl,
    connectionString: devstoreConnectionString({ [service]: accountUrl }),
    pid: child.pid ?? -1,
    close: () => stop(child, exited),
  };
}

/**
 * The explicit devstoreaccount1 connection string (https) naming the given services'
 * endpoints, e.g. both the blob and the queue service of a sandbox. Each SDK reads only its
 * own endpoint key, so one string serves the blob and the queue clients alike.
 */
export function devstoreConnectionString(endpoints: Partial<Record<AzuriteServiceName, string>>): string {
  const named = (Object.keys(SERVICES) as AzuriteServiceName[]).flatMap((service) => {
    const url = endpoints[service];
    return url ? [`${SERVICES[service].endpointKey}=${url};`] : [];
  });
  return `DefaultEndpointsProtocol=https;AccountName=${DEVSTORE_ACCOUNT};AccountKey=${DEVSTORE_KEY};${named.join("")}`;
}

/** A service's entry (`azurite-blob`, `azurite-queue`), from the installed package's own `bin` table. */
export function azuriteEntry(service: AzuriteServiceName = "blob"): string {
  const { bin: name } = SERVICES[service];
  const packageJson = require.resolve("azurite/package.json");
  const pkg = JSON.parse(readFileSync(packageJson, "utf8")) as { bin?: Record<string, string> };
  const bin = pkg.bin?.[name];
  if (!bin) throw new Error(`the installed azurite package has no '${name}' entry`);
  return join(dirname(packageJson), bin);
}

/**
 * `--import` / `--require` preloads of this process (e.g. the test suite's network guard),
 * passed on so they apply to Azurite too. Nothing else of execArgv is (no --inspect clashes).
 */
function preloadArgs(): string[] {
  const out: string[] = [];
  const argv = process.execArgv;
  for (let i = 0; i < argv.length; i += 1) {
    const arg = argv[i] ?? "";
    if ((arg === "--import" || arg === "--require" || arg === "-r") && i + 1 < argv.length) {
      out.push(arg, argv[i + 1] ?? "");
      i += 1;
    } else if (arg.startsWith("--import=") || arg.startsWith("--require=")) {
      out.push(arg);
    }
  }
  return out;
}

function waitForListening(child: ChildProcess, label: string, timeoutMs: number): Promise<URL> {
  const listensOn = new RegExp(`Azurite ${label} service successfully listens on (https?:\\/\\/\\S+)`);
  return new Promise<URL>((resolve, reject) => {
    let output = "";
    const onData = (chunk: Buffer) => {
      output += chunk.toString("utf8");
      const match = listensOn.exec(output);
      if (match?.[1]) {
        finish();
        resolve(new URL(match[1]));
      }
    };
    const onExit = (code: number | null, signal: NodeJS.Signals | null) => {
      finish();
      reject(new Error(`Azurite ${label} exited before listening (code ${code}, signal ${signal}): ${tail(output)}`));
    };
    const onError = (error: Error) => {
      finish();
      reject(new Error(`Azurite ${label} could not be started: ${error.message}`));
    };
    const timer = setTimeout(() => {
      finish();
      reject(new Error(`Azurite ${label} did not report listening within ${timeoutMs} ms: ${tail(output)}`));
    }, timeoutMs);
    function finish() {
      clearTimeout(timer);
      child.stdout?.off("data", onData);
      child.stderr?.off("data", onData);
      child.off("exit", onExit);
      child.off("error", onError);
    }
    child.stdout?.on("data", onData);
    child.stderr?.on("data", onData);
    child.once("exit", onExit);
    child.once("error", onError);
  });
}

function tail(text: string): string {
  const trimmed = text.trim();
  return trimmed ? trimmed.slice(-2000) : "(no output)";
}

function unrefChild(child: ChildProcess): void {
  child.unref();
  (child.channel as { unref?: () => void } | undefined)?.unref?.();
  for (const stream of [child.stdout, child.stderr]) (stream as { unref?: () => void } | null)?.unref?.();
}

/** Disconnects (the child exits on its own), then SIGKILL if it has not gone after 5 s; waits for exit. */
async function stop(child: ChildProcess, exited: Promise<void>): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return exited;
  if (child.connected) child.disconnect();
  else child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), 5_000);
  try {
    await exited;
  } finally {
    clearTimeout(timer);
  }
}
