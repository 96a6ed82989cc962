import { describe, expect, it } from "vitest";
import type { BoundQuery } from "../../shared/auditQueries";
import type { AlertRecord } from "../../shared/detections/alerts";
import { builtInDetection } from "../../shared/detections/catalog";
import { formatDetectionsSummary, runDetections, runProblems, type AlertsSink, type DetectionsRunOptions } from "../../shared/detections/runner";
import { DetectionsStateConflictError, type DetectionsState, type DetectionsStore } from "../../shared/detections/state";
import { ConcurrentRunError } from "../../shared/errors";
import { microsToIso } from "../../shared/timestamps";

/** The runner's protocol with in-memory ports: crashes at any write, in milliseconds. */
const HOUR_US = 3_600_000_000;
const NOW = Date.parse("2025-10-02T12:20:00Z");
const detection = builtInDetection("repeated_failed_login_attempts")!;
const options: DetectionsRunOptions = { detections: [detection], workspaceIds: [], settleDelayMs: 600_000, lateHorizonMs: 24 * 3_600_000 };

class MemoryStore implements DetectionsStore {
  state: { text: string; etag: string } | null = null;
  blobs = new Map<string, string[]>();
  writes = 0;
  /** The process "dies" at this state write: it and every write after it fail, until revived. */
  crashAtStateWrite?: number;
  stateWrites = 0;
  dead = false;

  readState() {
    return Promise.resolve(this.state ? { state: JSON.parse(this.state.text) as DetectionsState, etag: this.state.etag } : null);
  }
  writeState(state: DetectionsState, etag: string | null) {
    this.stateWrites += 1;
    if (this.stateWrites === this.crashAtStateWrite) this.dead = true;
    if (this.dead) return Promise.reject(new Error("simulated crash"));
    if ((this.state?.etag ?? null) !== etag) return Promise.reject(new DetectionsStateConflictError("412"));
    this.state = { text: JSON.stringify(state), etag: `e${++this.writes}` };
    return Promise.resolve(this.state.etag);
  }
  writeLines(name: string, lines: readonly string[]) {
    if (this.dead) return Promise.reject(new Error("simulated crash"));
    this.blobs.set(name, [...lines]);
    return Promise.resolve();
  }
}

class Sink implements AlertsSink {
  received: AlertRecord[] = [];
  refuse = false;
  send(records: AlertRecord[]) {
    if (this.refuse) return Promise.resolve({ failedIds: records.map((r) => r.AlertId), error: "HTTP 403" });
    this.received.push(...records);
    return Promise.resolve({ failedIds: [] });
  }
}

/** Rows as the warehouse answers: one alerting group in the hour before the evaluation end. */
function source(emails: string[]) {
  const queries: BoundQuery[] = [];
  return {
    queries,
    all(query: BoundQuery) {
      queries.push(query);
      const index = Math.floor((NOW * 1000) / HOUR_US) - 2;
      return Promise.resolve(
        emails.map((email, i) => ({
          window_index: index,
          g_email: email,
          measure_value: 2,
          event_count: 2,
          first_event_us: index * HOUR_US + i,
          last_event_us: index * HOUR_US + 10 + i,
          principals: [email],
          source_ips: [],
          workspaces: ["1"],
          sample_event_ids: [`e-${email}`],
        })),
      );
    },
  };
}

const log = { info: () => undefined, warn: () => undefined };

