import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { delimiter, dirname, join, resolve, sep } from "node:path";
import AdmZip from "adm-zip";
import ignore from "ignore";
import { parse } from "yaml";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { oryxNodeBuild, productionOnlyInstall } from "./support/oryxNodeBuild";

// The package `azd deploy` uploads (remoteBuild: true): what `npm run package` writes. These tests
// check its contents, then do what the Flex Consumption build does with it (install, build) and
// load the entry files the way the Functions worker does, with production dependencies only.

const repo = join(__dirname, "..", "..");
const packageScript = join(repo, "scripts", "package.mjs");
const functionsHost = join(__dirname, "support", "functionsHost.mjs");
const netGuard = join(repo, "test", "support", "netGuard.mjs");
const lockfile = JSON.parse(readFileSync(join(repo, "package-lock.json"), "utf8")) as { packages: Record<string, { dev?: boolean }> };
/** Packages only devDependencies bring in (some devDependencies, like thrift, are also production dependencies' own). */
const devOnly = Object.entries(lockfile.packages)
  .filter(([path, entry]) => path.startsWith("node_modules/") && entry.dev === true)
  .map(([path]) => path);
const functionNames = readdirSync(join(repo, "functions"))
  .filter((name) => name.endsWith(".ts"))
  .map((name) => name.slice(0, -3))
  .sort();

const EXPECTED_TOP_LEVEL = ["functions", "host.json", "package-lock.json", "package.json", "shared", "tsconfig.build.json", "tsconfig.json"];

function makePackage(out: string, root = repo): string[] {
  execFileSync(process.execPath, [packageScript, "--out", out, "--root", root], { cwd: repo, stdio: "pipe" });
  return new AdmZip(out)
    .getEntries()
    .map((entry) => entry.entryName)
    .sort();
}

function sha256(path: string): string {
  return createHash("sha256").update(readFileSync(path)).digest("hex");
}

/**
 * A child's environment without the test runner's NODE_OPTIONS or any path into this project: npx
 * and npm put this project's node_modules/.bin on PATH, and with it a build would find this
 * project's tsc where the build service has none.
 */
function childEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const path = (process.env.PATH ?? "")
    .split(delimiter)
    .filter((entry) => !entry.split(sep).includes("node_modules") && !resolve(entry).startsWith(repo))
    .join(delimiter);
  return { PATH: path, HOME: process.env.HOME, npm_config_update_notifier: "false", ...extra };
}

describe("azure.yaml and .funcignore", () => {
  it("build remotely, with an azd that checks .funcignore against it", () => {
    const azure = parse(readFileSync(join(repo, "azure.yaml"), "utf8")) as {
      requiredVersions?: { azd?: string };
      services: Record<string, { project: string; language: string; host: string; remoteBuild?: boolean }>;
    };
    expect(azure.services.api).toMatchObject({ project: ".", host: "function", remoteBuild: true });
    expect(azure.requiredVersions?.azd).toMatch(/^>= 1\.23\.(1[3-9]|[2-9]\d)$/);
    // azd refuses remoteBuild: true unless .funcignore excludes node_modules; the remote build needs the sources.
    const rules = ignore().add(readFileSync(join(repo, ".funcignore"), "utf8"));
    expect(rules.ignores("node_modules/")).toBe(true);
    for (const kept of ["functions/exportAuditLogs.ts", "shared/config.ts", "tsconfig.json", "tsconfig.build.json", "package-lock.json", "host.json"]) {
      expect(rules.ignores(kept), kept).toBe(false);
    }
  });
});

// The scripts npm runs for the root package itself on `npm install` (docs: npm scripts, "npm install").
const INSTALL_LIFECYCLE = ["preinstall", "install", "postinstall", "prepublish", "preprepare", "prepare", "postprepare"];

