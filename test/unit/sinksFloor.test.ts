import { describe, expect, it } from "vitest";
import { measureSinksFloor } from "../../bench/sinksFloor";

describe("the benchmark's sinks' least work", () => {
  it("uploads every record through the real client in calls of under 1 MB, with the export's gzip, and counts CPU", async () => {
    const floor = await measureSinksFloor(2_500, 1);
    expect(floor.events).toBe(2_500);
    // About 900 bytes of JSON a record: three calls of < 1,000,000 bytes.
    expect(floor.calls).toBeGreaterThanOrEqual(3);
    expect(floor.calls).toBeLessThanOrEqual(4);
    expect(floor.clientCpuSeconds).toBeGreaterThan(0);
    expect(floor.archiveGzipCpuSeconds).toBeGreaterThan(0);
  });
});
