import { describe, expect, it } from "vitest";
import { formatDuration, parseIsoDuration } from "../../shared/duration";
import { hourIndexOf, microsToIso, parseTimestampMicros } from "../../shared/timestamps";

describe("ISO durations", () => {
  it.each([
    ["PT10M", 600_000],
    ["PT24H", 86_400_000],
    ["P2D", 172_800_000],
    ["P1DT6H30M", 109_800_000],
    ["PT1.5S", 1500],
    ["P1W", 604_800_000],
  ])("%s", (text, ms) => {
    expect(parseIsoDuration(text)).toBe(ms);
  });
  it.each(["", "P", "PT", "10m", "P1M", "P1Y", "-PT1H", "PT1H junk"])("refuses %j", (text) => {
    expect(parseIsoDuration(text)).toBeUndefined();
  });
  it("formats back", () => {
    expect(formatDuration(109_800_000)).toBe("P1DT6H30M");
    expect(formatDuration(0)).toBe("PT0S");
  });
});

describe("microsecond timestamps", () => {
  it("round-trips microseconds that a Date would lose", () => {
    const us = parseTimestampMicros("2024-09-01T12:34:56.123456Z")!;
    expect(us % 1000).toBe(456);
    expect(microsToIso(us)).toBe("2024-09-01T12:34:56.123456Z");
  });
  it("reads offsets, space separators, dates alone and no zone as UTC", () => {
    expect(parseTimestampMicros("2024-09-01T02:00:00+02:00")).toBe(Date.parse("2024-09-01T00:00:00Z") * 1000);
    expect(parseTimestampMicros("2024-09-01 00:00:00.5")).toBe(Date.parse("2024-09-01T00:00:00Z") * 1000 + 500_000);
    expect(parseTimestampMicros("2024-09-01")).toBe(Date.parse("2024-09-01T00:00:00Z") * 1000);
  });
  it.each(["2024-02-30", "yesterday", "2024-09-01T25:00:00Z", "2024-09-01T00:00:00Z; DROP TABLE x"])("refuses %j", (text) => {
    expect(parseTimestampMicros(text)).toBeUndefined();
  });
  it("indexes hours", () => {
    expect(hourIndexOf(3_600_000_000 * 5 + 1)).toBe(5);
    expect(hourIndexOf(3_600_000_000 * 5 - 1)).toBe(4);
  });
});
