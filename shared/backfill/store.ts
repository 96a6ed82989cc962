import type { ContainerClient } from "@azure/storage-blob";
import { BlobExportStore, readBlobText, writeJsonConditionally } from "../blobStore";
import { parseState, type ExportState } from "../export/state";
import { statusOf } from "../errors";
import { mapConcurrently } from "../concurrency";
import { StateConflictError, type StoredState } from "../export/ports";
import type { Sinks, SliceRef } from "./plan";

/**
 * Where a backfill keeps what it knows, in the state container next to the live export's state:
 *  - `_state/backfill/runs/<id>.json`: each backfill's manifest (range, sinks, slices, cancelled);
 *  - `_state/backfill/slices/<source>/<day>.json`: each slice's own export state, one per
 *    (source, UTC day) whichever backfill runs it, written only conditionally (ETag), as the
 *    live export's. Its batch ledgers and journal live under its own journal folder.
 * The archive's blobs go to the same container and partitioned layout as the live export's.
 */

export const BACKFILL_RUNS_PREFIX = "_state/backfill/runs/";
export const BACKFILL_SLICES_PREFIX = "_state/backfill/slices/";

export interface BackfillManifest {
  version: 1;
  id: string;
  createdAt: string;
  from: string;
  to: string;
  sinks: Sinks;
  sources: string[];
  slices: SliceRef[];
  /** Days already done (by an earlier backfill) when this one started: not enqueued again. */
  skipped: number;
  cancelledAt?: string;
}

export function sliceStateBlob(source: string, day: string): string {
  return `${BACKFILL_SLICES_PREFIX}${source}/${day}.json`;
}

/** The journal folder of a slice (under `_state/journal/`), apart from the live export's. */
export function sliceJournal(source: string, day: string): string {
  return `backfill/${source}/${day}`;
}

export class BackfillStore {
  constructor(
    readonly archive: ContainerClient,
    readonly state: ContainerClient,
  ) {}

  /** The export store of one slice: the same archive, the slice's own state blob. */
  sliceStore(source: string, day: string): BlobExportStore {
    return new BlobExportStore(this.archive, this.state, sliceStateBlob(source, day));
  }

  async readManifest(id: string): Promise<{ manifest: BackfillManifest; etag: string } | null> {
    const text = await readBlobText(this.state, `${BACKFILL_RUNS_PREFIX}${id}.json`);
    if (!text) return null;
    return { manifest: parseManifest(text.body, id), etag: text.etag };
  }

  /** Conditional: `etag` null creates it (must not exist). */
  writeManifest(manifest: BackfillManifest, etag: string | null): Promise<string> {
    return writeJsonConditionally(
      this.state,
      `${BACKFILL_RUNS_PREFIX}${manifest.id}.json`,
      JSON.stringify(manifest),
      etag,
      (status) => new StateConflictError(`The backfill manifest ${manifest.id} changed underneath this call (HTTP ${status}); try again.`),
    );
  }

  /** Every backfill's id, oldest first (ids sort by start time). */
  async listBackfills(): Promise<string[]> {
    const ids: string[] = [];
    for (const name of await this.names(BACKFILL_RUNS_PREFIX)) {
      const match = /^_state\/backfill\/runs\/(.+)\.json$/.exec(name);
      if (match) ids.push(match[1]!);
    }
    return ids.sort();
  }

  async latestManifest(): Promise<BackfillManifest | null> {
    const ids = await this.listBackfills();
    const last = ids[ids.length - 1];
    return last ? ((await this.readManifest(last))?.manifest ?? null) : null;
  }

  async readSliceState(source: string, day: string): Promise<StoredState | null> {
    const text = await readBlobText(this.state, sliceStateBlob(source, day));
    if (!text) return null;
    return { state: parseState(text.body), etag: text.etag };
  }

  /**
   * A change to a slice's state as it was read: written only if nobody wrote it since (its ETag).
   * False when another writer won; the caller decides whether to read again.
   */
  async changeSliceState(source: string, day: string, stored: StoredState, change: (state: ExportState) => void): Promise<boolean> {
    const state = structuredClone(stored.state);
    change(state);
    try {
      await this.writeSliceState(source, day, state, stored.etag);
      return true;
    } catch (error) {
      if (error instanceof StateConflictError) return false;
      throw error;
    }
  }

  /** Conditional write of a slice's state (`etag` null: create). Throws StateConflictError when another writer won. */
  writeSliceState(source: string, day: string, state: ExportState, etag: string | null): Promise<string> {
    return this.sliceStore(source, day).writeState(state, etag);
  }

  /**
   * The UTC days of [fromMs, toMs) a backfill covers, as reconciliation explains their missing
   * rows: "archive_only" when a slice of the day was done with --sinks archive (and not sent
   * since), "not_yet_sent" while one is not finished or is being sent from the archive.
   */
  async daysOf(fromMs: number, toMs: number): Promise<Map<string, "archive_only" | "not_yet_sent">> {
    const first = new Date(fromMs).toISOString().slice(0, 10);
    const last = new Date(toMs - 1).toISOString().slice(0, 10);
    const slices: { source: string; day: string }[] = [];
    for (const name of await this.names(BACKFILL_SLICES_PREFIX)) {
      const match = /^_state\/backfill\/slices\/([^/]+)\/(\d{4}-\d{2}-\d{2})\.json$/.exec(name);
      if (match && match[2]! >= first && match[2]! <= last) slices.push({ source: match[1]!, day: match[2]! });
    }
    const days = new Map<string, "archive_only" | "not_yet_sent">();
    for (const [index, stored] of (await this.readSliceStates(slices)).entries()) {
      const info = stored?.state.backfillSlice;
      if (!info) continue;
      const day = slices[index]!.day;
      if (!info.doneAt || (info.replay && !info.replay.doneAt)) days.set(day, "not_yet_sent");
      else if (info.sinks === "archive" && !info.replay && days.get(day) !== "not_yet_sent") days.set(day, "archive_only");
    }
    return days;
  }

  /** Blob names under a prefix of the state container; none when the container does not exist yet. */
  private async names(prefix: string): Promise<string[]> {
    const names: string[] = [];
    try {
      for await (const blob of this.state.listBlobsFlat({ prefix })) names.push(blob.name);
    } catch (error) {
      if (statusOf(error) !== 404) throw error;
    }
    return names;
  }

  /** The states of many slices, a few reads at a time; missing ones are null. */
  readSliceStates(slices: readonly { source: string; day: string }[], concurrency = 16): Promise<(StoredState | null)[]> {
    return mapConcurrently(slices, concurrency, (slice) => this.readSliceState(slice.source, slice.day));
  }
}

function parseManifest(text: string, id: string): BackfillManifest {
  let value: BackfillManifest;
  try {
    value = JSON.parse(text) as BackfillManifest;
  } catch {
    throw new Error(
      `The backfill manifest ${BACKFILL_RUNS_PREFIX}${id}.json is not valid JSON; delete it and start the backfill again (days already done are kept).`,
    );
  }
  if (value?.version !== 1 || !Array.isArray(value.slices) || typeof value.id !== "string") {
    throw new Error(
      `The backfill manifest ${BACKFILL_RUNS_PREFIX}${id}.json is malformed; delete it and start the backfill again (days already done are kept).`,
    );
  }
  return value;
}
