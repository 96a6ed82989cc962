import { MICROS_PER_HOUR, hourIndexOf, microsToIso } from "../timestamps";

/**
 * Account-level events (`workspace_id` "0") appear in the audit table of every region, with
 * the same `event_id`; workspace events only in their own region's. With several sources,
 * each account-level event must reach each sink once, whichever region returns it first and
 * however late the other copies arrive.
 *
 * The archive claims each account-level event for the source that archives it, before it
 * writes the event, in a claims blob per hour of event time. A source that meets an event
 * another source claimed skips it (its late-row ledger still counts it as covered, so it is
 * never fetched again); one that meets its own claim (a batch resumed after a crash) archives
 * it again, to the same blob names. Claims are written only by the run holding the export's
 * lock, conditionally on their ETag, and are kept as long as the late-row horizon needs them.
 * Workspace events never go through claims: only the same event_id is the same event.
 */

export const ACCOUNT_WORKSPACE_ID = "0";

/** One hour's claims: per source, the account-level event_ids it archived (or is archiving). */
export interface HourClaims {
  version: 1;
  claims: Record<string, string[]>;
}

export interface StoredClaims {
  claims: HourClaims;
  etag: string;
}

export interface ClaimsStore {
  readClaims(hour: number): Promise<StoredClaims | null>;
  /** Conditional write (`etag` null: must not exist yet); returns the new ETag. Throws ClaimsConflictError on 409/412. */
  writeClaims(hour: number, claims: HourClaims, etag: string | null): Promise<string>;
  deleteClaims(hours: readonly number[]): Promise<void>;
  /** The hours that have a claims blob. */
  listClaimHours(): Promise<number[]>;
}

export class ClaimsConflictError extends Error {
  override readonly name = "ClaimsConflictError";
}

/** Where an hour's claims live: `_state/account-events/YYYY-MM-DD/HH.json`. */
export function claimsBlobName(hour: number): string {
  const iso = microsToIso(hour * MICROS_PER_HOUR);
  return `_state/account-events/${iso.slice(0, 10)}/${iso.slice(11, 13)}.json`;
}

export function hourOfClaimsBlob(name: string): number | undefined {
  const match = /^_state\/account-events\/(\d{4}-\d{2}-\d{2})\/(\d{2})\.json$/.exec(name);
  if (!match) return undefined;
  const ms = Date.parse(`${match[1]}T${match[2]}:00:00Z`);
  return Number.isNaN(ms) ? undefined : hourIndexOf(ms * 1000);
}

interface CachedHour {
  owners: Map<string, string>;
  claims: HourClaims;
  etag: string | null;
}

/** Hours kept in memory at once: a run's batches move forward in time, so older hours are rarely needed again. */
const CACHED_HOURS = 48;

/** The claims of one run, shared by every source's archiver. */
export class AccountEventClaims {
  private readonly hours = new Map<number, CachedHour>();
  private readonly busy = new Map<number, Promise<unknown>>();

  constructor(
    private readonly store: ClaimsStore,
    /** Throws when the run no longer holds the export's lock: nothing is claimed after that. */
    private readonly confirmHeld: () => Promise<void>,
  ) {}

  /**
   * Claims the account-level events among `events` for `source`; returns the event_ids
   * another source has already claimed (the caller skips them).
   */
  async claim(source: string, events: readonly { eventId: string; timeUs: number; workspaceId: string | null }[]): Promise<Set<string>> {
    const byHour = new Map<number, string[]>();
    for (const event of events) {
      if (event.workspaceId !== ACCOUNT_WORKSPACE_ID) continue;
      const hour = hourIndexOf(event.timeUs);
      let ids = byHour.get(hour);
      if (!ids) byHour.set(hour, (ids = []));
      ids.push(event.eventId);
    }
    const taken = new Set<string>();
    for (const [hour, ids] of byHour) {
      for (const id of await this.exclusively(hour, () => this.claimHour(source, hour, ids))) taken.add(id);
    }
    return taken;
  }

  /** Deletes the claims blobs of hours before `beforeHour` (past every source's late-row horizon). */
  async forgetBefore(beforeHour: number): Promise<number> {
    const old = (await this.store.listClaimHours()).filter((hour) => hour < beforeHour);
    for (const hour of old) this.hours.delete(hour);
    await this.store.deleteClaims(old);
    return old.length;
  }

  private async claimHour(source: string, hour: number, ids: readonly string[]): Promise<string[]> {
    const cached = await this.load(hour);
    const taken: string[] = [];
    const mine: string[] = [];
    for (const id of ids) {
      const owner = cached.owners.get(id);
      if (owner === undefined) mine.push(id);
      else if (owner !== source) taken.push(id);
    }
    if (mine.length > 0) {
      const next: HourClaims = { version: 1, claims: { ...cached.claims.claims, [source]: [...(cached.claims.claims[source] ?? []), ...mine] } };
      await this.confirmHeld();
      cached.etag = await this.store.writeClaims(hour, next, cached.etag);
      cached.claims = next;
      for (const id of mine) cached.owners.set(id, source);
    }
    return taken;
  }

  private async load(hour: number): Promise<CachedHour> {
    const cached = this.hours.get(hour);
    if (cached) {
      // Most recently used last: the oldest entry is the one to drop.
      this.hours.delete(hour);
      this.hours.set(hour, cached);
      return cached;
    }
    const stored = await this.store.readClaims(hour);
    const claims = stored?.claims ?? { version: 1, claims: {} };
    const owners = new Map<string, string>();
    for (const [source, ids] of Object.entries(claims.claims)) for (const id of ids) if (!owners.has(id)) owners.set(id, source);
    const entry: CachedHour = { owners, claims, etag: stored?.etag ?? null };
    this.hours.set(hour, entry);
    while (this.hours.size > CACHED_HOURS) this.hours.delete(this.hours.keys().next().value!);
    return entry;
  }

  /** One claim at a time per hour: two sources archiving the same hour at once never both win an event. */
  private exclusively<T>(hour: number, work: () => Promise<T>): Promise<T> {
    const previous = this.busy.get(hour) ?? Promise.resolve();
    const result = previous.then(work, work);
    const settled = result.catch(() => undefined);
    this.busy.set(hour, settled);
    void settled.then(() => {
      if (this.busy.get(hour) === settled) this.busy.delete(hour);
    });
    return result;
  }
}

/** Parses a claims blob; a malformed one fails loudly (skipping it could duplicate events). */
export function parseClaims(text: string, name: string): HourClaims {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new Error(
      `The account-event claims blob ${name} is not valid JSON. Restore it from a blob version, or delete it (account-level events of that hour may then repeat).`,
    );
  }
  const claims = value as HourClaims;
  if (
    claims?.version !== 1 ||
    typeof claims.claims !== "object" ||
    claims.claims === null ||
    !Object.values(claims.claims).every((ids) => Array.isArray(ids) && ids.every((id) => typeof id === "string"))
  ) {
    throw new Error(`The account-event claims blob ${name} is malformed (expected {version: 1, claims: {source: [event_id, ...]}}).`);
  }
  return claims;
}
