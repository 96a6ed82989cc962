import type { ContainerClient } from "@azure/storage-blob";
import { readBlobText, writeJsonConditionally } from "../blobStore";
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

  writeState(state: DetectionsState, etag: string | null): Promise<string> {
    return writeJsonConditionally(
      this.container,
      DETECTIONS_STATE_BLOB,
      JSON.stringify(state),
      etag,
      (status) => new DetectionsStateConflictError(`The detections state blob changed underneath this run (HTTP ${status}).`),
    );
  }

  async writeLines(name: string, lines: readonly string[]): Promise<void> {
    const body = lines.map((line) => `${line}\n`).join("");
    await this.container.getBlockBlobClient(name).upload(body, Buffer.byteLength(body), {
      blobHTTPHeaders: { blobContentType: "application/x-ndjson" },
    });
  }
}
