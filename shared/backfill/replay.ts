import type { BlobExportStore } from "../blobStore";
import type { IngestionSink, ExportLog } from "../export/ports";
import { LockedState } from "../export/lockedState";
import { cutCalls } from "../export/batching";
import { sentinelRecordFromLine } from "../sentinelRecord";
import type { BackfillSliceInfo } from "../export/state";

/**
 * The cheap path's second half: a day backfilled with `--sinks archive`, sent to Log Analytics
 * later from the archive, not the warehouse (`dbx-audit backfill start --sinks both` over it).
 * The slice's archive blobs (its batches, recorded when it finished) are sent in name order, in
 * calls under the 1 MB limit; the slice's state, under its lock, records the last blob sent and
 * the calls of the next one the service confirmed, so a crash or a redelivery sends each call
 * once, but for the call in flight when it died (the Logs Ingestion API has no idempotency key,
 * as for the live export).
 */

export interface ReplayOutcome {
  /** "done": every blob sent; "continue": the time budget ran out first. */
  status: "done" | "continue";
  records: number;
}

export async function replaySlice(
  source: string,
  store: BlobExportStore,
  sink: IngestionSink,
  options: { lockTtlMs: number; now: () => number; timeBudgetMs: number; log: ExportLog; runId: string },
): Promise<ReplayOutcome> {
  const locked = new LockedState(store, options.runId, options.lockTtlMs, options.now, options.log);
  await locked.acquire();
  const startedAt = options.now();
  let records = 0;
  try {
    const info = (): BackfillSliceInfo => locked.state.backfillSlice!;
    const batches = info().batches;
    if (!batches) {
      throw new Error(
        `Backfill slice ${source}/${info().day} was archived by a version that did not record its batches; send the day with 'dbx-audit reconcile --since ${info().from} --until ${info().to} --resend' instead.`,
      );
    }
    const wanted = new Set(batches);
    const names = (await blobsOfDay(store, info().day)).filter((name) => wanted.has(batchOf(name)));
    for (const name of names) {
      const replay = progressOf(info());
      if (name <= replay.lastBlob) continue;
      const lines = (await store.readArchiveLines(name)) ?? [];
      const sendable = lines.map((line) => sentinelRecordFromLine(line));
      const calls = cutCalls(sendable.map((record) => Buffer.byteLength(JSON.stringify(record))));
      for (let index = replay.sentCalls; index < calls.length; index += 1) {
        if (options.now() - startedAt >= options.timeBudgetMs) return { status: "continue", records };
        const call = calls[index]!;
        await locked.confirmHeld();
        await sink.send(sendable.slice(call.start, call.end));
        records += call.end - call.start;
        await saveProgress(locked, (current) => ({ sentCalls: index + 1, records: current.records + (call.end - call.start) }));
      }
      await saveProgress(locked, () => ({ lastBlob: name, sentCalls: 0 }));
    }
    await saveProgress(locked, () => ({ doneAt: new Date(options.now()).toISOString() }));
    return { status: "done", records };
  } finally {
    locked.stop();
    await locked.release(() => undefined).catch(() => undefined);
  }
}

type ReplayProgress = NonNullable<BackfillSliceInfo["replay"]>;

function progressOf(info: BackfillSliceInfo): ReplayProgress {
  return info.replay ?? { lastBlob: "", sentCalls: 0, records: 0 };
}

/** Records a step of the replay in the slice's state (under its lock); resolves once it is written. */
function saveProgress(locked: LockedState, change: (current: ReplayProgress) => Partial<ReplayProgress>): Promise<void> {
  return locked.save((state) => {
    const current = progressOf(state.backfillSlice!);
    state.backfillSlice!.replay = { ...current, ...change(current) };
  });
}

/** Every archive blob of a UTC day, across workspaces, in name order. */
async function blobsOfDay(store: BlobExportStore, day: string): Promise<string[]> {
  const names: string[] = [];
  for (const workspace of (await store.listPrefixes("audit/")).sort()) names.push(...(await store.listNames(`${workspace}date=${day}/`)));
  return names.sort();
}

/** The batch id an archive blob's name ends with: `.../<batch>.jsonl.gz`. */
function batchOf(name: string): string {
  return name.slice(name.lastIndexOf("/") + 1).replace(/\.jsonl\.gz$/, "");
}
