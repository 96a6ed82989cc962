import { createHash, createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import { createReadStream } from "node:fs";
import { mkdtemp, rm, unlink, writeFile } from "node:fs/promises";
import type { IncomingMessage, ServerResponse } from "node:http";
import { createServer, type Server } from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { compressFrameSync } from "lz4-napi";
import { closeServer, listenOnLoopback } from "../net";

/**
 * CloudFetch, as a real SQL warehouse answers large results: when the client says it can
 * download results (TExecuteStatementReq.canDownloadResult, the driver's default
 * `useCloudFetch`), the result set is URL_BASED_SET and each FetchResults carries
 * `resultLinks` (TSparkArrowResultLink) to result files in cloud storage instead of Arrow
 * batches. Here the "cloud storage" is a second HTTPS server on loopback, signed by the
 * sandbox's local CA, that behaves like a presigned Azure Blob / S3 URL:
 *
 * - a file is an Arrow IPC stream (schema, record batches, end-of-stream), LZ4-frame
 *   compressed when the client said it can decompress LZ4 (canDecompressLZ4Result). The
 *   driver this project uses asks for LZ4 only when it does not ask for CloudFetch (it turned
 *   LZ4 off for CloudFetch after transient checksum errors: databricks-sql-nodejs PR #297),
 *   so with it the files are plain Arrow; other clients (Python, Go, JDBC) get them compressed.
 * - file size: Databricks documents CloudFetch results as "Arrow-serialized files of up to
 *   20 MB" (Azure Databricks docs, "Driver capability settings for the Databricks ODBC
 *   Driver", Cloud Fetch). Default 20 MiB of Arrow per file, or less when the client asks
 *   (maxBytesPerFile); `fileBytes` changes it. A statement's first file can pass it by up to
 *   one DuckDB chunk (2,048 rows); later ones are cut by the bytes a row took so far.
 * - expiry: links are short-lived presigned URLs, "valid for only a short period, <= 15
 *   minutes", with their expiry alongside (Databricks Statement Execution API, external
 *   links). Default 15 minutes; `linkTtlMs` changes it. After expiry the store answers 403
 *   AuthenticationFailed, as Azure does for a SAS outside its time window; the driver itself
 *   refuses a link whose `expiryTime` has passed ("CloudFetch link has expired").
 * - links per FetchResults: whole files covering the rows the request asks for (maxRows), at
 *   least one, no more than the request's maxBytes when it sends one (the Python connector
 *   sends 100 MB), and at most `linksPerFetch`. Servers do not document a number; this is
 *   the stand-in's model.
 * - paths are random (128 bits) and each URL carries an HMAC signature over its path and
 *   expiry: a guessed path, or one query's path with another link's signature, gets 403; a
 *   link of a closed statement gets 404 BlobNotFound. Each file also needs the per-file
 *   customer-provided-key headers its link lists in `httpHeaders` (409 without them, as
 *   Azure answers for a blob encrypted with a customer-provided key): the client must send
 *   what the link says.
 *
 * Files live in a temporary folder (not memory) until they expire, their statement closes
 * or the warehouse stops. The stand-in writes a statement's files as the client fetches their
 * links rather than all when the statement finishes; to the client it looks the same.
 */

export interface CloudFetchSettings {
  /** Answer with links when the client can download results. */
  enabled: boolean;
  /** How long a link is valid, in ms. */
  linkTtlMs: number;
  /** Arrow bytes per result file (before LZ4). */
  fileBytes: number;
  /** Most links one FetchResults answer carries. */
  linksPerFetch: number;
}

export const DEFAULT_CLOUD_FETCH: Readonly<CloudFetchSettings> = Object.freeze({
  enabled: true,
  linkTtlMs: 15 * 60_000,
  fileBytes: 20 * 1024 * 1024,
  linksPerFetch: 10,
});

/** Settings to change, plus `expireNow`: every link issued so far is refused from now on (403). */
export type CloudFetchUpdate = Partial<CloudFetchSettings> & { expireNow?: boolean };

export interface CloudFetchStats {
  /** Links handed out in FetchResults answers (one file each). */
  linksIssued: number;
  /** Files downloaded in full (200). */
  filesServed: number;
  /** Bytes of those downloads, as sent (LZ4-compressed where the file is). */
  bytesServed: number;
  /** Files served LZ4-compressed. */
  lz4FilesServed: number;
  /** 403: no signature, or one that does not match the path and expiry. */
  linksRefused: number;
  /** 403: the link had expired. */
  expiredLinksRefused: number;
  /** 404: a valid link whose statement was closed. */
  filesNotFound: number;
}

/** One statement's Arrow result, handed to the store a file's worth at a time. */
export interface ResultFileSource {
  /** The operation the files belong to: they go when it closes. */
  readonly key: string;
  /** The client can decompress LZ4 (canDecompressLZ4Result). */
  readonly lz4: boolean;
  /** TExecuteStatementReq.maxBytesPerFile, when the client sent one. */
  readonly maxBytesPerFile?: number | undefined;
  /** The Arrow IPC schema message. */
  arrowSchema(): Buffer;
  /** The next Arrow record batch messages, about `maxBytes` of them. */
  nextBatches(maxBytes: number): Promise<{ batches: Buffer[]; rows: number; startRowOffset: number; hasMoreRows: boolean }>;
}

/** TSparkArrowResultLink, as the Thrift code writes it. */
export interface ResultLink {
  fileLink: string;
  /** ms since the epoch */
  expiryTime: number;
  startRowOffset: number;
  rowCount: number;
  bytesNum: number;
  httpHeaders: Record<string, string>;
}

interface StoredFile {
  diskPath: string;
  operationKey: string;
  bytes: number;
  expiresAt: number;
  lz4: boolean;
  encryptionKey: string;
}

const END_OF_STREAM = Buffer.from([0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]);
const FILE_PATH = /^\/results\/([0-9a-f]{32})$/;
/** Files stay on disk this long past their expiry (only to answer 403 rather than 404 meanwhile). */
const CLEANUP_GRACE_MS = 60_000;
const MAX_TIMER_MS = 2 ** 31 - 1;

export class ResultStore {
  private current: CloudFetchSettings = { ...DEFAULT_CLOUD_FETCH };
  private readonly files = new Map<string, StoredFile>();
  private readonly byOperation = new Map<string, Set<string>>();
  private readonly secret = randomBytes(32);
  private readonly counters: CloudFetchStats = {
    linksIssued: 0,
    filesServed: 0,
    bytesServed: 0,
    lz4FilesServed: 0,
    linksRefused: 0,
    expiredLinksRefused: 0,
    filesNotFound: 0,
  };
  private port = 0;
  private closing?: Promise<void>;

  private constructor(
    private readonly server: Server,
    private readonly dir: string,
  ) {}

  /** Starts the store on 127.0.0.1 (a free port), serving from a new temporary folder. */
  static async start(tls: { cert: string; key: string }, settings: Partial<CloudFetchSettings> = {}): Promise<ResultStore> {
    const dir = await mkdtemp(join(tmpdir(), "dbx-audit-results-"));
    const server = createServer({ cert: tls.cert, key: tls.key });
    const store = new ResultStore(server, dir);
    store.configure(settings);
    server.on("request", (req: IncomingMessage, res: ServerResponse) => store.serve(req, res));
    server.on("tlsClientError", () => undefined);
    server.keepAliveTimeout = 120_000;
    try {
      store.port = await listenOnLoopback(server);
    } catch (error) {
      await rm(dir, { recursive: true, force: true });
      throw error;
    }
    return store;
  }

  get settings(): Readonly<CloudFetchSettings> {
    return { ...this.current };
  }

  /** Validates and applies an update (all or nothing); returns the settings now in force. */
  configure(update: CloudFetchUpdate | Record<string, unknown>): CloudFetchSettings {
    const next = { ...this.current };
    let expireNow = false;
    for (const [key, value] of Object.entries(update)) {
      if (value === undefined) continue;
      if (key === "enabled" || key === "expireNow") {
        if (typeof value !== "boolean") throw new Error(`cloudfetch ${key} must be true or false, got ${JSON.stringify(value)}`);
        if (key === "enabled") next.enabled = value;
        else expireNow = value;
        continue;
      }
      const least = { linkTtlMs: 0, fileBytes: 1024, linksPerFetch: 1 }[key];
      if (least === undefined) throw new Error(`unknown cloudfetch setting '${key}'`);
      if (typeof value !== "number" || !Number.isSafeInteger(value) || value < least)
        throw new Error(`cloudfetch ${key} must be a whole number >= ${least}, got ${JSON.stringify(value)}`);
      next[key as "linkTtlMs" | "fileBytes" | "linksPerFetch"] = value;
    }
    this.current = next;
    if (expireNow) {
      const now = Date.now();
      for (const file of this.files.values()) file.expiresAt = Math.min(file.expiresAt, now);
    }
    return this.settings;
  }

  stats(): CloudFetchStats {
    return { ...this.counters };
  }

  /**
   * Writes the next files of a statement's result and returns their links: whole files
   * covering `maxRows` rows (at least one), within `maxBytes` when given, at most
   * `linksPerFetch`. `hasMoreRows` is false once the result is exhausted.
   */
  async issueLinks(source: ResultFileSource, maxRows: number, maxBytes?: number): Promise<{ links: ResultLink[]; rows: number; hasMoreRows: boolean }> {
    const fileBytes = Math.min(this.current.fileBytes, source.maxBytesPerFile && source.maxBytesPerFile > 0 ? source.maxBytesPerFile : Infinity);
    const links: ResultLink[] = [];
    let rows = 0;
    let bytes = 0;
    let hasMoreRows = true;
    const wantsMore = (): boolean =>
      links.length === 0 || (rows < maxRows && links.length < this.current.linksPerFetch && (maxBytes === undefined || bytes + fileBytes <= maxBytes));
    const names: string[] = [];
    while (hasMoreRows && wantsMore()) {
      const next = await source.nextBatches(fileBytes);
      hasMoreRows = next.hasMoreRows;
      if (next.rows === 0) break;
      const [name, link] = await this.put(source, next.batches, next.rows, next.startRowOffset);
      names.push(name);
      links.push(link);
      rows += next.rows;
      bytes += link.bytesNum;
    }
    // The links of one answer are signed together, as it is sent.
    const expiresAt = Date.now() + this.current.linkTtlMs;
    const se = new Date(expiresAt).toISOString();
    links.forEach((link, i) => {
      const name = names[i]!;
      const file = this.files.get(name);
      if (file) file.expiresAt = expiresAt;
      const path = `/results/${name}`;
      link.fileLink = `https://127.0.0.1:${this.port}${path}?se=${encodeURIComponent(se)}&sig=${this.sign(path, se)}`;
      link.expiryTime = expiresAt;
      setTimeout(() => this.deleteFile(name), Math.min(this.current.linkTtlMs + CLEANUP_GRACE_MS, MAX_TIMER_MS)).unref();
    });
    this.counters.linksIssued += links.length;
    return { links, rows, hasMoreRows };
  }

  /** Deletes a statement's files (its links answer 404 from now on). */
  dropOperation(operationKey: string): void {
    const names = this.byOperation.get(operationKey);
    if (!names) return;
    this.byOperation.delete(operationKey);
    for (const name of names) this.deleteFile(name);
  }

  close(): Promise<void> {
    return (this.closing ??= (async () => {
      await closeServer(this.server);
      this.files.clear();
      this.byOperation.clear();
      await rm(this.dir, { recursive: true, force: true });
    })());
  }

  // ----- files and links

  /** Stores a file; its link gets its URL and expiry when the answer is signed. */
  private async put(source: ResultFileSource, batches: Buffer[], rowCount: number, startRowOffset: number): Promise<[string, ResultLink]> {
    const arrow = Buffer.concat([source.arrowSchema(), ...batches, END_OF_STREAM]);
    const body = source.lz4 ? compressFrameSync(arrow) : arrow;
    const name = randomBytes(16).toString("hex");
    const diskPath = join(this.dir, name);
    await writeFile(diskPath, body);
    const key = randomBytes(32);
    const file: StoredFile = { diskPath, operationKey: source.key, bytes: body.length, expiresAt: 0, lz4: source.lz4, encryptionKey: key.toString("base64") };
    this.files.set(name, file);
    let names = this.byOperation.get(source.key);
    if (!names) this.byOperation.set(source.key, (names = new Set()));
    names.add(name);
    const link: ResultLink = {
      fileLink: "",
      expiryTime: 0,
      startRowOffset,
      rowCount,
      bytesNum: body.length,
      httpHeaders: {
        "x-ms-encryption-key": file.encryptionKey,
        "x-ms-encryption-key-sha256": createHash("sha256").update(key).digest("base64"),
        "x-ms-encryption-algorithm": "AES256",
      },
    };
    return [name, link];
  }

  private deleteFile(name: string): void {
    const file = this.files.get(name);
    if (!file) return;
    this.files.delete(name);
    this.byOperation.get(file.operationKey)?.delete(name);
    unlink(file.diskPath).catch(() => undefined);
  }

  private sign(path: string, se: string): string {
    return createHmac("sha256", this.secret).update(`${path}\n${se}`).digest("base64url");
  }

  private signatureMatches(path: string, se: string, sig: string): boolean {
    const want = Buffer.from(this.sign(path, se));
    const got = Buffer.from(sig);
    return want.length === got.length && timingSafeEqual(want, got);
  }

  // ----- the object store's HTTP side

  private serve(req: IncomingMessage, res: ServerResponse): void {
    req.resume();
    const url = new URL(req.url ?? "/", "https://127.0.0.1");
    const se = url.searchParams.get("se") ?? "";
    const sig = url.searchParams.get("sig") ?? "";
    const name = FILE_PATH.exec(url.pathname)?.[1];
    if (req.method !== "GET" && req.method !== "HEAD")
      return storageError(res, 405, "UnsupportedHttpVerb", "The resource doesn't support the specified HTTP verb.");
    if (!name || !se || !sig || !this.signatureMatches(url.pathname, se, sig)) {
      this.counters.linksRefused++;
      return storageError(res, 403, "AuthenticationFailed", "Server failed to authenticate the request. Signature did not match.");
    }
    const file = this.files.get(name);
    const now = Date.now();
    if (now >= Date.parse(se) || (file && now >= file.expiresAt)) {
      this.counters.expiredLinksRefused++;
      return storageError(
        res,
        403,
        "AuthenticationFailed",
        `Server failed to authenticate the request. Signature not valid in the specified time frame: Expiry [${se}] - Current [${new Date(now).toISOString()}]`,
      );
    }
    if (!file) {
      this.counters.filesNotFound++;
      return storageError(res, 404, "BlobNotFound", "The specified blob does not exist.");
    }
    if (req.headers["x-ms-encryption-key"] !== file.encryptionKey) {
      return storageError(
        res,
        409,
        "BlobUsesCustomerSpecifiedEncryption",
        "The blob is encrypted with customer specified encryption, but it was not provided in the request.",
      );
    }
    res.writeHead(200, { "Content-Type": "application/octet-stream", "Content-Length": String(file.bytes) });
    if (req.method === "HEAD") return void res.end();
    const stream = createReadStream(file.diskPath);
    stream.on("error", () => res.destroy());
    res.on("finish", () => {
      this.counters.filesServed++;
      this.counters.bytesServed += file.bytes;
      if (file.lz4) this.counters.lz4FilesServed++;
    });
    stream.pipe(res);
  }
}

/** `GET {adminUrl}/cloudfetch`: the settings and counters; `POST`: a JSON CloudFetchUpdate, answered with the settings in force. */
export function cloudFetchAdmin(store: ResultStore, method: string, body: string): { status: number; body: unknown } {
  if (method === "GET") return { status: 200, body: { cloudFetch: store.settings, stats: store.stats() } };
  let update: unknown;
  try {
    update = body.trim() ? JSON.parse(body) : {};
  } catch (error) {
    return { status: 400, body: { error: `not valid JSON (${(error as Error).message})` } };
  }
  if (update === null || typeof update !== "object" || Array.isArray(update)) return { status: 400, body: { error: "expected a JSON object of settings" } };
  try {
    return { status: 200, body: { cloudFetch: store.configure(update) } };
  } catch (error) {
    return { status: 400, body: { error: (error as Error).message } };
  }
}

function storageError(res: ServerResponse, status: number, code: string, message: string): void {
  const body = `<?xml version="1.0" encoding="utf-8"?><Error><Code>${code}</Code><Message>${message}</Message></Error>`;
  res.writeHead(status, { "Content-Type": "application/xml", "Content-Length": String(Buffer.byteLength(body)), "x-ms-error-code": code });
  res.end(body);
}
