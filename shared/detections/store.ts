import type { ContainerClient } from "@azure/storage-blob";
import { statusOf } from "../errors";
import {
  DETECTIONS_STATE_BLOB,
  DetectionsStateConflictError,
  parseDetectionsState,
  type DetectionsState,
  type DetectionsStore,
  type StoredDetectionsState,
} from "./state";

/** The detections' state and alerts in the export container (Blob Storage). */
export class BlobDetectionsStore implements DetectionsStore {
  constructor(private readonly container: ContainerClient) {}

  async readState(): Promise<StoredDetectionsState | null> {
    const text = await readBlobText(this.container, DETECTIONS_STATE_BLOB);
    return text ? { state: parseDetectionsState(text.body), etag: text.etag } : null;
  }

  async writeState(state: DetectionsState, etag: string | null): Promise<string> {
    const body = JSON.stringify(state);
    try {
      const result = await this.container.getBlockBlobClient(DETECTIONS_STATE_BLOB).upload(body, Buffer.byteLength(body), {
        conditions: etag === null ? { ifNoneMatch: "*" } : { ifMatch: etag },
        blobHTTPHeaders: { blobContentType: "application/json" },
      });
      return result.etag!;
    } catch (error) {
      const status = statusOf(error);
      if (status === 412 || status === 409) throw new DetectionsStateConflictError(`The detections state blob changed underneath this run (HTTP ${status}).`);
      throw error;
    }
  }

  async writeLines(name: string, lines: readonly string[]): Promise<void> {
    const body = lines.map((line) => `${line}\n`).join("");
    await this.container.getBlockBlobClient(name).upload(body, Buffer.byteLength(body), {
      blobHTTPHeaders: { blobContentType: "application/x-ndjson" },
    });
  }
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
