import { execFileSync } from "node:child_process";
import { readdirSync, statSync } from "node:fs";
import { join, relative } from "node:path";

// Vitest global setup: the tests that start the CLI, the sandbox command or a benchmark run the
// compiled dist/ (as `npx dbx-audit` does). `npm ci` does not build (package.json has no
// "prepare": the Functions build service's production-only install would run it without
// TypeScript), so a fresh clone has no dist/, and after an edit dist/ is behind the sources.
// Compiled here when any source is newer than its output or has none, once per vitest run.

const repo = join(__dirname, "..", "..");
// tsconfig.build.json's "include".
const SOURCE_FOLDERS = ["functions", "shared", "cli", "sandbox", "bench"];

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return sources(path);
    return entry.isFile() && entry.name.endsWith(".ts") && !entry.name.endsWith(".d.ts") ? [path] : [];
  });
}

function modifiedAt(path: string): number | undefined {
  try {
    return statSync(path).mtimeMs;
  } catch {
    return undefined;
  }
}

/** Sources whose compiled file is missing or older than they are. */
export function staleSources(root = repo): string[] {
  return SOURCE_FOLDERS.flatMap((folder) => sources(join(root, folder))).filter((source) => {
    const compiled = modifiedAt(join(root, "dist", relative(root, source)).replace(/\.ts$/, ".js"));
    return compiled === undefined || compiled < statSync(source).mtimeMs;
  });
}

export default function buildWhenStale(): void {
  if (staleSources().length === 0) return;
  execFileSync(process.execPath, [join(repo, "node_modules", "typescript", "bin", "tsc"), "-p", "tsconfig.build.json"], { cwd: repo, stdio: "inherit" });
}
