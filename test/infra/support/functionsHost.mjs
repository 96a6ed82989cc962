// Loads a Function App's entry files the way the Node.js worker does, in the current folder:
// `@azure/functions` registers each function through the worker's `@azure/functions-core`
// module, which only the Functions host provides (outside it the library registers nothing and
// warns). This stands in for that module, records every registerFunction call, requires the
// files that package.json "main" names (a glob, as the worker reads it), and prints one JSON line:
// { registered: [{ name, bindings }], loaded: [files], functionsLibrary: path, warnings: [...] }.
import Module, { createRequire } from "node:module";
import { readdirSync, readFileSync } from "node:fs";
import { join, posix } from "node:path";

const cwd = process.cwd();
const registered = [];
const warnings = [];
const core = {
  version: "3.10.1",
  hostVersion: "4.1037.0",
  setProgrammingModel() {},
  getProgrammingModel() {
    return undefined;
  },
  registerFunction(metadata, callback) {
    registered.push({ name: metadata.name, bindings: metadata.bindings, handler: typeof callback });
    return { dispose() {} };
  },
  registerHook() {
    return { dispose() {} };
  },
  log(level, category, message) {
    if (level === "warning" || level === "error") warnings.push(message);
  },
};
const load = Module._load;
Module._load = function (request, ...rest) {
  if (request === "@azure/functions-core") return core;
  return load.call(this, request, ...rest);
};
const warn = console.warn;
console.warn = (...args) => {
  warnings.push(args.join(" "));
  warn(...args);
};

const require = createRequire(join(cwd, "package.json"));
const main = JSON.parse(readFileSync(join(cwd, "package.json"), "utf8")).main;
const dir = posix.dirname(main);
const pattern = new RegExp(`^${posix.basename(main).replace(/[.]/g, "\\.").replace(/\*/g, "[^/]*")}$`);
const loaded = readdirSync(join(cwd, dir))
  .filter((name) => pattern.test(name))
  .sort()
  .map((name) => posix.join(dir, name));
for (const file of loaded) require(join(cwd, file));
process.stdout.write(`${JSON.stringify({ registered, loaded, functionsLibrary: require.resolve("@azure/functions"), warnings })}\n`);
