import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { Language, Parser, type Node, type Tree } from "web-tree-sitter";

// Bicep read with a real grammar (tree-sitter-bicep's WebAssembly build under web-tree-sitter), so
// the checks below look at declarations, not at text that happens to look like them. No Bicep
// compiler can be installed here; this is what stands in for `bicep build`'s syntax and
// cross-file checks.

let parser: Parser | undefined;

export async function bicepParser(): Promise<Parser> {
  if (!parser) {
    await Parser.init();
    const language = await Language.load(require.resolve("tree-sitter-bicep/tree-sitter-bicep.wasm"));
    parser = new Parser();
    parser.setLanguage(language);
  }
  return parser;
}

export interface SyntaxProblem {
  line: number;
  column: number;
  kind: "ERROR" | "MISSING";
  text: string;
}

export function syntaxProblems(tree: Tree): SyntaxProblem[] {
  const problems: SyntaxProblem[] = [];
  const walk = (node: Node): void => {
    if (node.type === "ERROR" || node.isMissing) {
      problems.push({
        line: node.startPosition.row + 1,
        column: node.startPosition.column + 1,
        kind: node.isMissing ? "MISSING" : "ERROR",
        text: node.text.slice(0, 80),
      });
    }
    for (const child of node.children) if (child) walk(child);
  };
  walk(tree.rootNode);
  return problems;
}

export interface ParamDecl {
  name: string;
  type: string;
  defaultValue: Node | undefined;
  decorators: Map<string, Node[]>;
}

export interface ModuleDecl {
  symbol: string;
  path: string;
  params: Map<string, Node>;
  node: Node;
}

export interface ResourceDecl {
  symbol: string;
  type: string;
  /** The version after `@`; a nested resource without its own type string takes its parent's. */
  apiVersion: string;
  existing: boolean;
  body: Node;
}

export interface BicepFile {
  path: string;
  tree: Tree;
  params: Map<string, ParamDecl>;
  vars: Map<string, Node>;
  modules: ModuleDecl[];
  /** Every resource, nested ones included, with its full type ('Microsoft.Web/sites/config'). */
  resources: ResourceDecl[];
  outputs: Set<string>;
}

const named = (node: Node): Node[] => node.namedChildren.filter((child): child is Node => child !== null);

/** The string a `string` node holds, when it is a plain literal (no interpolation). */
export function stringLiteral(node: Node | undefined | null): string | undefined {
  if (!node || node.type !== "string") return undefined;
  const parts = named(node);
  if (parts.some((part) => part.type !== "string_content" && part.type !== "escape_sequence")) return undefined;
  return parts.map((part) => (part.type === "escape_sequence" ? part.text.slice(1) : part.text)).join("");
}

/** A literal's JavaScript value (string, number, boolean, null), or undefined for any expression. */
export function literal(node: Node | undefined | null): string | number | boolean | null | undefined {
  if (!node) return undefined;
  switch (node.type) {
    case "string":
      return stringLiteral(node);
    case "number":
      return Number(node.text);
    case "boolean":
      return node.text === "true";
    case "null":
      return null;
    default:
      return undefined;
  }
}

function propertyKey(property: Node): string | undefined {
  const key = named(property)[0];
  if (!key) return undefined;
  if (key.type === "identifier") return key.text;
  return stringLiteral(key);
}

/** The properties of an object literal, by key (nested resource declarations left out). */
export function objectProperties(object: Node | undefined | null): Map<string, Node> {
  const properties = new Map<string, Node>();
  if (!object || object.type !== "object") return properties;
  for (const property of named(object)) {
    if (property.type !== "object_property") continue;
    const children = named(property);
    const key = propertyKey(property);
    const value = children[children.length - 1];
    if (key !== undefined && value && children.length >= 2) properties.set(key, value);
  }
  return properties;
}

/** The value at a dotted path of object literals ('properties.siteConfig.ftpsState'). */
export function valueAt(object: Node | undefined, path: string): Node | undefined {
  let current: Node | undefined = object;
  for (const key of path.split(".")) {
    current = objectProperties(current).get(key);
    if (!current) return undefined;
  }
  return current;
}

