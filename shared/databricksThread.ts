import { existsSync } from "node:fs";
import { join } from "node:path";
import { Worker, isMainThread, parentPort, workerData, type MessagePort } from "node:worker_threads";
import type { AccessToken, TokenCredential } from "@azure/identity";
import { scanQuery, type BoundQuery } from "./auditQueries";
import { lineBuffers, type PreparedEvent, type Preparation } from "./export/batching";
import type { AuditFilter, DatabricksSettings } from "./config";
import { Warehouse, countRowsByHour, markWarehouseError, prepareRows, type WarehouseOptions } from "./databricks";
import type { AuditSource, ScanRequest } from "./export/ports";

/**
 * The SQL warehouse on a thread of its own. Turning the driver's Arrow batches into rows is
 * most of a read's CPU; on the main thread it would hold back every network answer the sinks
 * wait for (blob writes, Log Analytics calls, state writes). Here the driver runs in a worker
 * thread, which also prepares the export's events (prepareEvents: redaction, the archive's
 * JSON line, the record size) and hands them over in slices of DEFAULT_HANDOFF_ROWS, at most
 * READ_AHEAD_SLICES ahead of the export. A prepared event is a few strings and numbers and a
 * view of its slice's line buffer, which is moved to the main thread, not copied: far cheaper
 * to pass between threads than a row's object tree, and the main thread then never builds
 * those trees. Tokens still come from the main thread's credential (the managed identity).
 */
const READ_AHEAD_SLICES = 2;
/**
 * Rows per message to the main thread. A fetched chunk (5,000 rows) is handed over in slices
 * so the main thread holds a few thousand rows, not three chunks: in the 200,000-event
 * benchmark that took the exporting process's peak RSS from 523 to 440 MB at the same speed.
 */
const DEFAULT_HANDOFF_ROWS = 1_000;

export interface ThreadOptions extends WarehouseOptions {
  /** Rows per message from the reader thread (default DEFAULT_HANDOFF_ROWS). */
  handoffRows?: number;
}

type ToWorker =
  | { type: "query"; id: number; query: BoundQuery; preparation?: Preparation }
  | { type: "more"; id: number }
  | { type: "cancel"; id: number }
  | { type: "token"; requestId: number; token?: AccessToken; error?: string }
  | { type: "close" };

type FromWorker =
  | { type: "ready" }
  | { type: "rows"; id: number; rows: unknown[] }
  | { type: "end"; id: number }
  | { type: "error"; id: number | null; error: SerializedError }
  | { type: "needToken"; requestId: number; scope: string }
  | { type: "closed" };

interface SerializedError {
  message: string;
  name: string;
  statusCode?: number;
  code?: string;
  response?: { sqlState?: string; errorMessage?: string };
}

interface QueryListener {
  onRows(rows: unknown[]): void;
  onEnd(): void;
  onError(error: Error): void;
}

export class ThreadedWarehouse implements AuditSource {
  private nextId = 1;
  private readonly queries = new Map<number, QueryListener>();
  private failure: Error | undefined;
  private readonly exited: Promise<void>;

  private constructor(
    private readonly worker: Worker,
    private readonly credential: TokenCredential | undefined,
  ) {
    worker.on("message", (message: FromWorker) => this.onMessage(message));
    worker.on("error", (error) => this.failAll(error));
    this.exited = new Promise((resolve) =>
      worker.once("exit", (code) => {
        this.failAll(new Error(`The warehouse reader thread stopped (exit code ${code}).`));
        resolve();
      }),
    );
  }

  /** True when the compiled worker script is there (it is not when running from TypeScript sources without a build). */
  static available(): boolean {
    return existsSync(workerScript());
  }

  static async connect(settings: DatabricksSettings, credential: TokenCredential | undefined, options: ThreadOptions = {}): Promise<ThreadedWarehouse> {
    const worker = new Worker(workerScript(), { workerData: { role: WORKER_ROLE, settings, options, useCredential: credential !== undefined } });
    const warehouse = new ThreadedWarehouse(worker, credential);
    await new Promise<void>((resolve, reject) => {
      warehouse.queries.set(0, { onRows: () => undefined, onEnd: resolve, onError: reject });
    }).catch(async (error: unknown) => {
      await worker.terminate();
      throw error;
    });
    return warehouse;
  }

