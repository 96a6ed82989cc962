import { readFileSync } from "node:fs";
import { join } from "node:path";

/**
 * The Functions host's functionTimeout as host.json states it (the app's root holds host.json;
 * this file runs from `shared/` in sources and `dist/shared/` when built). Undefined when no
 * host.json is found or it sets none: then the host's own default applies, which the caller
 * decides on.
 */
export function readHostFunctionTimeout(): string | undefined {
  for (const path of [join(__dirname, "..", "host.json"), join(__dirname, "..", "..", "host.json")]) {
    let text: string;
    try {
      text = readFileSync(path, "utf8");
    } catch {
      continue;
    }
    const host = JSON.parse(text) as { functionTimeout?: unknown };
    return typeof host.functionTimeout === "string" ? host.functionTimeout : undefined;
  }
  return undefined;
}