/** A module's or resource's body: the object after `=`, through `if (...)` when there is one. */
export function declarationBody(node: Node): Node | undefined {
  for (const child of named(node)) {
    if (child.type === "object") return child;
    if (child.type === "if_statement") return named(child).find((part) => part.type === "object");
    if (child.type === "for_statement") {
      const body = named(child).pop();
      if (body?.type === "object") return body;
      if (body?.type === "if_statement") return named(body).find((part) => part.type === "object");
    }
  }
  return undefined;
}

function collectResources(node: Node, parentType: string | undefined, into: ResourceDecl[], parentVersion = ""): void {
  const children = named(node);
  const symbol = children.find((child) => child.type === "identifier")?.text ?? "";
  const declaredType = stringLiteral(children.find((child) => child.type === "string")) ?? "";
  const type = parentType && !declaredType.includes("/") ? `${parentType}/${declaredType.split("@")[0]}` : declaredType.split("@")[0]!;
  const body = declarationBody(node);
  const existing = node.children.some((child) => child?.type === "existing");
  const apiVersion = declaredType.split("@")[1] ?? parentVersion;
  if (body) {
    into.push({ symbol, type, apiVersion, existing, body });
    for (const property of named(body)) {
      const nested = named(property)[0];
      if (property.type === "object_property" && nested?.type === "resource_declaration") collectResources(nested, type, into, apiVersion);
    }
  }
}

export function readBicep(path: string, tree: Tree): BicepFile {
  const file: BicepFile = { path, tree, params: new Map(), vars: new Map(), modules: [], resources: [], outputs: new Set() };
  let decorators = new Map<string, Node[]>();
  for (const node of named(tree.rootNode)) {
    if (node.type === "decorators") {
      decorators = new Map();
      for (const decorator of named(node)) {
        const call = named(decorator)[0];
        if (call?.type !== "call_expression") continue;
        const name = call.childForFieldName("function")?.text ?? "";
        const args = call.childForFieldName("arguments");
        decorators.set(name, args ? named(args) : []);
      }
      continue;
    }
    const children = named(node);
    const symbol = children.find((child) => child.type === "identifier")?.text ?? "";
    if (node.type === "parameter_declaration") {
      const typeIndex = children.findIndex((child) => child.type === "type");
      const hasDefault = node.children.some((child) => child?.type === "=");
      file.params.set(symbol, {
        name: symbol,
        type: typeIndex >= 0 ? children[typeIndex]!.text : "",
        defaultValue: hasDefault ? children[children.length - 1] : undefined,
        decorators,
      });
    } else if (node.type === "variable_declaration") {
      const value = children[children.length - 1];
      if (value) file.vars.set(symbol, value);
    } else if (node.type === "module_declaration") {
      const path = stringLiteral(children.find((child) => child.type === "string")) ?? "";
      const body = declarationBody(node);
      file.modules.push({ symbol, path, params: objectProperties(valueAt(body, "params")), node });
    } else if (node.type === "resource_declaration") {
      collectResources(node, undefined, file.resources);
    } else if (node.type === "output_declaration") {
      file.outputs.add(symbol);
    }
    decorators = new Map();
  }
  return file;
}

/** Every node of a (sub)tree. */
export function* descendants(node: Node): Generator<Node> {
  yield node;
  for (const child of node.children) if (child) yield* descendants(child);
}

/** `symbol.outputs.name` references in a file: which module outputs it reads. */
export function outputReferences(file: BicepFile): { module: string; output: string; line: number }[] {
  const references: { module: string; output: string; line: number }[] = [];
  for (const node of descendants(file.tree.rootNode)) {
    if (node.type !== "member_expression") continue;
    const object = node.childForFieldName("object");
    if (object?.type !== "member_expression" || object.childForFieldName("property")?.text !== "outputs") continue;
    const module = object.childForFieldName("object");
    const output = node.childForFieldName("property");
    if (module?.type === "identifier" && output) references.push({ module: module.text, output: output.text, line: node.startPosition.row + 1 });
  }
  return references;
}

export interface Problem {
  file: string;
  message: string;
}

/**
 * Module wiring across files: each module's file exists, every parameter it is given is declared
 * there, every parameter without a default is given, and every `module.outputs.x` read exists.
 */
