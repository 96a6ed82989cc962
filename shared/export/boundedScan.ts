import type { EventKey } from "../auditQueries";
import type { AuditFilter } from "../config";
import type { PreparedEvent, Preparation } from "./batching";
import type { AuditSource } from "./ports";

/**
 * Reads a key range as a series of bounded queries: each covers a slice of event_time and
 * returns at most `rows` rows, so a backfill of months never asks the warehouse to sort the
 * whole remaining window when a run uses only twenty minutes of it. A slice that comes back
 * full continues from its last key with a narrower span; a sparse one widens the next span,
 * so quiet periods are crossed in few queries. A query that fails with a recoverable error
 * (an expired CloudFetch link) is issued again from the last key already handed over.
 */
export interface SliceLimits {
  /** Most rows one query returns. */
  rows: number;
  initialSpanMs: number;
  minSpanMs: number;
  maxSpanMs: number;
}

export const DEFAULT_SLICE_LIMITS: SliceLimits = {
  rows: 200_000,
  initialSpanMs: 3600_000,
  minSpanMs: 60_000,
  maxSpanMs: 7 * 86_400_000,
};

export interface BoundedScanRequest {
  filter: AuditFilter;
  after: EventKey;
  toUs: number;
  preparation: Preparation;
  limits?: SliceLimits;
  /** True for an error after which the query may simply be issued again from the last key. */
  isRecoverable?: (error: unknown) => boolean;
  onRecovered?: (error: unknown) => void;
}

const MAX_RECOVERIES = 5;

export async function* boundedScan(source: AuditSource, request: BoundedScanRequest): AsyncGenerator<PreparedEvent[]> {
  const limits = request.limits ?? DEFAULT_SLICE_LIMITS;
  let from = request.after;
  let spanUs = limits.initialSpanMs * 1000;
  let recoveries = 0;
  while (from.timeUs < request.toUs) {
    const sliceEnd = Math.min(request.toUs, from.timeUs + spanUs);
    let rows = 0;
    let last: EventKey | undefined;
    try {
      for await (const chunk of source.scan({ filter: request.filter, after: from, toUs: sliceEnd, preparation: request.preparation, limit: limits.rows })) {
        if (chunk.length === 0) continue;
        rows += chunk.length;
        const end = chunk[chunk.length - 1]!;
        last = { timeUs: end.timeUs, eventId: end.eventId };
        yield chunk;
      }
    } catch (error) {
      if (!request.isRecoverable?.(error) || recoveries >= MAX_RECOVERIES) throw error;
      recoveries += 1;
      request.onRecovered?.(error);
      if (last) from = last;
      continue;
    }
    if (rows >= limits.rows && last) {
      from = last;
      spanUs = Math.max(limits.minSpanMs * 1000, Math.floor(spanUs / 2));
    } else {
      from = { timeUs: sliceEnd, eventId: "" };
      if (rows < limits.rows / 4) spanUs = Math.min(limits.maxSpanMs * 1000, spanUs * 2);
    }
  }
}
