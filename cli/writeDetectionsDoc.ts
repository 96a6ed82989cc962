import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { renderDetectionsDoc } from "../shared/detections/docs";

/** `npm run docs:detections`: regenerates docs/detections.md from the catalog. */
export const DETECTIONS_DOC_PATH = join(__dirname, "..", "..", "docs", "detections.md");

if (require.main === module) {
  writeFileSync(DETECTIONS_DOC_PATH, renderDetectionsDoc());
  process.stdout.write(`wrote ${DETECTIONS_DOC_PATH}\n`);
}