export function moduleProblems(files: Map<string, BicepFile>, root: string): Problem[] {
  const problems: Problem[] = [];
  for (const file of files.values()) {
    const where = relative(root, file.path);
    const modules = new Map(file.modules.map((module) => [module.symbol, module]));
    for (const module of file.modules) {
      const target = files.get(resolve(dirname(file.path), module.path));
      if (!target) {
        problems.push({ file: where, message: `module ${module.symbol}: ${module.path} is not a Bicep file of this template` });
        continue;
      }
      for (const given of module.params.keys()) {
        if (!target.params.has(given))
          problems.push({ file: where, message: `module ${module.symbol} passes ${given}, which ${module.path} does not declare` });
      }
      for (const param of target.params.values()) {
        if (!param.defaultValue && !module.params.has(param.name)) {
          problems.push({ file: where, message: `module ${module.symbol} does not pass ${param.name}, which ${module.path} requires` });
        }
      }
    }
    for (const reference of outputReferences(file)) {
      const module = modules.get(reference.module);
      if (!module) continue; // a resource's or an existing symbol's outputs: not a module
      const target = files.get(resolve(dirname(file.path), module.path));
      if (target && !target.outputs.has(reference.output)) {
        problems.push({ file: where, message: `line ${reference.line}: ${reference.module}.outputs.${reference.output} is not an output of ${module.path}` });
      }
    }
  }
  return problems;
}

export async function readTemplate(root: string): Promise<Map<string, BicepFile>> {
  const parser = await bicepParser();
  const files = new Map<string, BicepFile>();
  const walk = (dir: string): void => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const full = join(dir, entry.name);
      if (entry.isDirectory()) walk(full);
      else if (entry.name.endsWith(".bicep")) {
        const tree = parser.parse(readFileSync(full, "utf8"));
        if (!tree) throw new Error(`${full}: the parser returned no tree`);
        files.set(full, readBicep(full, tree));
      }
    }
  };
  walk(root);
  return files;
}

export async function parseBicepText(text: string, path = "fixture.bicep"): Promise<BicepFile> {
  const tree = (await bicepParser()).parse(text);
  if (!tree) throw new Error("the parser returned no tree");
  return readBicep(path, tree);
}

export type BicepValue = string | number | boolean | null | BicepValue[] | { [key: string]: BicepValue };

/** What `fail('...')` does at deployment: stops it with that message. */
export class BicepFailure extends Error {}

const isObject = (value: BicepValue): value is { [key: string]: BicepValue } => typeof value === "object" && value !== null && !Array.isArray(value);

/**
 * Evaluates an expression of the small subset the template's settings logic uses: literals, objects,
 * arrays, parameters and variables, parentheses, `? :`, `==`, `!=`, `&&`, `||`, `!`, member and index
 * access, and `empty`, `length`, `string`, `union` (of objects, shallow, or of arrays), `intersection`,
 * `objectKeys`, `items`, `join`, `filter` and `toObject` (with lambdas), `loadTextContent` and `fail`. `values` gives
 * parameters (and any resource symbol an expression reads) their values; a parameter not given takes its
 * default. Anything else throws, so a construct this does not know fails a test instead of being guessed.
 * `string()` of an array or object is its JSON, as Resource Manager's is.
 *
 * tree-sitter-bicep 1.1.0 groups some expressions differently from Bicep: it reads `a && b[0].c` as
 * `(a && b)[0].c` and `x ? y : z[0]` as `(x ? y : z)[0]`. Those shapes are refused here (Bicep itself
 * would need the parentheses to mean them): parenthesize the operands in the template.
 */