describe("runDetections protocol", () => {
  it("after a crash between the Blob writes and the state write, the next run rewrites the same blobs and raises each alert once", async () => {
    const store = new MemoryStore();
    const sink = new Sink();
    store.crashAtStateWrite = 2; // 1: the lock; 2: the state after the detection's alerts reached Blob
    await expect(runDetections(options, { sources: [{ name: "default", source: source(["a@x"]) }], store, alerts: sink, now: () => NOW, log })).rejects.toThrow(
      /simulated crash/,
    );
    expect(store.blobs.size).toBe(1);
    expect(sink.received).toEqual([]);

    store.dead = false;
    store.crashAtStateWrite = undefined;
    // The crashed run's lock is still there: a later run (after its expiry) takes over.
    const later = NOW + 11 * 60_000;
    const summary = await runDetections(options, { sources: [{ name: "default", source: source(["a@x"]) }], store, alerts: sink, now: () => later, log });
    expect(summary.alertsRaised).toBe(1);
    expect(store.blobs.size).toBe(1);
    expect(sink.received.map((r) => r.UserEmail)).toEqual(["a@x"]);

    const again = await runDetections(options, {
      sources: [{ name: "default", source: source(["a@x", "b@x"]) }],
      store,
      alerts: sink,
      now: () => later + 3_600_000,
      log,
    });
    expect(again.alertsRaised).toBe(1);
    expect(sink.received.map((r) => r.UserEmail)).toEqual(["a@x", "b@x"]);
  });

  it("refuses to run while another run's lock is live, and binds the range it evaluates", async () => {
    const store = new MemoryStore();
    store.crashAtStateWrite = 2;
    await runDetections(options, { sources: [{ name: "default", source: source([]) }], store, now: () => NOW, log }).catch(() => undefined);
    store.dead = false;
    store.crashAtStateWrite = undefined;
    await expect(runDetections(options, { sources: [{ name: "default", source: source([]) }], store, now: () => NOW + 60_000, log })).rejects.toBeInstanceOf(
      ConcurrentRunError,
    );

    const fresh = new MemoryStore();
    const warehouse = source([]);
    await runDetections(options, { sources: [{ name: "default", source: warehouse }], store: fresh, now: () => NOW, log });
    expect(warehouse.queries[0]!.params).toMatchObject({
      from_us: String(Date.parse("2025-10-01T12:00:00Z") * 1000),
      to_us: String(Date.parse("2025-10-02T12:00:00Z") * 1000),
      threshold: "1",
    });
  });

  it("without Log Analytics, Blob alone raises the alert; a refused Log Analytics keeps it pending", async () => {
    const store = new MemoryStore();
    const off = await runDetections(options, { sources: [{ name: "default", source: source(["a@x"]) }], store, now: () => NOW, log });
    expect(off).toMatchObject({ alertsRaised: 1, alertsPending: 0, logAnalytics: false });

    const other = new MemoryStore();
    const sink = new Sink();
    sink.refuse = true;
    const refused = await runDetections(options, { sources: [{ name: "default", source: source(["a@x"]) }], store: other, alerts: sink, now: () => NOW, log });
    expect(refused).toMatchObject({ alertsRaised: 1, alertsPending: 1, deliveryError: expect.stringMatching(/HTTP 403/) });
    const state = JSON.parse(other.state!.text) as DetectionsState;
    expect(state.pending).toHaveLength(1);
    expect(state.lastError).toMatch(/Log Analytics did not accept/);
  });
});

