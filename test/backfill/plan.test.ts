import { describe, expect, it } from "vitest";
import { ConfigError } from "../../shared/errors";
import { parseSliceMessage, planBackfill, sliceMessage, type PlanContext } from "../../shared/backfill/plan";

const NOW = Date.parse("2026-12-07T12:00:00Z");
const LIVE = Date.parse("2026-12-06T12:05:00Z") * 1000;

function context(overrides: Partial<PlanContext> = {}): PlanContext {
  return {
    sources: [
      { name: "region1", includeAccountLevel: true },
      { name: "region2", includeAccountLevel: true },
    ],
    liveStartUs: () => LIVE,
    logAnalyticsConfigured: true,
    nowMs: NOW,
    ...overrides,
  };
}

function problems(run: () => unknown): string[] {
  try {
    run();
  } catch (error) {
    if (error instanceof ConfigError) return [...error.problems];
    throw error;
  }
  throw new Error("expected a ConfigError");
}

describe("planBackfill", () => {
  it("cuts [from, live start) into one slice per source and UTC day, the last ending where the live export began", () => {
    const plan = planBackfill({ from: "2026-12-03" }, context());
    expect(plan.slices.map((s) => `${s.source}/${s.day} ${s.from}..${s.to} ${s.accountLevel}`)).toEqual([
      "region1/2026-12-03 2026-12-03T00:00:00.000000Z..2026-12-04T00:00:00.000000Z true",
      "region1/2026-12-04 2026-12-04T00:00:00.000000Z..2026-12-05T00:00:00.000000Z true",
      "region1/2026-12-05 2026-12-05T00:00:00.000000Z..2026-12-06T00:00:00.000000Z true",
      "region1/2026-12-06 2026-12-06T00:00:00.000000Z..2026-12-06T12:05:00.000000Z true",
      // Account-level events are in every region's table: only the first source brings them.
      "region2/2026-12-03 2026-12-03T00:00:00.000000Z..2026-12-04T00:00:00.000000Z false",
      "region2/2026-12-04 2026-12-04T00:00:00.000000Z..2026-12-05T00:00:00.000000Z false",
      "region2/2026-12-05 2026-12-05T00:00:00.000000Z..2026-12-06T00:00:00.000000Z false",
      "region2/2026-12-06 2026-12-06T00:00:00.000000Z..2026-12-06T12:05:00.000000Z false",
    ]);
    expect(plan.sinks).toBe("archive");
  });

  it("takes one source, and --to at a midnight", () => {
    const plan = planBackfill({ from: "2026-12-01", to: "2026-12-03T00:00:00Z", source: "region2", sinks: "both" }, context());
    expect(plan.slices.map((s) => `${s.source}/${s.day}`)).toEqual(["region2/2026-12-01", "region2/2026-12-02"]);
    expect(plan.sinks).toBe("both");
  });

  it("never overlaps the live export: --to after its start is refused, naming where it began", () => {
    expect(problems(() => planBackfill({ from: "2026-12-01", to: "2026-12-07" }, context()))).toEqual([
      expect.stringContaining("--to 2026-12-07 is after where the live export of source 'region1' began (2026-12-06T12:05:00.000000Z)"),
      expect.stringContaining("source 'region2' began"),
    ]);
    // Exactly the live start is the default, and allowed.
    expect(planBackfill({ from: "2026-12-06", to: "2026-12-06T12:05:00Z" }, context()).slices).toHaveLength(2);
  });

  it("refuses a day past the table's 365 days, with the earliest day it still holds", () => {
    expect(problems(() => planBackfill({ from: "2025-12-07" }, context()))).toEqual([
      "--from 2025-12-07 is beyond the audit table's 365-day retention: its rows are gone or going. The earliest day to backfill is 2025-12-08.",
    ]);
    expect(planBackfill({ from: "2025-12-08", source: "region1" }, context()).slices).toHaveLength(364);
  });

  it("names every bad argument at once", () => {
    const found = problems(() =>
      planBackfill({ from: "2026-12-01T06:00:00Z", to: "2026-12-03T01:00:00Z", sinks: "sentinel", source: "eu" }, context({ logAnalyticsConfigured: false })),
    );
    expect(found).toEqual([
      "--sinks must be archive (the Blob archive only) or both (archive and Log Analytics); got 'sentinel'.",
      "--source must name a configured source (region1, region2); got 'eu'.",
      "--from must be a UTC midnight (backfill slices are UTC days), e.g. 2026-12-01; got '2026-12-01T06:00:00Z'.",
    ]);
    expect(problems(() => planBackfill({ from: "2026-12-01", to: "2026-12-03T01:00:00Z" }, context()))[0]).toContain(
      "--to must be a UTC midnight or where the live export began",
    );
    expect(problems(() => planBackfill({ from: "2026-02-30" }, context()))[0]).toContain("--from must be an ISO-8601 date");
    expect(problems(() => planBackfill({ from: "2026-12-05", to: "2026-12-05" }, context()))[0]).toContain("must be after --from");
    expect(problems(() => planBackfill({ from: "2026-12-01", sinks: "both" }, context({ logAnalyticsConfigured: false })))[0]).toContain(
      "--sinks both needs Log Analytics",
    );
  });

  it("refuses to guess where a live export that never ran will begin", () => {
    expect(problems(() => planBackfill({ from: "2026-12-01" }, context({ liveStartUs: () => undefined })))[0]).toContain(
      "the live export has not started yet, so where it begins is not fixed",
    );
  });
});

describe("slice messages", () => {
  it("round-trip, and anything else is refused by name", () => {
    const [slice] = planBackfill({ from: "2026-12-05", source: "region1" }, context()).slices;
    const message = sliceMessage("20261207T120000Z-abc123", slice!, "both");
    expect(parseSliceMessage(JSON.parse(JSON.stringify(message)))).toMatchObject({ ...message, fromUs: Date.parse("2026-12-05T00:00:00Z") * 1000 });
    expect(() => parseSliceMessage({ ...message, sinks: "all" })).toThrow(/Not a backfill slice message .*sinks/);
    expect(() => parseSliceMessage("hello")).toThrow(/Not a backfill slice message/);
    expect(() => parseSliceMessage({ ...message, source: "x'; DROP" })).toThrow(/source/);
    expect(() => parseSliceMessage({ ...message, day: "2026-12-04" })).toThrow(/impossible range/);
  });
});
