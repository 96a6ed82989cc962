import { gunzip as gunzipCallback } from "node:zlib";
import { promisify } from "node:util";
import type { ContainerClient } from "@azure/storage-blob";
import { batchBlobName, journalBlobName, parseState, type ExportState } from "./export/state";
import { statusOf } from "./errors";
import { StateConflictError, type BatchRecord, type DeadLetter, type ExportStore, type JournalEntry, type StoredState } from "./export/ports";
import { fastGzip } from "./fastGzip";
import { DEAD_LETTER_PREFIX, type DeadLetterStore } from "./export/redrive";
import { ClaimsConflictError, claimsBlobName, hourOfClaimsBlob, parseClaims, type HourClaims, type StoredClaims } from "./export/accountEvents";

const gunzip = promisify(gunzipCallback);

export const STATE_BLOB = "_state/export.json";
/** Where the archive's blobs are named: everything under it is in the archive's container, and written once. */
export const ARCHIVE_PREFIX = "audit/";
export const CHECK_CACHE_BLOB = "_state/prerequisites-check.json";
/** The last reconciliation's summary, next to the export state: the quick health check reads it without querying. */
export const RECONCILIATION_BLOB = "_state/reconciliation.json";
/** EventIds `dbx-audit reconcile --resend` sent again, and when: never sent twice while they may still be on their way. */
export const RESENT_BLOB = "_state/reconcile-resent.json";
const NEWLINE = 0x0a;

/**
 * An archive blob of that name already exists and lacks some line this batch would write: not this
 * batch's earlier attempt, or written under other settings (AUDIT_REDACT_PARAMS changed between a
 * crash and the resumed batch). The archive is write-once: the blob stays as it is and the run stops.
 */
export class ArchiveConflictError extends Error {
  override readonly name = "ArchiveConflictError";
}

/**
 * The archive and the export's state, in two private containers (or one, when EXPORT_STATE_CONTAINER
 * is unset). Archive blobs are written once (`ifNoneMatch: "*"`), never overwritten or deleted, so the
 * archive's container can carry a write-once (WORM) policy; everything the export rewrites or deletes
 * (state, batch ledgers, journal, claims, dead letters) is in the state container. State writes are
 * conditional (ifMatch its ETag, ifNoneMatch "*" when creating): a writer that lost a race gets
 * 412/409, surfaced as StateConflictError, and never overwrites the winner.
 */
export class BlobExportStore implements ExportStore, DeadLetterStore {
  constructor(
    private readonly archive: ContainerClient,
    private readonly state: ContainerClient = archive,
    /** The state blob's name: the live export's, or a backfill slice's own (shared/backfill). */
    private readonly stateBlob: string = STATE_BLOB,
  ) {}

  /** Creates the containers (private: Databricks warns that audit data is sensitive) if they are missing. */
  async ensureContainer(): Promise<void> {
    await this.archive.createIfNotExists();
    if (this.state.containerName !== this.archive.containerName) await this.state.createIfNotExists();
  }

  async readState(): Promise<StoredState | null> {
    const text = await this.readText(this.stateBlob);
    if (!text) return null;
    return { state: parseState(text.body), etag: text.etag };
  }

  writeState(state: ExportState, etag: string | null): Promise<string> {
    return writeJsonConditionally(
      this.state,
      this.stateBlob,
      JSON.stringify(state, null, 1),
      etag,
      (status) => new StateConflictError(`The export state blob changed underneath this run (HTTP ${status}).`),
    );
  }

  /**
   * Writes an archive blob once: `ifNoneMatch: "*"`, so an existing blob is never overwritten. A
   * blob that exists already (409/412) was written by an earlier attempt of the same batch (names
   * are deterministic: a retry after a crash, or the storage SDK retrying a write that had in fact
   * succeeded): when it holds these lines, the write is done. Compared uncompressed, since gzip's
   * output need not be the same byte for byte on another machine. When it holds every one of these
   * lines and more (events that left the table before a crashed batch was resumed), it is kept, the
   * fuller copy. Any other content (a line that differs) is an ArchiveConflictError, and the blob
   * stays as it is. Returns the blob's compressed size.
   */
  async writeArchive(name: string, lines: readonly Uint8Array[]): Promise<number> {
    const content = Buffer.concat(lines);
    const body = await fastGzip(content);
    try {
      await this.archive.getBlockBlobClient(name).upload(body, body.length, {
        conditions: { ifNoneMatch: "*" },
        blobHTTPHeaders: { blobContentType: "application/x-ndjson", blobContentDisposition: "attachment" },
      });
      return body.length;
    } catch (error) {
      const status = statusOf(error);
      if (status !== 409 && status !== 412) throw error;
    }
    const existing = await this.download(name);
    if (!existing) throw new ArchiveConflictError(`The archive blob ${name} was reported as existing and then not found; nothing was overwritten.`);
    const held = await gunzip(existing);
    if (held.equals(content) || holdsEveryLine(held, content)) return existing.length;
    throw new ArchiveConflictError(
      `The archive blob ${name} already exists and holds other content than this batch writes. Archive blobs are written once and never overwritten, so it was left as it is. See TROUBLESHOOTING.md, "An archive blob exists with other content".`,
    );
  }

