import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";

// What infra/README.md tells an admin to hand to Microsoft Sentinel must be something Sentinel
// takes: its Analytics import reads ARM template JSON, not the Azure-Sentinel repository's YAML.

const repo = join(__dirname, "..", "..");
const readme = readFileSync(join(repo, "infra", "README.md"), "utf8");
const sentinelSection = readme.split(/^## /m).find((part) => part.startsWith("Sentinel content\n")) ?? "";

/** Sentences that speak of importing YAML without saying it does not work. */
function yamlImportClaims(text: string): string[] {
  return text
    .split(/\n\s*\n/)
    .flatMap((paragraph) => paragraph.replace(/\s+/g, " ").split(/(?<=[.!?:])\s+(?=[A-Z`*])/))
    .filter((sentence) => /\bimport/i.test(sentence) && /\bYAML\b/.test(sentence) && !/\bnot\b/.test(sentence));
}

describe("infra/README.md on Sentinel content", () => {
  it("does not say Sentinel imports the YAML files, and names the ARM JSON to use", () => {
    expect(sentinelSection.length).toBeGreaterThan(500);
    expect(yamlImportClaims(readme)).toEqual([]);
    expect(sentinelSection).toMatch(/takes ARM template JSON/);
    for (const path of ["sentinel/analytic-rules.json", "infra/app/sentinel-content.bicep"]) {
      expect(sentinelSection, path).toContain(`\`${path.replace(/^infra\//, "")}\``);
      expect(existsSync(join(repo, path)), path).toBe(true);
    }
    // The JSON named is the rules' ARM form: Microsoft.SecurityInsights/alertRules bodies.
    const rules = JSON.parse(readFileSync(join(repo, "sentinel", "analytic-rules.json"), "utf8")) as Record<string, unknown>[];
    expect(rules.length).toBeGreaterThan(0);
    for (const rule of rules) expect(Object.keys(rule).sort()).toEqual(["id", "kind", "properties"]);
  });

  it("finds a claim that the YAML files import", () => {
    expect(yamlImportClaims("The rules' IDs are fixed. Importing the YAML files with Sentinel's own tools works as well.")).toEqual([
      "Importing the YAML files with Sentinel's own tools works as well.",
    ]);
    expect(yamlImportClaims("Microsoft Sentinel does not import the YAML files: it takes ARM JSON.")).toEqual([]);
  });
});
