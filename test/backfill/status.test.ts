import { describe, expect, it } from "vitest";
import { assessBackfill } from "../../shared/checks/backfill";
import { backfillStatus, formatBackfillStatus } from "../../shared/backfill/status";
import type { BackfillManifest } from "../../shared/backfill/store";
import { initialSourceState, type BackfillSliceInfo, type ExportState } from "../../shared/export/state";
import type { StoredState } from "../../shared/export/ports";

const CREATED = Date.parse("2026-12-07T10:00:00Z");
const days = ["2026-12-01", "2026-12-02", "2026-12-03", "2026-12-04", "2026-12-05"];
const manifest: BackfillManifest = {
  version: 1,
  id: "20261207T100000Z-abc123",
  createdAt: new Date(CREATED).toISOString(),
  from: "2026-12-01T00:00:00.000000Z",
  to: "2026-12-06T00:00:00.000000Z",
  sinks: "both",
  sources: ["default"],
  slices: days.map((day) => ({ source: "default", day, from: `${day}T00:00:00.000000Z`, to: `${next(day)}T00:00:00.000000Z`, accountLevel: true })),
  skipped: 3,
};

function next(day: string): string {
  return new Date(Date.parse(`${day}T00:00:00Z`) + 86_400_000).toISOString().slice(0, 10);
}

function slice(day: string, progress: number, events: number, extra: Partial<BackfillSliceInfo> = {}, lock?: ExportState["lock"]): StoredState {
  const fromUs = Date.parse(`${day}T00:00:00Z`) * 1000;
  const source = { ...initialSourceState(fromUs), archivedEvents: events, cursor: { timeUs: fromUs + progress * 86_400_000_000, eventId: "" } };
  source.logAnalytics = { ...source.logAnalytics, doneEvents: events - 10, deadLettered: 2 };
  const info: BackfillSliceInfo = { backfill: manifest.id, source: "default", day, from: "", to: "", sinks: "both", accountLevel: true, ...extra };
  return { etag: "x", state: { version: 2, lock: lock ?? null, writer: null, sources: { default: source }, backfillSlice: info } };
}

describe("backfillStatus", () => {
  const now = CREATED + 3600_000;
  const states = [
    slice("2026-12-01", 1, 1000, { doneAt: "2026-12-07T10:20:00Z" }),
    slice("2026-12-02", 0.5, 500, {}, { runId: "r", expiresAtMs: now + 60_000 }),
    // A lock past its expiry belongs to a run that died: the slice waits for its message to come back.
    slice("2026-12-03", 0.5, 500, {}, { runId: "dead", expiresAtMs: now - 1 }),
    slice("2026-12-04", 0, 0, { failed: { at: "2026-12-07T10:40:00Z", error: "HTTP 403 AuthorizationPermissionMismatch", attempts: 5 } }),
    null,
  ];

  it("counts done, running, waiting and failed, events archived and ingested, the rate and the time left", () => {
    const status = backfillStatus(manifest, states, now);
    expect(status).toMatchObject({
      slices: { done: 1, running: 1, waiting: 2, failed: 1, cancelled: 0, total: 5, skipped: 3 },
      eventsArchived: 2000,
      // Dead-lettered records are not counted as ingested.
      eventsIngested: 1000 - 12 + 500 - 12 + 500 - 12 + 0,
      eventsPerSecond: Math.round(2000 / 3600),
      progress: 2 / 5,
      // Two fifths of the range in an hour: three fifths take an hour and a half more.
      secondsLeft: 5400,
      finished: false,
    });
    expect(status.failed).toEqual([
      { source: "default", day: "2026-12-04", at: "2026-12-07T10:40:00Z", attempts: 5, error: "HTTP 403 AuthorizationPermissionMismatch" },
    ]);
    const text = formatBackfillStatus(status);
    expect(text).toContain("Slices: 1 done, 1 running, 2 waiting, 1 failed (of 5; 3 day(s) already done before it started).");
    expect(text).toContain("about 90 min left");
    expect(text).toContain("FAILED default/2026-12-04 after 5 attempt(s) at 2026-12-07T10:40:00Z: HTTP 403 AuthorizationPermissionMismatch");
    expect(text).toContain("run 'dbx-audit backfill start --from 2026-12-01T00:00:00.000000Z --to 2026-12-06T00:00:00.000000Z --sinks both' again");
  });

  it("a cancelled backfill's waiting slices are cancelled, and the health check warns about a failed one with the fix", () => {
    const status = backfillStatus({ ...manifest, cancelledAt: "2026-12-07T10:30:00Z" }, states, CREATED + 3600_000);
    expect(status.slices).toMatchObject({ cancelled: 2, waiting: 0, running: 1 });
    const check = assessBackfill(status);
    expect(check.status).toBe("WARN");
    expect(check.detail).toContain("default/2026-12-04 failed after 5 attempt(s): HTTP 403");
    expect(check.remediation).toContain("dbx-audit backfill start --from 2026-12-01T00:00:00.000000Z");
    expect(assessBackfill(null)).toMatchObject({ status: "PASS", detail: expect.stringContaining("No backfill has been started") });
    const done = backfillStatus(
      manifest,
      days.map((day) => slice(day, 1, 10, { doneAt: "2026-12-07T10:50:00Z" })),
      CREATED + 3600_000,
    );
    expect(assessBackfill(done)).toMatchObject({ status: "PASS", detail: expect.stringContaining("finished: 5 done") });
    expect(done).toMatchObject({ finished: true, secondsLeft: 0, progress: 1 });
  });

  it("with both sinks, a day archived earlier without Log Analytics is done only once it was sent from the archive", () => {
    const archived = (replay?: BackfillSliceInfo["replay"]) => [
      slice("2026-12-01", 1, 100, { doneAt: "2026-12-07T10:20:00Z", sinks: "archive", ...(replay ? { replay } : {}) }),
    ];
    const one = { ...manifest, slices: manifest.slices.slice(0, 1) };
    expect(backfillStatus(one, archived(), CREATED + 60_000)).toMatchObject({ slices: { done: 0, waiting: 1 }, eventsIngested: 0, progress: 0 });
    const sending = backfillStatus(one, archived({ lastBlob: "audit/x", sentCalls: 1, records: 40 }), CREATED + 60_000);
    expect(sending).toMatchObject({ slices: { done: 0, waiting: 1 }, eventsIngested: 40 });
    const sent = backfillStatus(one, archived({ lastBlob: "audit/y", sentCalls: 0, records: 100, doneAt: "2026-12-07T10:30:00Z" }), CREATED + 60_000);
    expect(sent).toMatchObject({ slices: { done: 1 }, eventsIngested: 100, finished: true });
  });
});