  /** The rows of any query, as the driver returns them. */
  rows(query: BoundQuery): AsyncGenerator<Record<string, unknown>[]> {
    return this.stream<Record<string, unknown>>(query);
  }

  /** The export's events, prepared on the reader thread. */
  scan(request: ScanRequest): AsyncGenerator<PreparedEvent[]> {
    return this.stream<PreparedEvent>(scanQuery(request.filter, request.after, request.toUs, request.limit), request.preparation);
  }

  countByHour(filter: AuditFilter, fromUs: number, toUs: number): Promise<Map<number, number>> {
    return countRowsByHour((query) => this.rows(query), filter, fromUs, toUs);
  }

  /** A query's rows, or with a preparation its prepared events, slice by slice. */
  private async *stream<T>(query: BoundQuery, preparation?: Preparation): AsyncGenerator<T[]> {
    if (this.failure) throw this.failure;
    const id = this.nextId++;
    const ready: T[][] = [];
    let done = false;
    let error: Error | undefined;
    let wake: (() => void) | undefined;
    const notify = (): void => {
      wake?.();
      wake = undefined;
    };
    this.queries.set(id, {
      onRows: (rows) => {
        ready.push(rows as T[]);
        notify();
      },
      onEnd: () => {
        done = true;
        notify();
      },
      onError: (e) => {
        error = e;
        notify();
      },
    });
    this.post({ type: "query", id, query, ...(preparation ? { preparation } : {}) });
    try {
      for (;;) {
        if (ready.length === 0 && !done && error === undefined) await new Promise<void>((resolve) => (wake = resolve));
        const rows = ready.shift();
        if (rows) {
          this.post({ type: "more", id });
          yield rows;
          continue;
        }
        if (error !== undefined) throw error;
        if (done) return;
      }
    } finally {
      if (!done && error === undefined) this.post({ type: "cancel", id });
      this.queries.delete(id);
    }
  }

  /** Closes the session and ends the thread (ended outright if it does not finish within 10 s). Safe after the thread died. */
  async close(): Promise<void> {
    this.post({ type: "close" });
    const timer = setTimeout(() => void this.worker.terminate(), 10_000);
    await this.exited;
    clearTimeout(timer);
  }

  private post(message: ToWorker): void {
    this.worker.postMessage(message);
  }

  private onMessage(message: FromWorker): void {
    switch (message.type) {
      case "ready":
        this.queries.get(0)?.onEnd();
        this.queries.delete(0);
        return;
      case "rows":
        this.queries.get(message.id)?.onRows(message.rows);
        return;
      case "end":
        this.queries.get(message.id)?.onEnd();
        return;
      case "error":
        if (message.id === null) this.failAll(reviveError(message.error));
        else this.queries.get(message.id)?.onError(reviveError(message.error));
        return;
      case "needToken":
        void this.answerToken(message.requestId, message.scope);
        return;
      case "closed":
        return;
    }
  }

  private async answerToken(requestId: number, scope: string): Promise<void> {
    try {
      if (!this.credential) throw new Error("No Azure credential: cannot get a token for the SQL warehouse.");
      const token = await this.credential.getToken(scope);
      if (!token) throw new Error(`The Azure credential returned no token for scope ${scope}.`);
      this.post({ type: "token", requestId, token: { token: token.token, expiresOnTimestamp: token.expiresOnTimestamp } });
    } catch (error) {
      this.post({ type: "token", requestId, error: error instanceof Error ? error.message : String(error) });
    }
  }

  private failAll(error: Error): void {
    this.failure ??= error;
    for (const listener of this.queries.values()) listener.onError(error);
  }
}

const WORKER_ROLE = "dbx-audit-warehouse-reader";

/** The compiled form of this file: itself when running compiled, the build's copy when running from sources (tests). */
function workerScript(): string {
  if (__filename.endsWith(".js")) return __filename;
  return join(__dirname, "..", "dist", "shared", "databricksThread.js");
}

