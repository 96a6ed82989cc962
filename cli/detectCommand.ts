import { readFileSync, writeFileSync } from "node:fs";
import type { Command } from "commander";
import { type Settings } from "../shared/config";
import { loadDetectionsConfig } from "../shared/detections/config";
import { createAzureCredential } from "../shared/composition";
import { ConfigError, describeError } from "../shared/errors";
import { closeSources, connectSources } from "../shared/detections/cycle";
import { evaluateOverSources } from "../shared/detections/evaluate";
import { resolveCatalog, type ResolvedCatalog } from "../shared/detections/overrides";
import type { Detection } from "../shared/detections/types";
import { floorTo, MICROS_PER_MINUTE } from "../shared/detections/windows";
import { MICROS_PER_HOUR, microsToIso, parseTimestampMicros } from "../shared/timestamps";
import { fail } from "./exit";

interface DetectFlags {
  start: string;
  end: string;
  only?: string;
  config?: string;
  output?: string;
}

/**
 * `dbx-audit detect`: evaluates the detections over a range with the app settings in the
 * environment, on every source (SQL warehouse, one per region) put together as the timer does,
 * and writes their alerts as JSONL (the same lines as the Blob alerts); nothing is kept in the
 * detections' state and nothing is sent anywhere else. A source that fails is reported and the
 * others go on; the exit code is then 1.
 */
export function registerDetectCommand(program: Command): void {
  program
    .command("detect")
    .description("Evaluate the detections over [start, end) and write their alerts as JSONL; the timer's state is neither read nor written.")
    .requiredOption("--start <timestamp>", "range start (ISO-8601); each detection starts at the beginning of its window (an hour, or a UTC day)")
    .requiredOption("--end <timestamp>", "range end, excluded (ISO-8601), rounded up to a whole hour")
    .option("--only <names>", "comma-separated detection names (disabled ones too); default: every enabled detection")
    .option("--config <file>", "overrides file, YAML or JSON (DETECTIONS_CONFIG)")
    .option("--output <file>", "JSONL file to write; default: standard output")
    .action(async (flags: DetectFlags) => {
      try {
        await detect(flags);
      } catch (error) {
        fail(error);
      }
    });
}

async function detect(flags: DetectFlags): Promise<void> {
  const problems: string[] = [];
  const startUs = parseTimestampMicros(flags.start);
  const endUs = parseTimestampMicros(flags.end);
  if (startUs === undefined) problems.push(`--start must be an ISO-8601 timestamp, e.g. 2025-09-01T00:00:00Z; got '${flags.start}'.`);
  if (endUs === undefined) problems.push(`--end must be an ISO-8601 timestamp; got '${flags.end}'.`);
  if (startUs !== undefined && endUs !== undefined && endUs <= startUs) problems.push("--end must be after --start.");
  const settings: Settings = { ...process.env, ...(flags.config ? { DETECTIONS_CONFIG: flags.config } : {}) };
  let config: ReturnType<typeof loadDetectionsConfig> | undefined;
  try {
    config = loadDetectionsConfig(settings, { storage: false });
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    problems.push(...error.problems);
  }
  const catalog = config ? catalogFromFile(config.overrides) : resolveCatalog();
  const selected = selectDetections(catalog.detections, flags.only, problems);
  if (problems.length > 0 || !config) throw new ConfigError(problems);
  for (const problem of catalog.errors) process.stderr.write(`warning: ${problem}\n`);

  const toUs = Math.ceil(endUs! / MICROS_PER_HOUR) * MICROS_PER_HOUR;
  const credential = config.app.sources.every((s) => s.databricks.accessToken) ? undefined : createAzureCredential(config.app, process.env);
  const handles = await connectSources(config.app.sources, credential, { queryTimeoutMs: config.app.queryTimeoutMs });
  const lines: string[] = [];
  /** Detections no source answered, and detections some source failed ("name on source"). */
  const failures: string[] = [];
  const partial: string[] = [];
  const down = new Map(handles.flatMap((h) => (h.connectError ? [[h.name, h.connectError] as const] : [])));
  for (const [name, error] of down) process.stderr.write(`source ${name}: FAILED ${error}\n`);
  try {
    for (const detection of selected) {
      const up = handles.flatMap((h) => (h.source && !down.has(h.name) ? [{ name: h.name, source: h.source }] : []));
      if (up.length === 0) {
        failures.push(detection.name);
        process.stderr.write(`${detection.name}: FAILED no source could answer\n`);
        continue;
      }
      const fromUs = floorTo(startUs!, detection.windowMinutes * MICROS_PER_MINUTE);
      const evaluation = await evaluateOverSources(up, detection, { fromUs, toUs }, config.workspaceIds, Date.now);
      const failed = evaluation.attempts.filter((a) => a.error !== undefined);
      for (const attempt of failed) {
        if (attempt.sourceDown && !down.has(attempt.source)) {
          down.set(attempt.source, attempt.error!);
          process.stderr.write(`source ${attempt.source}: FAILED ${attempt.error} (the other sources go on)\n`);
        }
      }
      if (failed.length === evaluation.attempts.length) {
        failures.push(detection.name);
        process.stderr.write(`${detection.name}: FAILED ${failed.map((a) => (up.length > 1 ? `${a.source}: ${a.error}` : a.error)).join("; ")}\n`);
        continue;
      }
      for (const alert of evaluation.alerts) lines.push(JSON.stringify(alert));
      if (failed.length > 0) partial.push(`${detection.name} on ${failed.map((a) => a.source).join(", ")}`);
      const note = failed.length > 0 ? `; failed on ${failed.map((a) => `${a.source} (${a.error})`).join(", ")}` : "";
      process.stderr.write(`${detection.name}: ${evaluation.alerts.length} alert(s) (${evaluation.warehouseMs} ms)${note}\n`);
    }
  } finally {
    await closeSources(handles);
  }
  const text = lines.map((line) => `${line}\n`).join("");
  if (flags.output && flags.output !== "-") writeFileSync(flags.output, text);
  else process.stdout.write(text);
  const sourcesNote = handles.length > 1 ? ` on ${handles.length - down.size} of ${handles.length} sources` : "";
  const failedNote = [...failures, ...partial, ...[...down.keys()].map((name) => `source ${name}`)];
  process.stderr.write(
    `${lines.length} alert(s) from ${selected.length - failures.length} detection(s)${sourcesNote} over ${microsToIso(startUs!)} .. ${microsToIso(toUs)}${failedNote.length > 0 ? `; failed: ${failedNote.join(", ")}` : ""}\n`,
  );
  if (failedNote.length > 0) process.exitCode = 1;
}

/** The catalog with a local overrides file applied (the CLI reads DETECTIONS_CONFIG as a path). */
export function catalogFromFile(path: string | undefined): ResolvedCatalog {
  if (!path) return resolveCatalog();
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (error) {
    return { ...resolveCatalog(), errors: [`${path}: cannot read the overrides file (${describeError(error)}); every detection runs as built in.`] };
  }
  return resolveCatalog({ name: path, text });
}

function selectDetections(detections: readonly Detection[], only: string | undefined, problems: string[]): Detection[] {
  if (!only) return detections.filter((d) => d.enabled);
  const names = only
    .split(",")
    .map((n) => n.trim())
    .filter(Boolean);
  const unknown = names.filter((n) => !detections.some((d) => d.name === n));
  if (unknown.length > 0) problems.push(`--only names unknown detection(s): ${unknown.join(", ")} (see 'dbx-audit detections').`);
  return detections.filter((d) => names.includes(d.name));
}
