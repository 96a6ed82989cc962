import type { StorageContainers } from "../composition";
import { describeError, redactSecrets } from "../errors";
import { BackfillStore } from "../backfill/store";
import { readBackfillStatus, type BackfillStatus } from "../backfill/status";
import { formatAge } from "./schedule";
import type { CheckResult } from "./result";

/**
 * The `backfill` check: the latest backfill's slices (done, running, waiting, failed), events
 * archived and ingested, its rate and the time left, read from its manifest and slice states in
 * Blob (no warehouse session: it is in the quick check too). A slice in the poison queue is a
 * WARN naming the day, its error and the command that runs it again.
 */

const READ_TIMEOUT_MS = 15_000;

type BackfillCheck = Omit<CheckResult, "name"> & { name: "backfill" };

export async function backfillCheck(containers: StorageContainers, nowMs: number): Promise<BackfillCheck> {
  let timer: NodeJS.Timeout | undefined;
  try {
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`reading the backfill's state took longer than ${READ_TIMEOUT_MS / 1000} s`)), READ_TIMEOUT_MS);
    });
    const status = await Promise.race([readBackfillStatus(new BackfillStore(containers.archive, containers.state), nowMs), timeout]);
    return { name: "backfill", ...assessBackfill(status) };
  } catch (error) {
    return {
      name: "backfill",
      status: "WARN",
      detail: `Could not read the backfill's state under _state/backfill/: ${describeError(error)}`,
      remediation: "Retry in a few minutes; 'dbx-audit backfill status' reads the same blobs and says which one is unreadable.",
    };
  } finally {
    clearTimeout(timer);
  }
}

export function assessBackfill(status: BackfillStatus | null): Omit<CheckResult, "name"> {
  if (!status) {
    return {
      status: "PASS",
      detail: "No backfill has been started: the archive begins where the live export began.",
      remediation: "",
    };
  }
  const s = status.slices;
  const events = `${status.eventsArchived} events archived${status.sinks === "both" ? `, ${status.eventsIngested} ingested` : ""}`;
  const slices = `${s.done} done, ${s.running} running, ${s.waiting} waiting, ${s.failed} failed${s.cancelled ? `, ${s.cancelled} cancelled` : ""} of ${s.total} slice(s)`;
  const head = `Backfill ${status.id} of [${status.from}, ${status.to})`;
  if (status.failed.length > 0) {
    const first = status.failed[0]!;
    return {
      status: "WARN",
      detail: `${head}: ${slices}; ${events}. ${first.source}/${first.day} failed after ${first.attempts} attempt(s): ${redactSecrets(first.error)}`,
      remediation: `Those days are not archived: their messages are in the poison queue. Fix the cause above, then run 'dbx-audit backfill start --from ${status.from} --to ${status.to}${status.sinks === "both" ? " --sinks both" : ""}' (or POST /api/backfill) again: days already done are skipped, the failed ones run again.`,
    };
  }
  if (!status.finished) {
    const left = status.secondsLeft !== undefined ? `, about ${formatAge(status.secondsLeft * 1000)} left` : "";
    return { status: "PASS", detail: `${head} is running: ${slices}; ${events}; ${status.eventsPerSecond} events/s${left}.`, remediation: "" };
  }
  return {
    status: "PASS",
    detail: `${head} ${status.cancelledAt ? `was cancelled at ${status.cancelledAt}` : "finished"}: ${slices}; ${events}.`,
    remediation: "",
  };
}
