// Loaded with `node --import <this file>` into a process whose memory a test measures. When the
// process exits it writes its peak resident set size (VmHWM in /proc/self/status: every thread's
// memory, the reader thread's included) to the file named by DBX_AUDIT_PEAK_RSS_FILE. Read at
// exit, it misses nothing, where sampling the process from outside would miss its last moments.
import { readFileSync, writeFileSync } from "node:fs";
import { isMainThread } from "node:worker_threads";

const file = process.env.DBX_AUDIT_PEAK_RSS_FILE;
if (file && isMainThread) {
  process.on("exit", () => {
    const status = readFileSync("/proc/self/status", "utf8");
    const kb = (name) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, "m").exec(status)?.[1] ?? NaN);
    writeFileSync(file, JSON.stringify({ pid: process.pid, peakRssKb: kb("VmHWM"), rssAtExitKb: kb("VmRSS") }));
  });
}
