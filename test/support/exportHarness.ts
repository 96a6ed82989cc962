import { ManagedIdentityCredential, type TokenCredential } from "@azure/identity";
import { BlobServiceClient, type ContainerClient } from "@azure/storage-blob";
import { expect } from "vitest";
import type { AuditEvent } from "../../shared/auditEvent";
import { BlobExportStore } from "../../shared/blobStore";
import { DATABRICKS_DEFAULT_SCOPE, parseServerHostname, type AuditFilter, type DatabricksSettings } from "../../shared/config";
import { Warehouse, type WarehouseOptions } from "../../shared/databricks";
import { ThreadedWarehouse } from "../../shared/databricksThread";
import type { ExportDeps, ExportOptions } from "../../shared/export/engine";
import { runExport } from "../../shared/export/engine";
import type { AuditSource, ExportStore, IngestionSink } from "../../shared/export/ports";
import { LogsIngestionSink, type IngestionClientOptions } from "../../shared/logsIngestion";
import { MAX_CALL_BYTES, type SentinelAuditRecord } from "../../shared/sentinelRecord";
import { startSandboxStack, type SandboxStack, type WarehouseEndpoint } from "../../sandbox/stack";

/** Starts the local stack for one test file and points this process's managed identity at it. */
export async function startStack(): Promise<SandboxStack> {
  const stack = await startSandboxStack({ synthetic: 0 });
  process.env.IDENTITY_ENDPOINT = stack.contract.env.IDENTITY_ENDPOINT;
  process.env.IDENTITY_HEADER = stack.contract.env.IDENTITY_HEADER;
  return stack;
}

export class SimulatedCrash extends Error {
  override readonly name = "SimulatedCrash";
}

/**
 * Stands in for the process dying: at step `crashAt` it throws, and from then on every call
 * to storage, Log Analytics or the warehouse throws too, so nothing more leaves "the process".
 */
export class CrashSwitch {
  steps: string[] = [];
  dead = false;
  /** At the nth step, or at the nth occurrence of a named step (e.g. "after writeClaims"). */
  constructor(private readonly crashAt?: number | { step: string; occurrence: number }) {}

  step(name: string): void {
    if (this.dead) throw new SimulatedCrash(`already dead (${name})`);
    this.steps.push(name);
    const at = this.crashAt;
    const hit =
      typeof at === "number" ? this.steps.length === at : at !== undefined && name === at.step && this.steps.filter((s) => s === name).length === at.occurrence;
    if (hit) {
      this.dead = true;
      throw new SimulatedCrash(`crash at step ${this.steps.length}: ${name}`);
    }
  }

  async around<T>(name: string, work: () => Promise<T>): Promise<T> {
    this.step(`before ${name}`);
    const result = await work();
    this.step(`after ${name}`);
    return result;
  }
}

/** A store that delegates to `store` (a class instance: its methods bound), with some methods replaced. */
export function overriding(store: ExportStore, overrides: Partial<ExportStore>): ExportStore {
  const bound = {} as Record<string, unknown>;
  for (const key of Object.getOwnPropertyNames(Object.getPrototypeOf(store)) as (keyof ExportStore)[]) {
    const member = (store as unknown as Record<string, unknown>)[key];
    if (typeof member === "function" && key !== ("constructor" as keyof ExportStore)) bound[key] = member.bind(store);
  }
  for (const key of Object.keys(store) as (keyof ExportStore)[]) {
    const member = (store as unknown as Record<string, unknown>)[key];
    if (typeof member === "function") bound[key] = member;
  }
  return { ...(bound as unknown as ExportStore), ...overrides };
}

export function crashingStore(store: ExportStore, sw: CrashSwitch): ExportStore {
  return {
    readState: () => sw.around("readState", () => store.readState()),
    writeState: (state, etag) => sw.around("writeState", () => store.writeState(structuredClone(state), etag)),
    writeArchive: (name, lines) => sw.around("writeArchive", () => store.writeArchive(name, lines)),
    readArchiveLines: (name) => sw.around("readArchiveLines", () => store.readArchiveLines(name)),
    writeBatch: (id, batch) => sw.around("writeBatch", () => store.writeBatch(id, batch)),
    readBatch: (id) => sw.around("readBatch", () => store.readBatch(id)),
    readEventIds: (ids) => sw.around("readEventIds", () => store.readEventIds(ids)),
    deleteBatches: (ids) => sw.around("deleteBatches", () => store.deleteBatches(ids)),
    writeJournal: (source, seq, entry) => sw.around("writeJournal", () => store.writeJournal(source, seq, entry)),
    readJournal: (source, seq) => sw.around("readJournal", () => store.readJournal(source, seq)),
    deleteJournal: (source, seq) => sw.around("deleteJournal", () => store.deleteJournal(source, seq)),
    writeDeadLetters: (name, letters) => sw.around("writeDeadLetters", () => store.writeDeadLetters(name, letters)),
    readClaims: (hour) => sw.around("readClaims", () => store.readClaims(hour)),
    writeClaims: (hour, claims, etag) => sw.around("writeClaims", () => store.writeClaims(hour, structuredClone(claims), etag)),
    deleteClaims: (hours) => sw.around("deleteClaims", () => store.deleteClaims(hours)),
    listClaimHours: () => sw.around("listClaimHours", () => store.listClaimHours()),
  };
}

