import { spawn } from "node:child_process";
import { join } from "node:path";

/** The installed command's launcher, as `npx dbx-audit` runs it. */
export const LAUNCHER = join(__dirname, "..", "..", "bin", "dbx-audit.js");

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** `dbx-audit <args>` in a process of its own with exactly this environment: its exit code and output. */
export function runCli(args: readonly string[], env: NodeJS.ProcessEnv): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [LAUNCHER, ...args], { env });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    child.on("error", reject);
    child.on("exit", (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}
