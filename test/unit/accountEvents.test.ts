import { describe, expect, it } from "vitest";
import {
  AccountEventClaims,
  ClaimsConflictError,
  claimsBlobName,
  hourOfClaimsBlob,
  parseClaims,
  type ClaimsStore,
  type HourClaims,
  type StoredClaims,
} from "../../shared/export/accountEvents";
import { hourIndexOf } from "../../shared/timestamps";

/** Claims kept in memory, with ETags and conditional writes as Blob Storage does them. */
class MemoryClaims implements ClaimsStore {
  readonly blobs = new Map<number, { body: string; etag: string }>();
  writes = 0;
  private version = 0;

  readClaims(hour: number): Promise<StoredClaims | null> {
    const blob = this.blobs.get(hour);
    return Promise.resolve(blob ? { claims: parseClaims(blob.body, claimsBlobName(hour)), etag: blob.etag } : null);
  }

  async writeClaims(hour: number, claims: HourClaims, etag: string | null): Promise<string> {
    await new Promise((resolve) => setTimeout(resolve, 1));
    const current = this.blobs.get(hour);
    if ((etag === null && current) || (etag !== null && current?.etag !== etag)) throw new ClaimsConflictError("412");
    this.writes += 1;
    const next = { body: JSON.stringify(claims), etag: `"${++this.version}"` };
    this.blobs.set(hour, next);
    return next.etag;
  }

  deleteClaims(hours: readonly number[]): Promise<void> {
    for (const hour of hours) this.blobs.delete(hour);
    return Promise.resolve();
  }

  listClaimHours(): Promise<number[]> {
    return Promise.resolve([...this.blobs.keys()]);
  }
}

const T0 = Date.parse("2026-05-01T10:00:00Z") * 1000;
const account = (id: string, offsetMin = 0) => ({ eventId: id, timeUs: T0 + offsetMin * 60_000_000, workspaceId: "0" });
const workspace = (id: string) => ({ eventId: id, timeUs: T0, workspaceId: "1234" });
const held = () => Promise.resolve();

describe("account-event claims", () => {
  it("give each account-level event to the first source that claims it, even when two claim at once", async () => {
    const store = new MemoryClaims();
    const claims = new AccountEventClaims(store, held);
    const events = Array.from({ length: 50 }, (_, i) => account(`a${i}`, i));
    const [west, east] = await Promise.all([claims.claim("west", events), claims.claim("east", events)]);
    expect(west.size + east.size).toBe(50);
    expect([...west].filter((id) => east.has(id))).toEqual([]);
    // Every event is claimed once, all in the 10:00 hour's blob.
    const stored = parseClaims(store.blobs.get(hourIndexOf(T0))!.body, "x");
    expect(Object.values(stored.claims).flat().sort()).toEqual(events.map((e) => e.eventId).sort());
  });

  it("never claims workspace events: only the same event_id is the same event", async () => {
    const claims = new AccountEventClaims(new MemoryClaims(), held);
    expect(await claims.claim("west", [workspace("w1")])).toEqual(new Set());
    expect(await claims.claim("east", [workspace("w1")])).toEqual(new Set());
  });

  it("lets a source claim its own events again (a batch resumed after a crash), in a later run too", async () => {
    const store = new MemoryClaims();
    await new AccountEventClaims(store, held).claim("west", [account("a1"), account("a2")]);
    const nextRun = new AccountEventClaims(store, held);
    expect(await nextRun.claim("west", [account("a1"), account("a2"), account("a3")])).toEqual(new Set());
    expect(await nextRun.claim("east", [account("a1"), account("a3"), account("a4")])).toEqual(new Set(["a1", "a3"]));
    expect(store.writes).toBe(3);
  });

  it("claims nothing once the run no longer holds the lock", async () => {
    const store = new MemoryClaims();
    const claims = new AccountEventClaims(store, () => Promise.reject(new Error("lock lost")));
    await expect(claims.claim("west", [account("a1")])).rejects.toThrow("lock lost");
    expect(store.blobs.size).toBe(0);
  });

  it("fails on a claims blob another writer changed, instead of overwriting its claims", async () => {
    const store = new MemoryClaims();
    const claims = new AccountEventClaims(store, held);
    await claims.claim("west", [account("a1")]);
    await new AccountEventClaims(store, held).claim("east", [account("a2")]);
    await expect(claims.claim("west", [account("a3")])).rejects.toBeInstanceOf(ClaimsConflictError);
  });

  it("forgets hours before a bound, and names its blobs by hour", async () => {
    const store = new MemoryClaims();
    const claims = new AccountEventClaims(store, held);
    await claims.claim("west", [account("a1"), account("a2", 90), account("a3", 200)]);
    expect(await claims.forgetBefore(hourIndexOf(T0) + 1)).toBe(1);
    expect([...store.blobs.keys()].sort()).toEqual([hourIndexOf(T0) + 1, hourIndexOf(T0) + 3]);
    expect(claimsBlobName(hourIndexOf(T0))).toBe("_state/account-events/2026-05-01/10.json");
    expect(hourOfClaimsBlob("_state/account-events/2026-05-01/10.json")).toBe(hourIndexOf(T0));
    expect(() => parseClaims('{"version":1,"claims":{"west":[1]}}', "x")).toThrow(/malformed/);
  });
});