/** An error as the driver threw it, with what the project's classification reads (status, code, SQLSTATE). */
function serializeError(error: unknown): SerializedError {
  const e = (error ?? {}) as { message?: string; name?: string; statusCode?: number; code?: string; response?: { sqlState?: string; errorMessage?: string } };
  const constructorName = (error as object | null)?.constructor?.name;
  return {
    message: e.message ?? String(error),
    name: e.name && e.name !== "Error" ? e.name : (constructorName ?? "Error"),
    ...(typeof e.statusCode === "number" ? { statusCode: e.statusCode } : {}),
    ...(typeof e.code === "string" ? { code: e.code } : {}),
    ...(e.response ? { response: { sqlState: e.response.sqlState, errorMessage: e.response.errorMessage } } : {}),
  };
}

function reviveError(serialized: SerializedError): Error {
  const error = Object.assign(new Error(serialized.message), serialized);
  markWarehouseError(error);
  return error;
}

// ---- the worker thread ------------------------------------------------------------------------

if (!isMainThread && (workerData as { role?: string } | null)?.role === WORKER_ROLE) {
  runWorker(parentPort!, workerData as { settings: DatabricksSettings; options: ThreadOptions; useCredential: boolean });
}

function runWorker(port: MessagePort, data: { settings: DatabricksSettings; options: ThreadOptions; useCredential: boolean }): void {
  const handoffRows = data.options.handoffRows ?? DEFAULT_HANDOFF_ROWS;
  const post = (message: FromWorker, transfer: ArrayBuffer[] = []): void => port.postMessage(message, transfer);
  let nextTokenRequest = 1;
  const tokenRequests = new Map<number, { resolve: (token: AccessToken) => void; reject: (error: Error) => void }>();
  const credential: TokenCredential | undefined = data.useCredential
    ? {
        getToken: (scopes) =>
          new Promise<AccessToken>((resolve, reject) => {
            const requestId = nextTokenRequest++;
            tokenRequests.set(requestId, { resolve, reject });
            post({ type: "needToken", requestId, scope: Array.isArray(scopes) ? scopes[0]! : scopes });
          }),
      }
    : undefined;
  const credits = new Map<number, { left: number; wake?: () => void; cancelled: boolean }>();
  let warehouse: Warehouse | undefined;

  const stream = async (id: number, query: BoundQuery, preparation: Preparation | undefined): Promise<void> => {
    const credit = credits.get(id)!;
    try {
      for await (const chunk of warehouse!.rows(query)) {
        for (let start = 0; start < chunk.length; start += handoffRows) {
          while (credit.left === 0 && !credit.cancelled) await new Promise<void>((resolve) => (credit.wake = resolve));
          if (credit.cancelled) return;
          credit.left -= 1;
          const rows = chunk.length <= handoffRows ? chunk : chunk.slice(start, start + handoffRows);
          if (!preparation) {
            post({ type: "rows", id, rows });
            continue;
          }
          // The lines' buffer moves to the export's thread, not copied.
          const events = prepareRows(rows, preparation);
          post({ type: "rows", id, rows: events }, lineBuffers(events));
        }
      }
      post({ type: "end", id });
    } catch (error) {
      post({ type: "error", id, error: serializeError(error) });
    } finally {
      credits.delete(id);
    }
  };

  port.on("message", (message: ToWorker) => {
    switch (message.type) {
      case "query":
        credits.set(message.id, { left: READ_AHEAD_SLICES, cancelled: false });
        void stream(message.id, message.query, message.preparation);
        return;
      case "more":
      case "cancel": {
        const credit = credits.get(message.id);
        if (!credit) return;
        if (message.type === "more") credit.left += 1;
        else credit.cancelled = true;
        credit.wake?.();
        credit.wake = undefined;
        return;
      }
      case "token": {
        const request = tokenRequests.get(message.requestId);
        tokenRequests.delete(message.requestId);
        if (message.token) request?.resolve(message.token);
        else request?.reject(new Error(message.error ?? "no token"));
        return;
      }
      case "close":
        void (async () => {
          for (const credit of credits.values()) {
            credit.cancelled = true;
            credit.wake?.();
          }
          await warehouse?.close();
          post({ type: "closed" });
          port.close();
        })();
        return;
    }
  });

  Warehouse.connect(data.settings, credential, data.options).then(
    (connected) => {
      warehouse = connected;
      post({ type: "ready" });
    },
    (error: unknown) => post({ type: "error", id: null, error: serializeError(error) }),
  );
}
