import { gunzip as gunzipCallback } from "node:zlib";
import { promisify } from "node:util";
import type { ContainerClient } from "@azure/storage-blob";
import { parseState, type ExportState } from "./exportState";
import { statusOf } from "./errors";
import { StateConflictError, type ExportStore, type StoredState } from "./exporter";
import { fastGzip } from "./fastGzip";

const gunzip = promisify(gunzipCallback);

export const STATE_BLOB = "_state/export.json";

/**
 * The archive and the export's state in one private container. State writes are conditional
 * (ifMatch its ETag, ifNoneMatch "*" when creating): a writer that lost a race gets 412/409,
 * surfaced as StateConflictError, and never overwrites the winner.
 */
export class BlobExportStore implements ExportStore {
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

  async writeState(state: ExportState, etag: string | null): Promise<string> {
    const body = JSON.stringify(state, null, 1);
    try {
      const result = await this.container.getBlockBlobClient(STATE_BLOB).upload(body, Buffer.byteLength(body), {
        conditions: etag === null ? { ifNoneMatch: "*" } : { ifMatch: etag },
        blobHTTPHeaders: { blobContentType: "application/json" },
      });
      return result.etag!;
    } catch (error) {
      const status = statusOf(error);
      if (status === 412 || status === 409) throw new StateConflictError(`The export state blob changed underneath this run (HTTP ${status}).`);
      throw error;
    }
  }

  async writeArchive(name: string, lines: readonly Uint8Array[]): Promise<number> {
    const body = await fastGzip(Buffer.concat(lines));
    await this.container.getBlockBlobClient(name).upload(body, body.length, {
      blobHTTPHeaders: { blobContentType: "application/x-ndjson", blobContentDisposition: "attachment" },
    });
    return body.length;
  }

  async writeIds(name: string, ids: readonly string[]): Promise<void> {
    const body = await fastGzip(Buffer.from(ids.join("\n"), "utf8"));
    await this.container.getBlockBlobClient(name).upload(body, body.length);
  }

  async readIds(name: string): Promise<string[] | null> {
    const blob = this.container.getBlobClient(name);
    try {
      const body = await gunzip(await blob.downloadToBuffer());
      const text = body.toString("utf8");
      return text ? text.split("\n") : [];
    } catch (error) {
      if (statusOf(error) === 404) return null;
      throw error;
    }
  }

  async readEventIds(names: readonly string[]): Promise<Set<string>> {
    const ids = new Set<string>();
    for (const name of names) for (const id of (await this.readIds(name)) ?? []) ids.add(id);
    return ids;
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

  async listNames(prefix: string): Promise<string[]> {
    const names: string[] = [];
    for await (const blob of this.container.listBlobsFlat({ prefix })) names.push(blob.name);
    return names;
  }

  private async readText(name: string): Promise<{ body: string; etag: string } | null> {
    try {
      const response = await this.container.getBlobClient(name).download();
      const chunks: Buffer[] = [];
      for await (const chunk of response.readableStreamBody!) chunks.push(Buffer.from(chunk as Buffer));
      return { body: Buffer.concat(chunks).toString("utf8"), etag: response.etag! };
    } catch (error) {
      if (statusOf(error) === 404) return null;
      throw error;
    }
  }
}

function ignoreNotFound(error: unknown): void {
  if (statusOf(error) !== 404) throw error;
}
