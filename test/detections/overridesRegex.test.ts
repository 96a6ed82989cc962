import { describe, expect, it } from "vitest";
import { renderDetectionsDoc } from "../../shared/detections/docs";
import { evaluateDetection } from "../../shared/detections/evaluate";
import { resolveCatalog } from "../../shared/detections/overrides";
import { auditRow, isoMicros } from "../support/auditRows";
import { warehouseWithRows } from "./standIn";

/**
 * The overrides documentation's example of backslashes in a filter's regular expression, taken
 * from docs/detections.md as rendered and run on the warehouse stand-in (which unescapes string
 * literals as Databricks does): written as the docs say it matches; with one backslash fewer it
 * does not.
 */
const DAY = Date.parse("2025-10-05T00:00:00Z");
const rows = ["x = 1\nprint (x)", "reprint(x)", "print_all()"].map((commandText, i) =>
  auditRow(isoMicros((DAY + 3_600_000 + i * 1000) * 1000), {
    service_name: "notebook",
    action_name: "runCommand",
    request_params: { commandText },
  }),
);
const warehouse = warehouseWithRows(rows);

function documentedExample(): string {
  const doc = renderDetectionsDoc();
  const section = doc.slice(doc.indexOf("### Backslashes in a filter's regular expression"));
  const match = /```yaml\n([\s\S]*?)```/.exec(section);
  if (!match) throw new Error("the overrides documentation has no YAML example for backslashes");
  return match[1]!;
}

async function matchingEvents(yaml: string): Promise<string[]> {
  const { detections, errors } = resolveCatalog({ name: "detections.yaml", text: yaml });
  expect(errors).toEqual([]);
  const detection = detections.find((d) => d.name === "print_in_commands")!;
  const { alerts } = await evaluateDetection(warehouse(), detection, { fromUs: DAY * 1000, toUs: (DAY + 86_400_000) * 1000 }, [], Date.now);
  return alerts.flatMap((a) => a.sample_event_ids);
}

describe("backslashes in an added detection's regular expression", () => {
  it("match as the documentation's example says", async () => {
    const yaml = documentedExample();
    expect(yaml).toContain(String.raw`'\\\\bprint\\\\s*\\\\('`);
    expect(await matchingEvents(yaml)).toEqual([rows[0]!.event_id]);
  });

  it("do not survive one backslash fewer: \\( reaches the regex as an unbalanced (", async () => {
    const halved = documentedExample().replace(/\\\\/g, "\\");
    // Two in the YAML file: one in the SQL text, none left for the regex.
    expect(halved).toContain(String.raw`'\\bprint\\s*\\('`);
    await expect(matchingEvents(halved)).rejects.toThrow(/missing \)/);
    // Without the parenthesis, the single-backslash \b and \s match none of the rows.
    expect(await matchingEvents(halved.replace(String.raw`\\s*\\(`, String.raw`\\s*`))).toEqual([]);
  });
});
