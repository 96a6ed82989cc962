import { readFileSync } from "node:fs";
import { join } from "node:path";

/**
 * The Functions host's functionTimeout as host.json states it (the app's root holds host.json;
 * this file runs from `shared/` in sources and `dist/shared/` when built). Undefined when no
 * host.json is found or it sets none: then the host's own default applies, which the caller
 * decides on.
 */
export function readHostFunctionTimeout(): string | undefined {
  const host = readHostJson() as { functionTimeout?: unknown } | undefined;
  return typeof host?.functionTimeout === "string" ? host.functionTimeout : undefined;
}

/** The queue trigger's attempts before a message goes to `<queue>-poison`: host.json's extensions.queues.maxDequeueCount, or the host's default of 5. */
export const DEFAULT_MAX_DEQUEUE_COUNT = 5;

export function readHostMaxDequeueCount(env: Readonly<Record<string, string | undefined>> = process.env): number {
  const override = Number(env.AzureFunctionsJobHost__extensions__queues__maxDequeueCount);
  if (Number.isInteger(override) && override > 0) return override;
  const host = readHostJson() as { extensions?: { queues?: { maxDequeueCount?: unknown } } } | undefined;
  const value = host?.extensions?.queues?.maxDequeueCount;
  return typeof value === "number" && Number.isInteger(value) && value > 0 ? value : DEFAULT_MAX_DEQUEUE_COUNT;
}

function readHostJson(): unknown {
  for (const path of [join(__dirname, "..", "host.json"), join(__dirname, "..", "..", "host.json")]) {
    try {
      return JSON.parse(readFileSync(path, "utf8")) as unknown;
    } catch {
      continue;
    }
  }
  return undefined;
}
