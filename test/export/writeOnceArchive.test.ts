import { readFileSync } from "node:fs";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";
import { BlobServiceClient, type ContainerClient } from "@azure/storage-blob";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startAzurite, type AzuriteBlob } from "../../sandbox/azurite";
import { ensureLocalTls } from "../../sandbox/tls";
import { ArchiveConflictError, BlobExportStore, STATE_BLOB } from "../../shared/blobStore";
import { initialState } from "../../shared/export/state";

/**
 * The archive is write-once, against Azurite through the real storage SDK: an archive blob is
 * created with ifNoneMatch "*", never overwritten; a retry of a blob that already holds the same
 * lines (or every one of them and more) succeeds without writing; different content is refused
 * and left as it was. Everything the export rewrites or deletes is in the state container.
 */
let azurite: AzuriteBlob;
let service: BlobServiceClient;
let suffix = 0;

beforeAll(async () => {
  const tls = await ensureLocalTls();
  azurite = await startAzurite({ tls: { certPath: tls.caCertPath, keyPath: tls.keyPath }, oauth: false });
  service = BlobServiceClient.fromConnectionString(azurite.connectionString);
});
afterAll(async () => {
  await azurite?.close();
});

function containers(): { archive: ContainerClient; state: ContainerClient; store: BlobExportStore } {
  suffix += 1;
  const archive = service.getContainerClient(`archive-${suffix}`);
  const state = service.getContainerClient(`state-${suffix}`);
  return { archive, state, store: new BlobExportStore(archive, state) };
}

const NAME = "audit/workspace=1234/date=2026-01-02/hour=03/scan-1-abc.jsonl.gz";
const line = (eventId: string, extra = ""): Uint8Array => Buffer.from(`${JSON.stringify({ event_id: eventId, action_name: `login${extra}` })}\n`);

async function contentOf(archive: ContainerClient, name: string): Promise<{ text: string; etag: string }> {
  const blob = archive.getBlobClient(name);
  return { text: gunzipSync(await blob.downloadToBuffer()).toString("utf8"), etag: (await blob.getProperties()).etag! };
}

describe("the write-once archive", () => {
  it("creates both containers and writes archive blobs to the archive's, everything else to the state's", async () => {
    const { archive, state, store } = containers();
    await store.ensureContainer();
    expect(await archive.exists()).toBe(true);
    expect(await state.exists()).toBe(true);
    await store.writeArchive(NAME, [line("e1")]);
    await store.writeState(initialState(), null);
    await store.writeDeadLetters("dead-letter/logs-ingestion/x.jsonl", []);
    const names = async (c: ContainerClient): Promise<string[]> => {
      const all: string[] = [];
      for await (const blob of c.listBlobsFlat()) all.push(blob.name);
      return all.sort();
    };
    expect(await names(archive)).toEqual([NAME]);
    expect(await names(state)).toEqual([STATE_BLOB, "dead-letter/logs-ingestion/x.jsonl"]);
    expect(await store.listNames("audit/")).toEqual([NAME]);
    expect((await store.readArchiveLines(NAME))?.map((l) => Buffer.from(l).toString())).toEqual([Buffer.from(line("e1")).toString()]);
  });

  it("takes a retry of a blob that holds the same lines as done, and writes nothing", async () => {
    const { archive, store } = containers();
    await store.ensureContainer();
    const lines = [line("e1"), line("e2")];
    const size = await store.writeArchive(NAME, lines);
    const before = await contentOf(archive, NAME);
    expect(await store.writeArchive(NAME, lines)).toBe(size);
    expect(await contentOf(archive, NAME)).toEqual(before);
  });

  it("keeps a blob that holds every line and more (events gone from the table before a resumed batch)", async () => {
    const { archive, store } = containers();
    await store.ensureContainer();
    await store.writeArchive(NAME, [line("e1"), line("e2"), line("e3")]);
    const before = await contentOf(archive, NAME);
    await store.writeArchive(NAME, [line("e1"), line("e3")]);
    expect(await contentOf(archive, NAME)).toEqual(before);
  });

  it("refuses different content with a clear error and leaves the blob as it was", async () => {
    const { archive, store } = containers();
    await store.ensureContainer();
    await store.writeArchive(NAME, [line("e1"), line("e2")]);
    const before = await contentOf(archive, NAME);
    for (const other of [
      [line("e1"), line("e9")],
      [line("e1"), line("e2", " changed")],
    ]) {
      const error = await store.writeArchive(NAME, other).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(ArchiveConflictError);
      expect((error as Error).message).toMatch(/^The archive blob audit\/workspace=1234\/.* already exists and holds other content .* never overwritten/);
      expect(await contentOf(archive, NAME)).toEqual(before);
      // The section the message sends the reader to exists.
      const section = /TROUBLESHOOTING\.md, "([^"]+)"/.exec((error as Error).message)?.[1];
      expect(readFileSync(join(__dirname, "..", "..", "TROUBLESHOOTING.md"), "utf8")).toContain(`## ${section!}`);
    }
  });

  it("never deletes an archive blob", async () => {
    const { archive, store } = containers();
    await store.ensureContainer();
    await store.writeArchive(NAME, [line("e1")]);
    await expect(store.deletePaths([NAME])).rejects.toThrow(/Refusing to delete archive blobs \(the archive is write-once\)/);
    expect(await archive.getBlobClient(NAME).exists()).toBe(true);
  });

  it("keeps everything in one container when no state container is given, as before", async () => {
    suffix += 1;
    const single = service.getContainerClient(`single-${suffix}`);
    const store = new BlobExportStore(single);
    await store.ensureContainer();
    await store.writeArchive(NAME, [line("e1")]);
    await store.writeState(initialState(), null);
    expect((await store.readState())?.state).toEqual(initialState());
    expect(await single.getBlobClient(NAME).exists()).toBe(true);
    expect(await single.getBlobClient(STATE_BLOB).exists()).toBe(true);
  });
});
