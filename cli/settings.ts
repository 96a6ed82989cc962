import type { Settings } from "../shared/config";

/** CLI flags are the app settings under other names: a flag given wins over the environment. */
export function settingsFrom(env: Settings, flags: Record<string, string | undefined>): Settings {
  const merged: Record<string, string | undefined> = { ...env };
  for (const [name, value] of Object.entries(flags)) if (value !== undefined) merged[name] = value;
  return merged;
}

/** `--workspace-id 1 --workspace-id 2` and `--workspace-id 1,2` both work. */
export function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}
