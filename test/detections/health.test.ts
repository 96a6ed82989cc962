import { describe, expect, it } from "vitest";
import { assessDetections } from "../../shared/detections/health";
import { initialDetectionsState, type DetectionsState } from "../../shared/detections/state";

const NOW = Date.parse("2025-10-02T12:20:00Z");
const SCHEDULE = "0 15 * * * *";

function stateUntil(iso: string, extra: Partial<DetectionsState> = {}): DetectionsState {
  const state = { ...initialDetectionsState(), ...extra };
  state.detections.repeated_failed_login_attempts = { evaluatedUntil: iso };
  state.detections.destructive_activities = { evaluatedUntil: iso, ...(extra.lastError ? { lastError: extra.lastError } : {}) };
  return state;
}

describe("detections_state", () => {
  it("warns when the detections have not run yet, saying what to look at", () => {
    const result = assessDetections(null, SCHEDULE, NOW);
    expect(result).toMatchObject({ status: "WARN", detail: expect.stringMatching(/have not run yet/) });
    expect(result.remediation).toMatch(/runDetections/);
  });

  it("passes with the last window and the lag when the last hour was evaluated", () => {
    const result = assessDetections(stateUntil("2025-10-02T12:00:00.000000Z"), SCHEDULE, NOW);
    expect(result).toMatchObject({ status: "PASS", remediation: "" });
    expect(result.detail).toMatch(/Last window evaluated ends 2025-10-02T12:00:00.000Z; lag 20 min/);
  });

  it("warns, then fails, as the lag grows", () => {
    expect(assessDetections(stateUntil("2025-10-02T08:00:00.000000Z"), SCHEDULE, NOW).status).toBe("WARN");
    expect(assessDetections(stateUntil("2025-10-01T12:00:00.000000Z"), SCHEDULE, NOW).status).toBe("FAIL");
  });

  it("warns about a failing detection, pending alerts and a malformed overrides file, naming them", () => {
    const failing = assessDetections(stateUntil("2025-10-02T12:00:00.000000Z", { lastError: "column not found" }), SCHEDULE, NOW);
    expect(failing.status).toBe("WARN");
    expect(failing.detail).toMatch(/1 detection\(s\) failing \(destructive_activities\); destructive_activities: column not found/);
    const pending = stateUntil("2025-10-02T12:00:00.000000Z", { configErrors: ["d.yaml: detection 'x': field 'threshold' must be integer."] });
    expect(assessDetections(pending, SCHEDULE, NOW)).toMatchObject({ status: "WARN", detail: expect.stringMatching(/overrides file has 1 problem/) });
  });

  it("warns about a source that failed in the last run and the windows waiting for it, naming them", () => {
    const state = stateUntil("2025-10-02T12:00:00.000000Z", {
      sources: {
        westeurope: { lastSuccessAt: "2025-10-02T12:16:00.000Z" },
        eastus: { lastError: "cannot connect: HTTP 404", lastErrorAt: "2025-10-02T12:16:00.000Z" },
      },
    });
    state.detections.repeated_failed_login_attempts!.sourcesBehind = { eastus: "2025-10-02T09:00:00.000000Z" };
    state.detections.destructive_activities!.sourcesBehind = { eastus: "2025-10-02T00:00:00.000000Z" };
    const result = assessDetections(state, SCHEDULE, NOW);
    expect(result.status).toBe("WARN");
    expect(result.detail).toMatch(/1 source\(s\) failed in the last run \(eastus; the detections went on over the others\); eastus: cannot connect: HTTP 404/);
    expect(result.detail).toMatch(/windows of 2 detection\(s\) from 2025-10-02T00:00:00.000Z wait to be evaluated again over source eastus/);
    expect(result.remediation).toMatch(/DATABRICKS_SOURCES/);
    // Healthy again: the source answered and nothing waits.
    const healed = stateUntil("2025-10-02T12:00:00.000000Z", { sources: { eastus: { lastSuccessAt: "2025-10-02T13:16:00.000Z" } } });
    expect(assessDetections(healed, SCHEDULE, NOW)).toMatchObject({ status: "PASS" });
  });
});