  async readArchiveLines(name: string): Promise<Uint8Array[] | null> {
    const body = await this.download(name);
    if (!body) return null;
    const text = await gunzip(body);
    const lines: Uint8Array[] = [];
    let start = 0;
    for (let end = text.indexOf(NEWLINE); end >= 0; end = text.indexOf(NEWLINE, start)) {
      lines.push(text.subarray(start, end + 1));
      start = end + 1;
    }
    return lines;
  }

  /**
   * A batch blob: gzipped JSON of the batch's event_ids, archive blobs and calls. Version 1
   * wrote the event_ids alone, one per line: both read back.
   */
  async writeBatch(id: string, batch: BatchRecord): Promise<void> {
    const body = await fastGzip(Buffer.from(JSON.stringify({ version: 2, ...batch }), "utf8"));
    await this.state.getBlockBlobClient(batchBlobName(id)).upload(body, body.length);
  }

  async readBatch(id: string): Promise<BatchRecord | null> {
    const body = await this.download(batchBlobName(id));
    if (!body) return null;
    const text = (await gunzip(body)).toString("utf8");
    if (text.startsWith("{")) {
      const batch = JSON.parse(text) as BatchRecord;
      return { ids: batch.ids, blobs: batch.blobs ?? null, calls: batch.calls ?? null };
    }
    return { ids: text ? text.split("\n") : [], blobs: null, calls: null };
  }

  async readEventIds(batchIds: readonly string[]): Promise<Set<string>> {
    const ids = new Set<string>();
    for (const id of batchIds) for (const eventId of (await this.readBatch(id))?.ids ?? []) ids.add(eventId);
    return ids;
  }

  async deleteBatches(batchIds: readonly string[]): Promise<void> {
    await this.deletePaths(batchIds.map(batchBlobName));
  }

  async writeJournal(source: string, seq: number, entry: JournalEntry): Promise<void> {
    const body = JSON.stringify(entry);
    await this.state.getBlockBlobClient(journalBlobName(source, seq)).upload(body, Buffer.byteLength(body), {
      blobHTTPHeaders: { blobContentType: "application/json" },
    });
  }

  async readJournal(source: string, seq: number): Promise<JournalEntry | null> {
    const text = await this.readText(journalBlobName(source, seq));
    return text ? (JSON.parse(text.body) as JournalEntry) : null;
  }

  async deleteJournal(source: string, seq: number): Promise<void> {
    await this.deletePaths([journalBlobName(source, seq)]);
  }

  async readClaims(hour: number): Promise<StoredClaims | null> {
    const name = claimsBlobName(hour);
    const text = await this.readText(name);
    return text ? { claims: parseClaims(text.body, name), etag: text.etag } : null;
  }

  async writeClaims(hour: number, claims: HourClaims, etag: string | null): Promise<string> {
    const name = claimsBlobName(hour);
    const body = JSON.stringify(claims);
    try {
      return await writeJsonConditionally(
        this.state,
        name,
        body,
        etag,
        (status) => new ClaimsConflictError(`${name} changed underneath this run (HTTP ${status}).`),
      );
    } catch (error) {
      // The storage SDK may retry a write that had in fact succeeded: then the blob holds exactly this body.
      if (!(error instanceof ClaimsConflictError)) throw error;
      const now = await this.readText(name);
      if (now?.body === body) return now.etag;
      throw error;
    }
  }

  async deleteClaims(hours: readonly number[]): Promise<void> {
    await this.deletePaths(hours.map(claimsBlobName));
  }

  async listClaimHours(): Promise<number[]> {
    return (await this.listNames("_state/account-events/")).flatMap((name) => {
      const hour = hourOfClaimsBlob(name);
      return hour === undefined ? [] : [hour];
    });
  }

  async writeDeadLetters(name: string, letters: readonly DeadLetter[]): Promise<string> {
    const body = letters.map((letter) => `${JSON.stringify(letter)}\n`).join("");
    await this.state.getBlockBlobClient(name).upload(body, Buffer.byteLength(body), {
      blobHTTPHeaders: { blobContentType: "application/x-ndjson" },
    });
    return name;
  }

  async listDeadLetters(): Promise<string[]> {
    return this.listNames(DEAD_LETTER_PREFIX);
  }

  async readDeadLetters(name: string): Promise<DeadLetter[]> {
    const body = await this.download(name);
    if (!body) return [];
    return body
      .toString("utf8")
      .split("\n")
      .filter((line) => line.length > 0)
      .map((line) => JSON.parse(line) as DeadLetter);
  }

  /** Deletes state blobs; never an archive blob (the archive is write-once). */
  async deletePaths(names: readonly string[]): Promise<void> {
    const archived = names.filter(isArchiveName);
    if (archived.length > 0) throw new Error(`Refusing to delete archive blobs (the archive is write-once): ${archived.join(", ")}.`);
    await Promise.all(names.map((name) => this.state.deleteBlob(name, { deleteSnapshots: "include" }).catch(ignoreNotFound)));
  }