describe("package.json and the remote build", () => {
  const manifest = JSON.parse(readFileSync(join(repo, "package.json"), "utf8")) as { scripts: Record<string, string> };

  it("runs none of its own scripts on install: the build's production-only install has neither the sources nor TypeScript", () => {
    expect(Object.keys(manifest.scripts).filter((name) => INSTALL_LIFECYCLE.includes(name))).toEqual([]);
    // What the remote build runs after the full install, and what must compile the app.
    expect(manifest.scripts.build).toBe("tsc -p tsconfig.build.json");
  });

  it("is what the production-only install needs: with a prepare that compiles it stops there, as it did", () => {
    const work = mkdtempSync(join(tmpdir(), "dbx-audit-prepare-"));
    try {
      cpSync(join(repo, "package-lock.json"), join(work, "package-lock.json"));
      const withPrepare = { ...manifest, scripts: { ...manifest.scripts, prepare: "npm run build" } };
      writeFileSync(join(work, "package.json"), `${JSON.stringify(withPrepare, null, 2)}\n`);
      const step = productionOnlyInstall(work, childEnv());
      expect(step.status).not.toBe(0);
      expect(step.output).toMatch(/tsc: not found/);
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  }, 120_000);
});

describe("npm run package", () => {
  let work: string;
  let zipPath: string;
  let entries: string[];

  beforeAll(() => {
    work = mkdtempSync(join(tmpdir(), "dbx-audit-package-"));
    zipPath = join(work, "api.zip");
    entries = makePackage(zipPath);
  });

  afterAll(() => {
    rmSync(work, { recursive: true, force: true });
  });

  it("holds what the remote build needs and nothing else: sources, manifest, lockfile, host.json, tsconfig", () => {
    const topLevel = [...new Set(entries.map((entry) => entry.split("/")[0]!))].sort();
    expect(topLevel).toEqual(EXPECTED_TOP_LEVEL);
    for (const name of functionNames) expect(entries).toContain(`functions/${name}.ts`);
    expect(entries.filter((entry) => /(^|\/)(local\.settings[^/]*\.json|\.env(\.[^/]*)?)$/.test(entry))).toEqual([]);
    expect(entries.filter((entry) => /^(dist|node_modules|test|sandbox|bench|infra|cli|sentinel)\//.test(entry))).toEqual([]);
  });

  it("gives the same bytes every time", () => {
    const again = join(work, "again.zip");
    makePackage(again);
    expect(sha256(again)).toBe(sha256(zipPath));
  });

  it("leaves out local secrets, earlier build output and installed modules that are present in the project folder", () => {
    // A copy of the project's deployable files plus what a developer's folder holds besides.
    const project = join(work, "project");
    mkdirSync(project);
    for (const name of [".funcignore", "package.json", "package-lock.json", "host.json", "tsconfig.json", "tsconfig.build.json"]) {
      cpSync(join(repo, name), join(project, name));
    }
    cpSync(join(repo, "functions"), join(project, "functions"), { recursive: true });
    const extras = {
      "local.settings.json": "{}",
      ".env": "SECRET=1",
      ".env.local": "SECRET=1",
      "dist/functions/removedFunction.js": "",
      "node_modules/typescript/package.json": "{}",
      "test/a.test.ts": "",
      "sandbox/stack.ts": "",
      "infra/main.bicep": "",
      ".deploy/api.zip": "",
      "functions/exportAuditLogs.js.map": "",
    };
    for (const [path, text] of Object.entries(extras)) {
      mkdirSync(dirname(join(project, path)), { recursive: true });
      writeFileSync(join(project, path), text);
    }
    const packed = makePackage(join(work, "fixture.zip"), project);
    expect(packed.filter((entry) => Object.keys(extras).includes(entry))).toEqual([]);
    expect(packed).toContain("functions/exportAuditLogs.ts");

    // And the check above is one that can fail: without .funcignore every one of them ships.
    rmSync(join(project, ".funcignore"));
    writeFileSync(join(project, ".funcignore"), "# nothing\n");
    const unfiltered = makePackage(join(work, "unfiltered.zip"), project);
    expect(unfiltered).toEqual(expect.arrayContaining(Object.keys(extras)));
  });

  it("builds the way the Flex Consumption build does, and what runs holds the production dependencies only", () => {
    const app = join(work, "app");
    new AdmZip(zipPath).extractAllTo(app, true);
    expect(existsSync(join(app, "dist"))).toBe(false);

    // The production-only install (package.json and the lockfile alone, scripts on), the full
    // install, `npm run build` with the lockfile's own TypeScript, then the production modules only.
    const steps = oryxNodeBuild(app, childEnv());
    expect(steps.map((step) => step.command)).toEqual([
      "npm install --production --offline --no-audit --no-fund",
      "npm install --offline --no-audit --no-fund",
      "npm run build",
    ]);
    expect(devOnly).toEqual(
      expect.arrayContaining(["node_modules/typescript", "node_modules/vitest", "node_modules/@duckdb/node-api", "node_modules/azurite"]),
    );
    expect(devOnly.filter((path) => existsSync(join(app, path)))).toEqual([]);

    const built = readdirSync(join(app, "dist", "functions"))
      .filter((name) => name.endsWith(".js"))
      .sort();
    expect(built).toEqual(functionNames.map((name) => `${name}.js`));

    const output = execFileSync(process.execPath, [functionsHost], {
      cwd: app,
      env: childEnv({ NODE_OPTIONS: `--import ${netGuard}` }),
      encoding: "utf8",
    });
    const result = JSON.parse(output.trim().split("\n").pop()!) as {
      registered: { name: string; bindings: Record<string, { type: string; direction: string }> }[];
      loaded: string[];
      functionsLibrary: string;
      warnings: string[];
    };
    expect(result.loaded).toEqual(functionNames.map((name) => `dist/functions/${name}.js`));
    expect(result.functionsLibrary.startsWith(join(app, "node_modules"))).toBe(true);
    expect(result.registered.map((f) => f.name).sort()).toEqual(functionNames);
    for (const registration of result.registered) {
      const triggers = Object.values(registration.bindings).filter((binding) => binding.type.endsWith("Trigger"));
      expect(triggers, registration.name).toHaveLength(1);
    }
    expect(result.warnings).toEqual([]);
  }, 300_000);
});
