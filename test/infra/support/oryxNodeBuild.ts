import { spawnSync } from "node:child_process";
import { cpSync, existsSync, mkdirSync, rmSync } from "node:fs";
import { join } from "node:path";

// What the Flex Consumption remote build (Oryx's Node build script, NodeBashBuildSnippet.sh.tpl)
// does with the uploaded sources when PRUNE_DEV_DEPENDENCIES is true and package.json has both
// dependencies and devDependencies:
//   1. copies package.json and package-lock.json (and .npmrc, when there is one) alone into
//      .oryx_prod_node_modules and runs `npm install --production` there, scripts on;
//   2. copies that node_modules into the app's folder;
//   3. in the app's folder: `npm install`, then `npm run build` (package.json has "build");
//   4. replaces the app's node_modules with the production one (rsync --delete).
// The output leaves out .oryx_all_node_modules and .oryx_prod_node_modules. Steps 1 and 3 run
// every lifecycle script of the root package, so a "prepare" that compiles runs in step 1 without
// TypeScript, or the sources, and the build stops (`sh: 1: tsc: not found`, exit 127).
// --offline: from npm's cache, which the project's own `npm ci` filled; nothing leaves the machine.

const PROD_MODULES_DIR = ".oryx_prod_node_modules";
const MANIFEST_FILES = ["package.json", "package-lock.json", ".npmrc"];

export interface StepResult {
  command: string;
  status: number | null;
  output: string;
}

function run(command: string[], cwd: string, env: NodeJS.ProcessEnv): StepResult {
  const [file, ...args] = command;
  const result = spawnSync(file!, args, { cwd, env, encoding: "utf8", maxBuffer: 64 * 1024 * 1024 });
  return { command: command.join(" "), status: result.status, output: `${result.stdout ?? ""}${result.stderr ?? ""}` };
}

function mustSucceed(step: StepResult): StepResult {
  if (step.status !== 0) throw new Error(`'${step.command}' exited with ${String(step.status)}:\n${step.output.slice(-4000)}`);
  return step;
}

/** Step 1: the production-only install in a folder holding only the manifest and the lockfile. */
export function productionOnlyInstall(appDir: string, env: NodeJS.ProcessEnv): StepResult {
  const prodDir = join(appDir, PROD_MODULES_DIR);
  rmSync(prodDir, { recursive: true, force: true });
  mkdirSync(prodDir);
  for (const name of MANIFEST_FILES) if (existsSync(join(appDir, name))) cpSync(join(appDir, name), join(prodDir, name));
  return run(["npm", "install", "--production", "--offline", "--no-audit", "--no-fund"], prodDir, env);
}

/** Every step, in order; throws with npm's output at the first that fails. */
export function oryxNodeBuild(appDir: string, env: NodeJS.ProcessEnv): StepResult[] {
  const steps = [mustSucceed(productionOnlyInstall(appDir, env))];
  const prodModules = join(appDir, PROD_MODULES_DIR, "node_modules");
  cpSync(prodModules, join(appDir, "node_modules"), { recursive: true, verbatimSymlinks: true });
  steps.push(mustSucceed(run(["npm", "install", "--offline", "--no-audit", "--no-fund"], appDir, env)));
  steps.push(mustSucceed(run(["npm", "run", "build"], appDir, env)));
  rmSync(join(appDir, "node_modules"), { recursive: true, force: true });
  cpSync(prodModules, join(appDir, "node_modules"), { recursive: true, verbatimSymlinks: true });
  // The build's output leaves the production install's folder out (and the copy of every module
  // it keeps for the next build, .oryx_all_node_modules, which this emulation does not make).
  rmSync(join(appDir, PROD_MODULES_DIR), { recursive: true, force: true });
  return steps;
}