export function crashingSink(sink: IngestionSink, sw: CrashSwitch): IngestionSink {
  // Only "before": the instant between Log Analytics' 204 and the state write that records it
  // is the one window no client can close (the API has no idempotency key); see the README.
  return {
    send: async (records) => {
      sw.step("before logsIngestionCall");
      await sink.send(records);
    },
    probe: () => sink.probe(),
  };
}

export function crashingSource(source: AuditSource, sw: CrashSwitch): AuditSource {
  return {
    async *scan(request) {
      sw.step("before query");
      for await (const chunk of source.scan(request)) {
        sw.step("after fetch");
        yield chunk;
      }
    },
    countByHour: (filter, from, to) => sw.around("countByHour", () => source.countByHour(filter, from, to)),
  };
}

export const ALL_ROWS: AuditFilter = { services: "all", workspaceIds: [], includeAccountLevel: true };

export interface RunSetup {
  stack: SandboxStack;
  container: ContainerClient;
  options: ExportOptions;
  now: () => number;
  crash?: CrashSwitch;
  ingestion?: boolean;
  warehouseOptions?: WarehouseOptions;
  /** "identity": the warehouse gets Entra ID tokens from the managed identity endpoint instead of the PAT. */
  warehouseAuth?: "pat" | "identity";
  /** false: the driver on the test's own thread (the same reads, without starting a thread per run). */
  readerThread?: boolean;
  ingestionOptions?: IngestionClientOptions;
  onProgress?: ExportDeps["onProgress"];
  /** Another data collection rule ID than the sandbox's (a DCR that was replaced). */
  ruleId?: string;
  /** Wrap the real parts, to inject faults or observe calls. */
  wrapStore?: (store: ExportStore) => ExportStore;
  wrapSink?: (sink: IngestionSink) => IngestionSink;
  wrapSource?: (source: AuditSource) => AuditSource;
  log?: ExportDeps["log"];
}

let credential: ManagedIdentityCredential | undefined;
/** Built after startStack(): the credential reads the identity endpoint from the environment. */
export function identityCredential(): ManagedIdentityCredential {
  credential ??= new ManagedIdentityCredential();
  return credential;
}

export function containerFor(stack: SandboxStack, name: string): ContainerClient {
  return BlobServiceClient.fromConnectionString(stack.contract.storage.connectionString).getContainerClient(name);
}

/** One export run through the real driver (on its reader thread, as the app runs it), Azurite and the Logs Ingestion client. */
export async function exportOnce(setup: RunSetup): ReturnType<typeof runExport> {
  const store = new BlobExportStore(setup.container);
  await store.ensureContainer();
  const databricks = { ...hostOf(setup.stack), httpPath: setup.stack.contract.databricks.httpPath, scope: DATABRICKS_DEFAULT_SCOPE };
  const connect = (settings: DatabricksSettings, credential: TokenCredential | undefined) =>
    setup.readerThread === false
      ? Warehouse.connect(settings, credential, setup.warehouseOptions)
      : ThreadedWarehouse.connect(settings, credential, setup.warehouseOptions);
  const warehouse =
    setup.warehouseAuth === "identity"
      ? await connect(databricks, identityCredential())
      : await connect({ ...databricks, accessToken: setup.stack.contract.databricks.token }, undefined);
  const sink =
    setup.ingestion === false
      ? undefined
      : new LogsIngestionSink(
          {
            endpoint: setup.stack.contract.logsIngestion.endpoint,
            ruleId: setup.ruleId ?? setup.stack.contract.logsIngestion.ruleId,
            streamName: setup.stack.contract.logsIngestion.streamName,
          },
          identityCredential(),
          { maxRetries: 2, retryDelayInMs: 50, maxRetryDelayInMs: 200, ...setup.ingestionOptions },
        );
  const sw = setup.crash;
  const wrap = <T>(part: T, wrapper: ((part: T) => T) | undefined): T => (wrapper ? wrapper(part) : part);
  const deps: ExportDeps = {
    source: wrap(sw ? crashingSource(warehouse, sw) : warehouse, setup.wrapSource),
    store: wrap(sw ? crashingStore(store, sw) : store, setup.wrapStore),
    ...(sink ? { ingestion: wrap(sw ? crashingSink(sink, sw) : sink, setup.wrapSink) } : {}),
    now: setup.now,
    log: setup.log ?? { info: () => undefined, warn: () => undefined },
    ...(setup.onProgress ? { onProgress: setup.onProgress } : {}),
  };
  try {
    return await runExport(setup.options, deps);
  } finally {
    await warehouse.close();
  }
}

