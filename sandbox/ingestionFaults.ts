/** What the Logs Ingestion stand-in can be told to do wrong (`setFaults`, `POST /admin/faults`), and their validation. */

export interface IngestionFaults {
  /** The next `calls` calls get 429 with `Retry-After` (default 1 s). */
  throttle?: { calls: number; retryAfterSeconds?: number };
  /** After any throttling, the next `calls` calls get `status` (default 503). */
  serverError?: { calls: number; status?: number };
  /** 1-based call numbers, counted since the last setFaults, answered 503. */
  failCallNumbers?: number[];
  /** Answer 403 like a caller without the Monitoring Metrics Publisher role on the DCR. */
  forbidden?: boolean;
  /** Answer 400, storing nothing, for any call holding a record with one of these EventIds: a record the service refuses on its own. */
  rejectEventIds?: string[];
  /**
   * Answer 204 but keep none of these records, as a DCR transform that filters rows would: every
   * Nth record accepted (counted since the last setFaults), and the records with these EventIds.
   */
  drop?: { everyNth?: number; eventIds?: string[] };
}

export function validateFaults(input: unknown): IngestionFaults {
  if (input === null || typeof input !== "object" || Array.isArray(input)) throw new TypeError("faults must be an object");
  const f = input as Record<string, unknown>;
  const out: IngestionFaults = {};
  const count = (value: unknown, what: string): number => {
    if (typeof value !== "number" || !Number.isInteger(value) || value < 0) throw new TypeError(`${what} must be a non-negative integer`);
    return value;
  };
  for (const key of Object.keys(f)) {
    if (!["throttle", "serverError", "failCallNumbers", "forbidden", "rejectEventIds", "drop"].includes(key)) throw new TypeError(`unknown fault '${key}'`);
  }
  if (f.throttle !== undefined) {
    const t = f.throttle as Record<string, unknown>;
    out.throttle = { calls: count(t?.calls, "throttle.calls") };
    if (t.retryAfterSeconds !== undefined) out.throttle.retryAfterSeconds = count(t.retryAfterSeconds, "throttle.retryAfterSeconds");
  }
  if (f.serverError !== undefined) {
    const s = f.serverError as Record<string, unknown>;
    out.serverError = { calls: count(s?.calls, "serverError.calls") };
    if (s.status !== undefined) {
      const status = count(s.status, "serverError.status");
      if (status < 500 || status > 599) throw new TypeError("serverError.status must be 5xx");
      out.serverError.status = status;
    }
  }
  if (f.failCallNumbers !== undefined) {
    if (!Array.isArray(f.failCallNumbers)) throw new TypeError("failCallNumbers must be an array");
    out.failCallNumbers = f.failCallNumbers.map((n) => count(n, "failCallNumbers[]"));
  }
  if (f.forbidden !== undefined) {
    if (typeof f.forbidden !== "boolean") throw new TypeError("forbidden must be a boolean");
    out.forbidden = f.forbidden;
  }
  if (f.rejectEventIds !== undefined) {
    if (!Array.isArray(f.rejectEventIds) || !f.rejectEventIds.every((id) => typeof id === "string"))
      throw new TypeError("rejectEventIds must be an array of strings");
    out.rejectEventIds = f.rejectEventIds;
  }
  if (f.drop !== undefined) out.drop = validateDrop(f.drop);
  return out;
}

function validateDrop(value: unknown): NonNullable<IngestionFaults["drop"]> {
  const drop = value as Record<string, unknown> | null;
  if (drop === null || typeof drop !== "object" || Array.isArray(drop)) throw new TypeError("drop must be an object {everyNth?, eventIds?}");
  const out: NonNullable<IngestionFaults["drop"]> = {};
  if (drop.everyNth !== undefined) {
    if (typeof drop.everyNth !== "number" || !Number.isInteger(drop.everyNth) || drop.everyNth < 1)
      throw new TypeError("drop.everyNth must be a whole number from 1");
    out.everyNth = drop.everyNth;
  }
  if (drop.eventIds !== undefined) {
    if (!Array.isArray(drop.eventIds) || !drop.eventIds.every((id) => typeof id === "string")) throw new TypeError("drop.eventIds must be an array of strings");
    out.eventIds = drop.eventIds;
  }
  return out;
}
