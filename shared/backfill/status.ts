import type { StoredState } from "../export/ports";
import { formatAge } from "../checks/schedule";
import { parseTimestampMicros } from "../timestamps";
import type { BackfillManifest, BackfillStore } from "./store";

/** Where a backfill stands, from its manifest and its slices' states (pure; the reads are in readBackfillStatus). */
export type SliceProgress = "done" | "running" | "waiting" | "failed" | "cancelled";

export interface FailedSlice {
  source: string;
  day: string;
  at: string;
  attempts: number;
  error: string;
}

export interface BackfillStatus {
  id: string;
  from: string;
  to: string;
  sinks: BackfillManifest["sinks"];
  sources: string[];
  createdAt: string;
  cancelledAt?: string;
  slices: Record<SliceProgress, number> & { total: number; skipped: number };
  eventsArchived: number;
  /** With both sinks: records Log Analytics accepted (dead-lettered ones not counted). */
  eventsIngested: number;
  /** Events archived per second since the backfill started. */
  eventsPerSecond: number;
  /** Share of the backfill's time range archived, 0..1. */
  progress: number;
  /** Estimated from the progress so far; undefined before any progress, 0 when finished. */
  secondsLeft?: number;
  failed: FailedSlice[];
  /** Every slice done, failed or cancelled: nothing waits or runs. */
  finished: boolean;
  queue?: { waiting: number; poison: number };
}

export function backfillStatus(manifest: BackfillManifest, states: readonly (StoredState | null)[], nowMs: number): BackfillStatus {
  const counts: Record<SliceProgress, number> = { done: 0, running: 0, waiting: 0, failed: 0, cancelled: 0 };
  const failed: FailedSlice[] = [];
  let eventsArchived = 0;
  let eventsIngested = 0;
  let covered = 0;
  manifest.slices.forEach((slice, index) => {
    const state = states[index]?.state;
    const info = state?.backfillSlice;
    const source = state?.sources[slice.source];
    if (source) {
      eventsArchived += source.archivedEvents;
      if (info?.sinks === "both") eventsIngested += Math.max(0, source.logAnalytics.doneEvents - source.logAnalytics.deadLettered);
    }
    eventsIngested += info?.replay?.records ?? 0;
    // With both sinks, a day archived earlier without Log Analytics is done once it was sent from the archive.
    const replayPending = manifest.sinks === "both" && info?.sinks === "archive" && !info.replay?.doneAt;
    let progress: SliceProgress;
    if (info?.doneAt && !replayPending) progress = "done";
    else if (state?.lock && state.lock.expiresAtMs > nowMs) progress = "running";
    else if (info?.failed) progress = "failed";
    else if (manifest.cancelledAt) progress = "cancelled";
    else progress = "waiting";
    counts[progress] += 1;
    if (progress === "failed") failed.push({ source: slice.source, day: slice.day, ...info!.failed! });
    const fromUs = parseTimestampMicros(slice.from)!;
    const toUs = parseTimestampMicros(slice.to)!;
    covered += progress === "done" ? 1 : source && !replayPending ? Math.min(1, Math.max(0, (source.cursor.timeUs - fromUs) / (toUs - fromUs))) : 0;
  });
  const total = manifest.slices.length;
  const progress = total === 0 ? 1 : covered / total;
  const elapsedSeconds = Math.max(1, (nowMs - Date.parse(manifest.createdAt)) / 1000);
  const finished = counts.running === 0 && counts.waiting === 0;
  const secondsLeft = finished ? 0 : progress > 0 ? (elapsedSeconds * (1 - progress)) / progress : undefined;
  return {
    id: manifest.id,
    from: manifest.from,
    to: manifest.to,
    sinks: manifest.sinks,
    sources: manifest.sources,
    createdAt: manifest.createdAt,
    ...(manifest.cancelledAt ? { cancelledAt: manifest.cancelledAt } : {}),
    slices: { ...counts, total, skipped: manifest.skipped },
    eventsArchived,
    eventsIngested,
    eventsPerSecond: Math.round(eventsArchived / elapsedSeconds),
    progress,
    ...(secondsLeft !== undefined ? { secondsLeft: Math.round(secondsLeft) } : {}),
    failed,
    finished,
  };
}

/** The latest backfill's status (or the one named), or null when none was ever started. */
export async function readBackfillStatus(store: BackfillStore, nowMs: number, id?: string): Promise<BackfillStatus | null> {
  const manifest = id ? ((await store.readManifest(id))?.manifest ?? null) : await store.latestManifest();
  if (!manifest) {
    if (id) throw new Error(`No backfill '${id}' (see 'dbx-audit backfill status' for the latest).`);
    return null;
  }
  return backfillStatus(manifest, await store.readSliceStates(manifest.slices), nowMs);
}

export function formatBackfillStatus(status: BackfillStatus): string {
  const s = status.slices;
  const sinks = status.sinks === "both" ? "the archive and Log Analytics" : "the archive";
  const lines = [
    `Backfill ${status.id}: [${status.from}, ${status.to}) of ${status.sources.join(", ")} to ${sinks}, started ${status.createdAt}${status.cancelledAt ? `, cancelled ${status.cancelledAt}` : ""}.`,
    `Slices: ${s.done} done, ${s.running} running, ${s.waiting} waiting, ${s.failed} failed${s.cancelled ? `, ${s.cancelled} cancelled` : ""} (of ${s.total}; ${s.skipped} day(s) already done before it started).`,
    `Events: ${status.eventsArchived.toLocaleString("en-US")} archived${status.sinks === "both" ? `, ${status.eventsIngested.toLocaleString("en-US")} ingested` : ""}; ${status.eventsPerSecond.toLocaleString("en-US")} events/s; ${Math.floor(status.progress * 100)}% of the range; ${
      status.finished ? "finished" : status.secondsLeft !== undefined ? `about ${formatAge(status.secondsLeft * 1000)} left` : "time left not known yet"
    }.`,
  ];
  if (status.queue) lines.push(`Queue: ${status.queue.waiting} message(s) waiting or in flight, ${status.queue.poison} in the poison queue.`);
  for (const f of status.failed.slice(0, 10)) {
    lines.push(`FAILED ${f.source}/${f.day} after ${f.attempts} attempt(s) at ${f.at}: ${f.error}`);
  }
  if (status.failed.length > 10) lines.push(`... and ${status.failed.length - 10} more failed slice(s) (--json lists them all).`);
  if (status.failed.length > 0) {
    lines.push(
      `Fix: remove the cause named above, then run 'dbx-audit backfill start --from ${status.from} --to ${status.to}${status.sinks === "both" ? " --sinks both" : ""}' again: days already done are skipped, failed ones run again.`,
    );
  }
  return lines.join("\n");
}
