import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startSandboxStack } from "../../sandbox/stack";

/** startSandboxStack with events files, in process: the stack object, the regions' settings, closing. */
let dir: string;
const file = (name: string, lines: string[]): string => {
  const path = join(dir, name);
  writeFileSync(path, lines.join("\n") + "\n");
  return path;
};
const row = (event_time: string, event_id: string) => JSON.stringify({ event_time, event_id, service_name: "jobs", action_name: "runNow", workspace_id: "1" });

/** Listening TCP servers in this process (the warehouses, the Logs Ingestion and identity stand-ins are among them). */
const listeningServers = () => process.getActiveResourcesInfo().filter((kind) => kind === "TCPServerWrap").length;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "dbx-audit-stack-"));
});
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe("startSandboxStack", () => {
  it("keeps eventsFile working as one warehouse, configured by the single-source settings alone", async () => {
    const stack = await startSandboxStack({ eventsFile: file("one.jsonl", [row("2025-05-05T05:05:05Z", "one-a")]) });
    try {
      expect(stack.warehouses).toHaveLength(1);
      expect(stack.warehouse).toBe(stack.warehouses[0]);
      expect(await stack.warehouse.rowCount()).toBe(1);
      const { databricks, databricksSources, env } = stack.contract;
      expect(databricksSources).toEqual([{ name: "region1", ...databricks }]);
      expect(env.DATABRICKS_SOURCES).toBeUndefined();
      expect(env).toMatchObject({ DATABRICKS_SERVER_HOSTNAME: databricks.serverHostname, DATABRICKS_HTTP_PATH: databricks.httpPath });
      expect(env.EXPORT_START).toBe("2025-05-05T05:00:00.000Z");
    } finally {
      await stack.close();
    }
  });

  it("starts one warehouse per file, eventsFile first, and closing stops every one", async () => {
    const stack = await startSandboxStack({
      eventsFile: file("a.jsonl", [row("2025-05-05T05:05:05Z", "a-1")]),
      eventsFiles: [file("b.jsonl", [row("2025-05-06T00:00:00Z", "b-1"), row("2025-05-06T00:00:01Z", "b-2")])],
      synthetic: 10,
    });
    const admins = stack.contract.databricksSources.map((s) => s.adminUrl);
    try {
      expect(stack.warehouses).toHaveLength(2);
      expect(stack.warehouse).toBe(stack.warehouses[0]);
      expect(await Promise.all(stack.warehouses.map((w) => w.rowCount()))).toEqual([1 + 10, 2]);
      expect(stack.contract.databricksSources.map((s) => [s.name, s.serverHostname])).toEqual(
        stack.warehouses.map((w, i) => [`region${i + 1}`, w.serverHostname]),
      );
    } finally {
      await stack.close();
    }
    for (const admin of admins) await expect(fetch(`${admin}/events`)).rejects.toThrow();
  });

  it("stops everything it started when a file cannot be loaded, and names the file and line", async () => {
    const before = listeningServers();
    const bad = file("bad.jsonl", [row("2025-05-05T05:05:05Z", "ok"), "[1, 2]"]);
    await expect(startSandboxStack({ eventsFiles: [file("good.jsonl", [row("2025-05-05T05:05:05Z", "good")]), bad] })).rejects.toThrow(
      `${bad}:2: expected one JSON object per line`,
    );
    expect(listeningServers()).toBe(before);
  });
});
