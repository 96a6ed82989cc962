import { describe, expect, it } from "vitest";
import { assessLogAnalyticsLag, assessSourceLogAnalyticsLag } from "../../shared/checks/logAnalyticsLag";
import { initialSourceState, initialState, type ExportState, type SourceState } from "../../shared/export/state";
import { assessFreshness, assessSourceFreshness } from "../../shared/prerequisites";

// The export state's checks of one source among several, from its own progress: pure, no I/O.

const MIN = 60_000;
const HOUR = 60 * MIN;
const NOW = Date.parse("2025-03-10T12:00:00.000Z");
const HOURLY = "0 5 * * * *";
const SETTLE = 10 * MIN;

/** A source whose archive is complete up to `behindMs` before NOW. */
function behind(behindMs: number, logAnalytics: Partial<SourceState["logAnalytics"]> = {}, archivedBatches = 0): SourceState {
  const source = initialSourceState((NOW - 48 * HOUR) * 1000);
  return { ...source, cursor: { timeUs: (NOW - behindMs) * 1000, eventId: "" }, archivedBatches, logAnalytics: { ...source.logAnalytics, ...logAnalytics } };
}

function stateWith(sources: Record<string, SourceState>, fields: Partial<ExportState> = {}): ExportState {
  return { ...initialState(), lastSuccessAt: new Date(NOW - 5 * MIN).toISOString(), sources, ...fields };
}

describe("assessSourceFreshness", () => {
  const at = (behindMs: number) => assessSourceFreshness("eastus", stateWith({ eastus: behind(behindMs) }), HOURLY, SETTLE, NOW);

  it("passes while the source's archive is within the settle delay plus 2 intervals, warns up to 6, fails beyond", () => {
    expect(at(SETTLE).status).toBe("PASS");
    expect(at(SETTLE + 2 * HOUR).status).toBe("PASS");
    expect(at(SETTLE + 2 * HOUR + 1000).status).toBe("WARN");
    expect(at(SETTLE + 6 * HOUR).status).toBe("WARN");
    expect(at(SETTLE + 6 * HOUR + 1000).status).toBe("FAIL");
  });

  it("says how far behind the archive is, and what to look at for this source", () => {
    const result = at(10 * HOUR);
    expect(result.detail).toMatch(
      /^The archive is complete up to 2025-03-10T02:00:00\.000000Z \(10 h behind now; runs read up to 10 min before now\)\. Last successful export/,
    );
    expect(result.remediation).toContain("source 'eastus'");
    expect(at(SETTLE).remediation).toBe("");
  });

  it("judges each source on its own progress", () => {
    const state = stateWith({ eastus: behind(SETTLE), westeurope: behind(12 * HOUR) });
    expect(assessSourceFreshness("eastus", state, HOURLY, SETTLE, NOW).status).toBe("PASS");
    expect(assessSourceFreshness("westeurope", state, HOURLY, SETTLE, NOW).status).toBe("FAIL");
  });

  it("gives the source's own last error, without a token it may carry", () => {
    const failing = {
      ...behind(3 * HOUR),
      lastFailureAt: new Date(NOW - 5 * MIN).toISOString(),
      lastError: "connect ECONNREFUSED 10.0.0.4:443 token=dapi0123456789abcdef0123456789abcdef",
    };
    const result = assessSourceFreshness("eastus", stateWith({ eastus: failing }), HOURLY, SETTLE, NOW);
    expect(result.detail).toContain("This source's last run failed at 2025-03-10T11:55:00.000Z: connect ECONNREFUSED 10.0.0.4:443");
    expect(result.detail).not.toContain("dapi0123456789abcdef");
  });

  it("warns for a source the state has no progress for yet (a source just added)", () => {
    const result = assessSourceFreshness("westeurope", stateWith({ eastus: behind(SETTLE) }), HOURLY, SETTLE, NOW);
    expect(result.status).toBe("WARN");
    expect(result.detail).toMatch(/^Nothing archived from this source yet/);
    expect(result.remediation).toContain("source 'westeurope'");
  });

  it("is never better than the runs' own freshness, and answers as it does when nothing ran yet", () => {
    const stale = stateWith({ eastus: behind(SETTLE) }, { lastSuccessAt: new Date(NOW - 10 * HOUR).toISOString() });
    expect(assessSourceFreshness("eastus", stale, HOURLY, SETTLE, NOW).status).toBe("FAIL");
    expect(assessSourceFreshness("eastus", null, HOURLY, SETTLE, NOW)).toEqual(assessFreshness(null, HOURLY, NOW));
  });
});

describe("assessSourceLogAnalyticsLag", () => {
  const failing = {
    laggingSince: "2025-03-10T08:00:00.000Z",
    lastError: { at: "2025-03-10T11:00:00.000Z", message: "HTTP 403", remediation: "Assign the role." },
  };

  it("answers from the source's own progress only", () => {
    const state = stateWith({ eastus: behind(SETTLE), westeurope: behind(SETTLE, failing, 2) });
    expect(assessSourceLogAnalyticsLag("eastus", state.sources.eastus, true)).toEqual({
      status: "PASS",
      detail: "Log Analytics is current with the archive.",
      remediation: "",
    });
    const lagging = assessSourceLogAnalyticsLag("westeurope", state.sources.westeurope, true);
    expect(lagging.status).toBe("FAIL");
    expect(lagging.detail).toMatch(/^Log Analytics is 2 batch\(es\) .* behind the archive since 2025-03-10T08:00:00\.000Z; last error at .*HTTP 403/);
    expect(lagging.remediation).toBe("Assign the role.");
    // The whole state's answer still covers every source, as before.
    expect(assessLogAnalyticsLag(state, true).detail).toMatch(/^source eastus: Log Analytics is current.*; source westeurope: Log Analytics is 2 batch/);
  });

  it("counts only the source's own dead-letter blobs (source=eastus/ is not source=eastus2/)", () => {
    const blobs = ["dead-letter/logs-ingestion/source=eastus2/b-call0.jsonl", "dead-letter/logs-ingestion/source=eastus/b-call1.jsonl"];
    const own = assessSourceLogAnalyticsLag("eastus", behind(SETTLE, { deadLettered: 4 }), true, blobs);
    expect(own.status).toBe("WARN");
    expect(own.detail).toContain("1 dead-letter blob(s)");
    expect(own.detail).toContain("(4 record(s) dead-lettered so far), e.g. dead-letter/logs-ingestion/source=eastus/b-call1.jsonl");
    expect(assessSourceLogAnalyticsLag("westus", behind(SETTLE), true, blobs).status).toBe("PASS");
  });

  it("passes for a source with nothing archived yet, and when Log Analytics is off", () => {
    expect(assessSourceLogAnalyticsLag("eastus", undefined, true)).toMatchObject({
      status: "PASS",
      detail: "Nothing archived from this source yet, so nothing waits for Log Analytics.",
    });
    expect(assessSourceLogAnalyticsLag("eastus", behind(SETTLE, failing, 2), false).status).toBe("PASS");
  });
});