export function hostOf(stack: SandboxStack): { serverHostname: string; host: string; port: number } {
  const { serverHostname, host, port } = warehouseSettings(stack.contract.databricks);
  return { serverHostname, host, port };
}

/** The driver's settings for one warehouse of the sandbox's contract (`databricks` or an entry of `databricksSources`), with its PAT. */
export function warehouseSettings(endpoint: Pick<WarehouseEndpoint, "serverHostname" | "httpPath" | "token">): DatabricksSettings {
  return {
    serverHostname: endpoint.serverHostname,
    ...parseServerHostname(endpoint.serverHostname)!,
    httpPath: endpoint.httpPath,
    scope: DATABRICKS_DEFAULT_SCOPE,
    accessToken: endpoint.token,
  };
}

export async function archivedEvents(container: ContainerClient): Promise<AuditEvent[]> {
  const store = new BlobExportStore(container);
  const events: AuditEvent[] = [];
  for (const name of await store.listNames("audit/")) {
    for (const line of await store.readArchive(name)) events.push(JSON.parse(line) as AuditEvent);
  }
  return events;
}

/** The real Logs Ingestion client against the sandbox's stand-in, with short retries. */
export function ingestionSink(stack: SandboxStack, options: IngestionClientOptions = {}): LogsIngestionSink {
  const { endpoint, ruleId, streamName } = stack.contract.logsIngestion;
  return new LogsIngestionSink({ endpoint, ruleId, streamName }, identityCredential(), {
    maxRetries: 2,
    retryDelayInMs: 50,
    maxRetryDelayInMs: 200,
    ...options,
  });
}

export function ingestedRecords(stack: SandboxStack): SentinelAuditRecord[] {
  return stack.logsIngestion.received() as unknown as SentinelAuditRecord[];
}

/** Each expected id exactly once, and nothing else. */
export function expectExactlyOnce(actualIds: readonly string[], expectedIds: readonly string[], where: string): void {
  const counts = new Map<string, number>();
  for (const id of actualIds) counts.set(id, (counts.get(id) ?? 0) + 1);
  const duplicated = [...counts].filter(([, n]) => n > 1).map(([id]) => id);
  const missing = expectedIds.filter((id) => !counts.has(id));
  const unexpected = [...counts.keys()].filter((id) => !expectedIds.includes(id));
  expect({ where, duplicated, missing: missing.length, unexpected: unexpected.length }).toEqual({ where, duplicated: [], missing: 0, unexpected: 0 });
}

/** Both sinks hold each expected event exactly once. */
export async function expectBothSinksOnce(stack: SandboxStack, container: ContainerClient, expectedIds: readonly string[], where = ""): Promise<void> {
  expectExactlyOnce(
    (await archivedEvents(container)).map((e) => e.event_id),
    expectedIds,
    `blob${where}`,
  );
  expectExactlyOnce(
    ingestedRecords(stack).map((r) => r.EventId),
    expectedIds,
    `Log Analytics${where}`,
  );
}

/**
 * Log Analytics lost nothing, and what it got twice fits in `calls` calls: the calls that were
 * in flight when a run died or lost its lock (the API has no idempotency key).
 */
export function expectAtMostCallsResent(records: readonly SentinelAuditRecord[], expected: readonly string[], calls: number, where = ""): void {
  const counts = new Map<string, number>();
  const sizes = new Map<string, number>();
  for (const record of records) {
    counts.set(record.EventId, (counts.get(record.EventId) ?? 0) + 1);
    sizes.set(record.EventId, Buffer.byteLength(JSON.stringify(record)));
  }
  const missing = expected.filter((id) => !counts.has(id)).length;
  const duplicated = [...counts].filter(([, n]) => n > 1);
  const unexpected = [...counts.keys()].filter((id) => !expected.includes(id)).length;
  expect({ where, missing, unexpected, tripled: duplicated.filter(([, n]) => n > 2).length }).toEqual({ where, missing: 0, unexpected: 0, tripled: 0 });
  expect(duplicated.reduce((bytes, [id]) => bytes + sizes.get(id)!, 0)).toBeLessThan(calls * MAX_CALL_BYTES);
}