describe("runDetections over several sources", () => {
  const hourly = { ...options, lateHorizonMs: 3_600_000 };
  const lastHour = Math.floor((NOW * 1000) / HOUR_US) - 1;

  /** A warehouse that answers one failed-login group per email in the hour before NOW, when the range reaches it; or fails as told. */
  function region(groups: Record<string, number>) {
    const queries: BoundQuery[] = [];
    const state = { failure: undefined as Error | undefined };
    return {
      queries,
      state,
      all(query: BoundQuery) {
        queries.push(query);
        if (state.failure) return Promise.reject(state.failure);
        if (Number(query.params.from_us) > lastHour * HOUR_US) return Promise.resolve([]);
        return Promise.resolve(
          Object.entries(groups).map(([email, n]) => ({
            window_index: lastHour,
            g_email: email,
            measure_value: n,
            event_count: n,
            first_event_us: lastHour * HOUR_US + 1,
            last_event_us: lastHour * HOUR_US + 2,
            principals: [email],
            source_ips: [],
            workspaces: ["1"],
            sample_event_ids: [`e-${email}`],
          })),
        );
      },
    };
  }

  it("goes on over the other source when one fails, reports it, and evaluates its windows again once it answers, raising nothing twice", async () => {
    const store = new MemoryStore();
    const sink = new Sink();
    const west = region({ "a@x": 2, "c@x": 1 });
    const east = region({ "b@x": 2, "c@x": 1 });
    east.state.failure = Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:1"), { code: "ECONNREFUSED" });
    const warnings: string[] = [];
    const deps = (nowMs: number) => ({
      sources: [
        { name: "west", source: west },
        { name: "east", source: east },
      ],
      store,
      alerts: sink,
      now: () => nowMs,
      log: { info: () => undefined, warn: (m: string) => warnings.push(m) },
    });

    const first = await runDetections(hourly, deps(NOW));
    expect(first.alertsRaised).toBe(1);
    expect(sink.received.map((r) => [r.UserEmail, r.Sources])).toEqual([["a@x", ["west"]]]);
    expect(first.sources).toEqual([
      expect.objectContaining({ name: "west", answered: 1 }),
      expect.objectContaining({ name: "east", answered: 0, error: expect.stringMatching(/Cannot reach the SQL warehouse.*ECONNREFUSED/) }),
    ]);
    // The source's problem, not the detection's: reported once, as the source's.
    expect(first.failures).toEqual([]);
    expect(runProblems(first)).toEqual([expect.stringMatching(/^source east: Cannot reach the SQL warehouse/)]);
    expect(formatDetectionsSummary(first)).toMatch(/sources \(state\/warehouse time\) west=ok\/\d+ms east=FAILED\/\d+ms/);
    expect(warnings.join("\n")).toMatch(/failed on source east/);
    let state = JSON.parse(store.state!.text) as DetectionsState;
    expect(state.sources).toEqual({
      west: { lastSuccessAt: expect.any(String) },
      east: expect.objectContaining({ lastError: expect.stringMatching(/ECONNREFUSED/) }),
    });
    expect(state.detections[detection.name]?.sourcesBehind).toEqual({ east: microsToIso(lastHour * HOUR_US) });
    expect(state.lastError).toMatch(/source east/);

    // Five hours later, past the one-hour late-row horizon: east answers again, and its missed hour is evaluated again with both.
    east.state.failure = undefined;
    const later = NOW + 5 * 3_600_000;
    const second = await runDetections(hourly, deps(later));
    expect(west.queries.at(-1)!.params.from_us).toBe(String(lastHour * HOUR_US));
    expect(east.queries.at(-1)!.params.from_us).toBe(String(lastHour * HOUR_US));
    expect(second.failures).toEqual([]);
    expect(sink.received.map((r) => [r.UserEmail, r.Sources]).sort((p, q) => String(p[0]).localeCompare(String(q[0])))).toEqual([
      ["a@x", ["west"]],
      ["b@x", ["east"]],
      ["c@x", ["west", "east"]],
    ]);
    state = JSON.parse(store.state!.text) as DetectionsState;
    expect(state.detections[detection.name]?.sourcesBehind).toBeUndefined();
    expect(state.sources?.east).toEqual({ lastSuccessAt: expect.any(String) });

    const third = await runDetections(hourly, deps(later + 3_600_000));
    expect(third.alertsRaised).toBe(0);
    expect(store.blobs.size).toBe(3);
  });

  it("fails a detection on one source alone when that source refuses its SQL, and evaluates the next detections there", async () => {
    const store = new MemoryStore();
    const west = region({ "a@x": 2 });
    const east = region({ "b@x": 2 });
    east.state.failure = Object.assign(new Error("[UNRESOLVED_COLUMN] no_such_column"), { response: { sqlState: "42703" } });
    const twoDetections = { ...hourly, detections: [detection, builtInDetection("sentinel_failed_logins_from_ip")!] };
    const summary = await runDetections(twoDetections, {
      sources: [
        { name: "west", source: west },
        { name: "east", source: east },
      ],
      store,
      now: () => NOW,
      log,
    });
    expect(summary.failures.map((f) => [f.detection, f.source])).toEqual([
      [detection.name, "east"],
      ["sentinel_failed_logins_from_ip", "east"],
    ]);
    expect(east.queries).toHaveLength(2);
    expect(summary.sources[1]).toMatchObject({ name: "east", failedDetections: [detection.name, "sentinel_failed_logins_from_ip"] });
    expect(summary.sources[1]!.error).toBeUndefined();
  });

  it("evaluates nothing when no source connects, says why per source, and leaves every detection where it was", async () => {
    const store = new MemoryStore();
    const summary = await runDetections(hourly, {
      sources: [
        { name: "west", connectError: "cannot connect: HTTP 404" },
        { name: "east", connectError: "cannot connect: ECONNREFUSED" },
      ],
      store,
      now: () => NOW,
      log,
    });
    expect(summary.detections).toEqual([]);
    expect(runProblems(summary)).toEqual(["source west: cannot connect: HTTP 404", "source east: cannot connect: ECONNREFUSED"]);
    const state = JSON.parse(store.state!.text) as DetectionsState;
    expect(state.detections).toEqual({});
    expect(state.lock).toBeNull();
  });
});