  /** Lines of an archive blob, for tests and the demo. */
  async readArchive(name: string): Promise<string[]> {
    const body = await gunzip(await this.archive.getBlobClient(name).downloadToBuffer());
    return body
      .toString("utf8")
      .split("\n")
      .filter((line) => line.length > 0);
  }

  /** The "folders" right under `prefix` (names ending in '/'), without listing the blobs below them. */
  async listPrefixes(prefix: string): Promise<string[]> {
    const prefixes: string[] = [];
    for await (const item of this.containerOf(prefix).listBlobsByHierarchy("/", { prefix })) if (item.kind === "prefix") prefixes.push(item.name);
    return prefixes;
  }

  async writeReconciliation(summary: unknown): Promise<void> {
    const body = JSON.stringify(summary);
    await this.state.getBlockBlobClient(RECONCILIATION_BLOB).upload(body, Buffer.byteLength(body), {
      blobHTTPHeaders: { blobContentType: "application/json" },
    });
  }

  async writeResent(resent: Record<string, string>): Promise<void> {
    const body = JSON.stringify(resent);
    await this.state.getBlockBlobClient(RESENT_BLOB).upload(body, Buffer.byteLength(body), { blobHTTPHeaders: { blobContentType: "application/json" } });
  }

  /** EventId -> when it was re-sent (ISO); empty when nothing was. */
  async readResent(): Promise<Record<string, string>> {
    const text = await this.readText(RESENT_BLOB);
    return text ? (JSON.parse(text.body) as Record<string, string>) : {};
  }

  /** The last reconciliation's summary as stored, or null when none ran yet. */
  async readReconciliation(): Promise<unknown> {
    const text = await this.readText(RECONCILIATION_BLOB);
    return text ? (JSON.parse(text.body) as unknown) : null;
  }

  /** Blob names under a prefix, in the container that holds it (the archive's for audit/). */
  async listNames(prefix: string): Promise<string[]> {
    const names: string[] = [];
    for await (const blob of this.containerOf(prefix).listBlobsFlat({ prefix })) names.push(blob.name);
    return names;
  }

  /** The last full prerequisite check's report (checks/cache.ts), or null. */
  async readCheckCache(): Promise<string | null> {
    return (await this.readText(CHECK_CACHE_BLOB))?.body ?? null;
  }

  /** Replaces it: the last full check wins, whichever instance ran it. */
  async writeCheckCache(text: string): Promise<void> {
    await this.state.getBlockBlobClient(CHECK_CACHE_BLOB).upload(text, Buffer.byteLength(text), {
      blobHTTPHeaders: { blobContentType: "application/json" },
    });
  }

  private containerOf(name: string): ContainerClient {
    return isArchiveName(name) ? this.archive : this.state;
  }

  private async download(name: string): Promise<Buffer | null> {
    try {
      return await this.containerOf(name).getBlobClient(name).downloadToBuffer();
    } catch (error) {
      if (statusOf(error) === 404) return null;
      throw error;
    }
  }

  private readText(name: string): Promise<{ body: string; etag: string } | null> {
    return readBlobText(this.state, name);
  }
}

function isArchiveName(name: string): boolean {
  return name.startsWith(ARCHIVE_PREFIX);
}

/** Whether every line of `wanted` is, byte for byte, a line of `held`. */
function holdsEveryLine(held: Buffer, wanted: Buffer): boolean {
  const lines = (text: Buffer): string[] => text.toString("latin1").split("\n");
  const heldLines = new Set(lines(held));
  return lines(wanted).every((line) => heldLines.has(line));
}

function ignoreNotFound(error: unknown): void {
  if (statusOf(error) !== 404) throw error;
}

/** A blob's text and ETag, or null when it does not exist. */
export async function readBlobText(container: ContainerClient, name: string): Promise<{ body: string; etag: string } | null> {
  try {
    const response = await container.getBlobClient(name).download();
    const chunks: Buffer[] = [];
    for await (const chunk of response.readableStreamBody!) chunks.push(Buffer.from(chunk as Buffer));
    return { body: Buffer.concat(chunks).toString("utf8"), etag: response.etag! };
  } catch (error) {
    if (statusOf(error) === 404) return null;
    throw error;
  }
}

/**
 * Writes a JSON state blob only if it is still the version read (`ifMatch` its ETag), or does
 * not exist yet (`etag` null: `ifNoneMatch: "*"`). A writer that lost the race gets 412/409,
 * thrown as `conflict(status)`, and never overwrites the winner. Returns the new ETag.
 */
export async function writeJsonConditionally(
  container: ContainerClient,
  name: string,
  body: string,
  etag: string | null,
  conflict: (status: number) => Error,
): Promise<string> {
  try {
    const result = await container.getBlockBlobClient(name).upload(body, Buffer.byteLength(body), {
      conditions: etag === null ? { ifNoneMatch: "*" } : { ifMatch: etag },
      blobHTTPHeaders: { blobContentType: "application/json" },
    });
    return result.etag!;
  } catch (error) {
    const status = statusOf(error);
    if (status === 412 || status === 409) throw conflict(status);
    throw error;
  }
}
