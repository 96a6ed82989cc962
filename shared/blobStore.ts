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
/** The last reconciliation's summary, next to the export state: the quick health check reads it without querying. */
export const RECONCILIATION_BLOB = "_state/reconciliation.json";
/** EventIds `dbx-audit reconcile --resend` sent again, and when: never sent twice while they may still be on their way. */
export const RESENT_BLOB = "_state/reconcile-resent.json";
const NEWLINE = 0x0a;

/**
 * The archive and the export's state in one private container. State writes are conditional
 * (ifMatch its ETag, ifNoneMatch "*" when creating): a writer that lost a race gets 412/409,
 * surfaced as StateConflictError, and never overwrites the winner.
 */
export class BlobExportStore implements ExportStore, DeadLetterStore {
  constructor(private readonly container: ContainerClient) {}

  /** Creates the container (private: Databricks warns that audit data is sensitive) if it is missing. */
  async ensureContainer(): Promise<void> {
    await this.container.createIfNotExists();
  }

  async readState(): Promise<StoredState | null> {
    const text = await this.readText(STATE_BLOB);
    if (!text) return null;
    return { state: parseState(text.body), etag: text.etag };
  }

  writeState(state: ExportState, etag: string | null): Promise<string> {
    return writeJsonConditionally(
      this.container,
      STATE_BLOB,
      JSON.stringify(state, null, 1),
      etag,
      (status) => new StateConflictError(`The export state blob changed underneath this run (HTTP ${status}).`),
    );
  }

  async writeArchive(name: string, lines: readonly Uint8Array[]): Promise<number> {
    const body = await fastGzip(Buffer.concat(lines));
    await this.container.getBlockBlobClient(name).upload(body, body.length, {
      blobHTTPHeaders: { blobContentType: "application/x-ndjson", blobContentDisposition: "attachment" },
    });
    return body.length;
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
    await this.container.getBlockBlobClient(batchBlobName(id)).upload(body, body.length);
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
    await this.container.getBlockBlobClient(journalBlobName(source, seq)).upload(body, Buffer.byteLength(body), {
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
        this.container,
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
    await this.container.getBlockBlobClient(name).upload(body, Buffer.byteLength(body), {
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

  async deletePaths(names: readonly string[]): Promise<void> {
    await Promise.all(names.map((name) => this.container.deleteBlob(name, { deleteSnapshots: "include" }).catch(ignoreNotFound)));
  }

  /** Lines of an archive blob, for tests and the demo. */
  async readArchive(name: string): Promise<string[]> {
    const body = await gunzip(await this.container.getBlobClient(name).downloadToBuffer());
    return body
      .toString("utf8")
      .split("\n")
      .filter((line) => line.length > 0);
  }

  /** The "folders" right under `prefix` (names ending in '/'), without listing the blobs below them. */
  async listPrefixes(prefix: string): Promise<string[]> {
    const prefixes: string[] = [];
    for await (const item of this.container.listBlobsByHierarchy("/", { prefix })) if (item.kind === "prefix") prefixes.push(item.name);
    return prefixes;
  }

  async writeReconciliation(summary: unknown): Promise<void> {
    const body = JSON.stringify(summary);
    await this.container.getBlockBlobClient(RECONCILIATION_BLOB).upload(body, Buffer.byteLength(body), {
      blobHTTPHeaders: { blobContentType: "application/json" },
    });
  }

  async writeResent(resent: Record<string, string>): Promise<void> {
    const body = JSON.stringify(resent);
    await this.container.getBlockBlobClient(RESENT_BLOB).upload(body, Buffer.byteLength(body), { blobHTTPHeaders: { blobContentType: "application/json" } });
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

  async listNames(prefix: string): Promise<string[]> {
    const names: string[] = [];
    for await (const blob of this.container.listBlobsFlat({ prefix })) names.push(blob.name);
    return names;
  }

  private async download(name: string): Promise<Buffer | null> {
    try {
      return await this.container.getBlobClient(name).downloadToBuffer();
    } catch (error) {
      if (statusOf(error) === 404) return null;
      throw error;
    }
  }

  private readText(name: string): Promise<{ body: string; etag: string } | null> {
    return readBlobText(this.container, name);
  }
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