export function evaluate(node: Node, file: BicepFile, values: Record<string, BicepValue>): BicepValue {
  const recurse = (child: Node | null | undefined): BicepValue => {
    if (!child) throw new Error(`incomplete expression: ${node.text}`);
    return evaluate(child, file, values);
  };
  const operator = (): string => node.children.find((child) => child !== null && !child.isNamed)?.type ?? "";
  const misgrouped = (child: Node | null | undefined, kinds: string[]): void => {
    if (child && kinds.includes(child.type)) throw new Error(`parenthesize: the Bicep grammar groups this differently from Bicep: ${node.text}`);
  };
  switch (node.type) {
    case "string":
      return named(node)
        .map((part) => {
          if (part.type === "string_content") return part.text;
          if (part.type === "escape_sequence") return part.text.slice(1);
          if (part.type === "interpolation") {
            const value = recurse(named(part)[0]);
            return typeof value === "string" ? value : JSON.stringify(value);
          }
          throw new Error(`unsupported string part (${part.type}): ${node.text}`);
        })
        .join("");
    case "number":
    case "boolean":
    case "null": {
      const value = literal(node);
      if (value === undefined) throw new Error(`not a plain literal: ${node.text}`);
      return value;
    }
    case "array":
      return named(node)
        .filter((child) => child.type !== "comment")
        .map((child) => recurse(child));
    case "object":
      return Object.fromEntries([...objectProperties(node)].map(([key, value]) => [key, recurse(value)]));
    case "parenthesized_expression":
      return recurse(named(node)[0]);
    case "identifier": {
      if (node.text in values) return values[node.text]!;
      const variable = file.vars.get(node.text);
      if (variable) return recurse(variable);
      const param = file.params.get(node.text);
      if (param?.defaultValue) return recurse(param.defaultValue);
      throw new Error(`${node.text} has no value: give it one`);
    }
    case "ternary_expression": {
      const condition = recurse(node.childForFieldName("condition"));
      if (typeof condition !== "boolean") throw new Error(`condition is not a bool: ${node.text}`);
      return recurse(node.childForFieldName(condition ? "consequence" : "alternative"));
    }
    case "unary_expression": {
      const argument = recurse(node.childForFieldName("argument"));
      if (operator() !== "!" || typeof argument !== "boolean") throw new Error(`unsupported: ${node.text}`);
      return !argument;
    }
    case "binary_expression": {
      misgrouped(node.childForFieldName("left"), ["ternary_expression"]);
      misgrouped(node.childForFieldName("right"), ["ternary_expression"]);
      const op = operator();
      const left = recurse(node.childForFieldName("left"));
      if (op === "&&" || op === "||") {
        if (typeof left !== "boolean") throw new Error(`not a bool: ${node.text}`);
        if (op === "&&" ? !left : left) return left;
        const right = recurse(node.childForFieldName("right"));
        if (typeof right !== "boolean") throw new Error(`not a bool: ${node.text}`);
        return right;
      }
      const right = recurse(node.childForFieldName("right"));
      if (op === "==") return JSON.stringify(left) === JSON.stringify(right);
      if (op === "!=") return JSON.stringify(left) !== JSON.stringify(right);
      throw new Error(`unsupported operator ${op}: ${node.text}`);
    }
    case "member_expression": {
      misgrouped(node.childForFieldName("object"), ["binary_expression", "ternary_expression", "unary_expression"]);
      const object = recurse(node.childForFieldName("object"));
      const property = node.childForFieldName("property")?.text ?? "";
      if (!isObject(object) || !(property in object)) throw new Error(`no property ${property}: ${node.text}`);
      return object[property]!;
    }
    case "subscript_expression": {
      misgrouped(node.childForFieldName("object"), ["binary_expression", "ternary_expression", "unary_expression"]);
      const object = recurse(node.childForFieldName("object"));
      const index = recurse(node.childForFieldName("index"));
      if (Array.isArray(object) && typeof index === "number" && index >= 0 && index < object.length) return object[index]!;
      if (isObject(object) && typeof index === "string" && index in object) return object[index]!;
      throw new Error(`index out of range: ${node.text}`);
    }
    case "call_expression": {
      const name = node.childForFieldName("function")?.text ?? "";
      const argumentList = node.childForFieldName("arguments");
      const argumentNodes = argumentList ? named(argumentList) : [];
      if (name === "filter" || name === "toObject") return withLambdas(name, argumentNodes, node, file, values);
      const args = argumentNodes.map((arg) => recurse(arg));
      switch (name) {
        case "empty": {
          const [value] = args;
          return value === null || value === "" || (Array.isArray(value) && value.length === 0) || (isObject(value!) && Object.keys(value).length === 0);
        }
        case "length": {
          const [value] = args;
          if (typeof value === "string" || Array.isArray(value)) return value.length;
          if (value !== undefined && isObject(value)) return Object.keys(value).length;
          throw new Error(`length of what: ${node.text}`);
        }
        case "string": {
          const [value] = args;
          return typeof value === "string" ? value : JSON.stringify(value);
        }
        case "union":
          if (args.every(Array.isArray)) return [...new Set(args.flat().map((item) => JSON.stringify(item)))].map((item) => JSON.parse(item) as BicepValue);
          if (!args.every(isObject)) throw new Error(`union of objects, or of arrays: ${node.text}`);
          return Object.assign({}, ...args) as BicepValue;
        case "intersection": {
          if (!args.every(Array.isArray)) throw new Error(`intersection of arrays only: ${node.text}`);
          const [first = [], ...rest] = args as BicepValue[][];
          return first.filter((item) => rest.every((other) => other.some((candidate) => JSON.stringify(candidate) === JSON.stringify(item))));
        }
        case "objectKeys": {
          const [value] = args;
          if (value === undefined || !isObject(value)) throw new Error(`objectKeys of an object only: ${node.text}`);
          return Object.keys(value);
        }
        case "items": {
          const [value] = args;
          if (value === undefined || !isObject(value)) throw new Error(`items of an object only: ${node.text}`);
          return Object.entries(value).map(([key, item]) => ({ key, value: item }));
        }
        case "join": {
          const [list, separator] = args;
          if (!Array.isArray(list) || typeof separator !== "string") throw new Error(`join(array, string) only: ${node.text}`);
          return list.map((item) => (typeof item === "string" ? item : JSON.stringify(item))).join(separator);
        }
        case "loadTextContent": {
          // Bicep reads the file at build time, relative to the template that names it.
          const [path] = args;
          if (typeof path !== "string" || args.length !== 1) throw new Error(`loadTextContent of one path only: ${node.text}`);
          return readFileSync(resolve(dirname(file.path), path), "utf8");
        }
        case "fail":
          throw new BicepFailure(typeof args[0] === "string" ? args[0] : JSON.stringify(args[0]));
        default:
          throw new Error(`unsupported function ${name}: ${node.text}`);
      }
    }
    default:
      throw new Error(`unsupported expression (${node.type}): ${node.text}`);
  }
}

