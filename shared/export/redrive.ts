import { describeError, statusOf } from "../errors";
import { MAX_CALL_BYTES } from "../sentinelRecord";
import type { DeadLetter, IngestionSink } from "./ports";

/**
 * Re-sends dead-lettered records once their cause is fixed: each dead-letter blob's records
 * go to Log Analytics again, in calls under the 1 MB limit, one record at a time for a call
 * refused again so that only records still refused stay behind. A blob all of whose records
 * were accepted is deleted; otherwise it is rewritten with the records still refused and
 * their new reason. Records are never sent twice by one re-drive, and a blob is only deleted
 * after its records were accepted.
 */
export interface DeadLetterStore {
  listDeadLetters(): Promise<string[]>;
  readDeadLetters(name: string): Promise<DeadLetter[]>;
  writeDeadLetters(name: string, letters: readonly DeadLetter[]): Promise<string>;
  deletePaths(names: readonly string[]): Promise<void>;
}

export interface RedriveResult {
  blobs: number;
  accepted: number;
  stillRefused: number;
  /** Blobs still holding records after this re-drive. */
  remaining: string[];
}

export async function redriveDeadLetters(store: DeadLetterStore, sink: IngestionSink, options: { dryRun?: boolean } = {}): Promise<RedriveResult> {
  const result: RedriveResult = { blobs: 0, accepted: 0, stillRefused: 0, remaining: [] };
  for (const name of await store.listDeadLetters()) {
    result.blobs += 1;
    const letters = await store.readDeadLetters(name);
    if (options.dryRun) {
      result.remaining.push(name);
      continue;
    }
    const refused: DeadLetter[] = [];
    for (const call of callsOf(letters)) {
      try {
        await sink.send(call.map((letter) => letter.record));
        result.accepted += call.length;
      } catch {
        for (const letter of call) {
          try {
            await sink.send([letter.record]);
            result.accepted += 1;
          } catch (error) {
            refused.push({ ...letter, reason: describeError(error), status: statusOf(error) ?? null });
          }
        }
      }
    }
    result.stillRefused += refused.length;
    if (refused.length === 0) {
      await store.deletePaths([name]);
    } else {
      await store.writeDeadLetters(name, refused);
      result.remaining.push(name);
    }
  }
  return result;
}

function callsOf(letters: readonly DeadLetter[]): DeadLetter[][] {
  const calls: DeadLetter[][] = [];
  let bytes = 0;
  for (const letter of letters) {
    const size = Buffer.byteLength(JSON.stringify(letter.record));
    const current = calls[calls.length - 1];
    if (!current || bytes + size >= MAX_CALL_BYTES) {
      calls.push([letter]);
      bytes = size;
    } else {
      current.push(letter);
      bytes += size;
    }
  }
  return calls;
}

export const DEAD_LETTER_PREFIX = "dead-letter/logs-ingestion/";
