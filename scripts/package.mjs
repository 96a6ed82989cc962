#!/usr/bin/env node
// npm run package: the zip that `azd deploy` uploads, built here so the tests can check it.
//
// azure.yaml deploys with `remoteBuild: true`, as the Azure Functions TypeScript quickstart does:
// azd zips the project folder minus what .funcignore lists, and the Flex Consumption build
// service (Oryx) installs the production dependencies apart, runs `npm install` and
// `npm run build` on Linux x64 next to the app, then keeps the production modules only. So the
// package holds sources, not build output: no dist/ (nothing stale from an earlier build can
// ship), no node_modules (no devDependencies, no native binaries of the deploying machine).
// This script applies .funcignore the same way (gitignore rules) and writes the same set of
// files, in a stable order with fixed timestamps, so two runs give the same bytes.
//
// Usage: node scripts/package.mjs [--out FILE.zip] [--root FOLDER]   (default .deploy/api.zip of this project)
import { mkdirSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { dirname, join, relative, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";
import AdmZip from "adm-zip";
import ignore from "ignore";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const FIXED_TIME = new Date("2020-01-01T00:00:00Z");

/** Every file under root that .funcignore does not exclude, as sorted POSIX paths. */
export function deployableFiles(projectRoot = root) {
  const rules = ignore().add(readFileSync(join(projectRoot, ".funcignore"), "utf8"));
  const files = [];
  const walk = (dir) => {
    for (const entry of readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      const full = join(dir, entry.name);
      const path = relative(projectRoot, full).split(sep).join("/");
      if (entry.name === ".git") continue;
      if (entry.isDirectory()) {
        if (!rules.ignores(`${path}/`)) walk(full);
      } else if (entry.isFile() && !rules.ignores(path)) {
        files.push(path);
      }
    }
  };
  walk(projectRoot);
  return files.sort();
}

export function writePackage(out, projectRoot = root) {
  const zip = new AdmZip();
  for (const path of deployableFiles(projectRoot)) {
    const full = join(projectRoot, path);
    zip.addFile(path, readFileSync(full), "", statSync(full).mode & 0o777);
    const entry = zip.getEntry(path);
    if (entry) entry.header.time = FIXED_TIME;
  }
  rmSync(out, { force: true });
  mkdirSync(dirname(out), { recursive: true });
  zip.writeZip(out);
  return zip.getEntries().map((e) => e.entryName);
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const flag = (name) => {
    const at = process.argv.indexOf(name);
    return at > 0 ? process.argv[at + 1] : undefined;
  };
  const projectRoot = resolve(flag("--root") ?? root);
  const out = resolve(flag("--out") ?? join(projectRoot, ".deploy", "api.zip"));
  const entries = writePackage(out, projectRoot);
  process.stdout.write(`${relative(process.cwd(), out) || out}: ${entries.length} files\n`);
}
