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
  // Date.parse rolls each of these over into a real instant; with an offset the UTC date differs from
  // the text anyway, so only the fields as written can tell.
  it.each([
    "2024-02-30T00:00:00+01:00",
    "2024-02-30T00:00:00Z",
    "2023-02-29T12:00:00-05:00",
    "2024-04-31T00:00:00+0200",
    "2024-13-01T00:00:00+01:00",
    "2024-00-10T00:00:00+01:00",
    "2024-09-00T00:00:00+01:00",
    "2024-09-01T24:00:00+01:00",
    "2024-09-01T24:00:00Z",
    "2024-09-01T23:60:00-03:00",
    "2024-09-01T23:59:60+01:00",
    "2024-09-01T00:00:00+24:00",
    "2024-09-01T00:00:00+01:60",
  ])("refuses the impossible %j, with an offset as with Z", (text) => {
    expect(parseTimestampMicros(text)).toBeUndefined();
  });
  it("reads real dates whose offset moves them to another UTC date, and leap days", () => {
    expect(parseTimestampMicros("2024-03-01T00:30:00+01:00")).toBe(Date.parse("2024-02-29T23:30:00Z") * 1000);
    expect(parseTimestampMicros("2024-02-29T23:00:00-02:00")).toBe(Date.parse("2024-03-01T01:00:00Z") * 1000);
    expect(parseTimestampMicros("2000-02-29T00:00:00+0530")).toBe(Date.parse("2000-02-28T18:30:00Z") * 1000);
    expect(parseTimestampMicros("1900-02-29")).toBeUndefined();
    expect(parseTimestampMicros("2024-12-31T23:59:59.999999+14:00")).toBe(Date.parse("2024-12-31T09:59:59.999Z") * 1000 + 999);
  });
  it("indexes hours", () => {
    expect(hourIndexOf(3_600_000_000 * 5 + 1)).toBe(5);
    expect(hourIndexOf(3_600_000_000 * 5 - 1)).toBe(4);
  });
});