/**
 * `filter(array, x => ...)` and `toObject(array, x => key[, x => value])`. tree-sitter-bicep 1.1.0 reads
 * a lambda whose body is a member access, `x => x.key`, as `(x => x).key`: that shape is read as Bicep
 * means it, the access applied to the lambda's result.
 */
function withLambdas(name: string, argumentNodes: Node[], node: Node, file: BicepFile, values: Record<string, BicepValue>): BicepValue {
  const lambda = (argument: Node | undefined): ((item: BicepValue) => BicepValue) => {
    let property: string | undefined;
    let expression = argument;
    if (expression?.type === "member_expression" && expression.childForFieldName("object")?.type === "lambda_expression") {
      property = expression.childForFieldName("property")?.text;
      expression = expression.childForFieldName("object") ?? undefined;
    }
    const parts = expression?.type === "lambda_expression" ? named(expression) : [];
    const parameter = parts[0];
    const body = parts[parts.length - 1];
    if (parts.length !== 2 || parameter?.type !== "identifier" || !body) throw new Error(`a lambda of one parameter expected: ${node.text}`);
    return (item) => {
      const result = evaluate(body, file, { ...values, [parameter.text]: item });
      if (property === undefined) return result;
      if (!isObject(result) || !(property in result)) throw new Error(`no property ${property}: ${node.text}`);
      return result[property]!;
    };
  };
  const list = argumentNodes[0] ? evaluate(argumentNodes[0], file, values) : undefined;
  if (!Array.isArray(list)) throw new Error(`${name} of an array only: ${node.text}`);
  if (name === "filter") {
    const keep = lambda(argumentNodes[1]);
    return list.filter((item) => {
      const kept = keep(item);
      if (typeof kept !== "boolean") throw new Error(`filter's lambda must return a bool: ${node.text}`);
      return kept;
    });
  }
  const keyOf = lambda(argumentNodes[1]);
  const valueOf = argumentNodes[2] ? lambda(argumentNodes[2]) : (item: BicepValue) => item;
  return Object.fromEntries(
    list.map((item) => {
      const key = keyOf(item);
      if (typeof key !== "string") throw new Error(`toObject's keys must be strings: ${node.text}`);
      return [key, valueOf(item)];
    }),
  );
}
