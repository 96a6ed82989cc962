import { describe, expect, it } from "vitest";
import { measureSinksFloor } from "../../bench/sinksFloor";

describe("the benchmark's sinks' least work", () => {
  it("uploads the records through the real client, cut into calls as the 1 MB limit allows, with the export's gzip, and counts the CPU", async () => {
    const floor = await measureSinksFloor(2_500, 1);
    expect(floor.events).toBe(2_500);
    // About 900 bytes of JSON a record: three calls of < 1,000,000 bytes.
    expect(floor.calls).toBeGreaterThanOrEqual(3);
    expect(floor.calls).toBeLessThanOrEqual(4);
    expect(floor.clientCpuSeconds).toBeGreaterThan(0);
    expect(floor.archiveGzipCpuSeconds).toBeGreaterThan(0);
  });
});
