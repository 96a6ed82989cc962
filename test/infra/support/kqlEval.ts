// A small evaluator for the KQL our analytic rules use, so a rule's query can run on rows here
// (there is no Kusto engine offline). It knows the operators and functions the rules use and
// refuses anything else, so a rule that starts using something new fails loudly rather than
// being evaluated wrongly. Semantics follow the Kusto documentation: string comparison with ==
// and `in` is case-sensitive, =~ is not; `has` matches a whole term (a maximal run of ASCII letters
// and digits), ignoring case; a comparison with null is null, and `where` keeps only true;
// tostring(null) is ""; datetime_diff counts calendar boundaries crossed.

type Value = null | string | number | boolean | Date | Span | Value[] | { [key: string]: Value };
interface Span {
  spanMs: number;
}
export type KqlRow = Record<string, Value>;

type Token = { kind: "ident" | "num" | "str" | "op"; text: string; value?: string | number };
type Node =
  | { kind: "lit"; value: Value }
  | { kind: "col"; name: string }
  | { kind: "member"; target: Node; name: string }
  | { kind: "index"; target: Node; index: Node }
  | { kind: "call"; name: string; args: Node[] }
  | { kind: "unary"; op: string; operand: Node }
  | { kind: "binary"; op: string; left: Node; right: Node }
  | { kind: "in"; negated: boolean; left: Node; list: Node[] };

const SPAN_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

function tokenize(text: string): Token[] {
  const tokens: Token[] = [];
  const pattern =
    /\s+|(@"(?:[^"]|"")*")|("(?:[^"\\]|\\.)*")|(\d+(?:\.\d+)?(?:ms|s|m|h|d)?\b)|([A-Za-z_][A-Za-z0-9_]*)|(==|!=|=~|!~|<=|>=|!in\b|!has\b|[<>=(),.[\]|+\-*/])/y;
  let at = 0;
  while (at < text.length) {
    pattern.lastIndex = at;
    const match = pattern.exec(text);
    if (!match) throw new Error(`KQL: cannot read ${JSON.stringify(text.slice(at, at + 20))}`);
    at = pattern.lastIndex;
    const [, verbatim, quoted, number, ident, op] = match;
    if (verbatim) tokens.push({ kind: "str", text: verbatim, value: verbatim.slice(2, -1).replace(/""/g, '"') });
    else if (quoted) tokens.push({ kind: "str", text: quoted, value: JSON.parse(quoted) as string });
    else if (number) tokens.push({ kind: "num", text: number });
    else if (ident) tokens.push({ kind: "ident", text: ident });
    else if (op) tokens.push({ kind: "op", text: op });
  }
  return tokens;
}

class Parser {
  private at = 0;
  constructor(private readonly tokens: Token[]) {}

  done(): boolean {
    return this.at >= this.tokens.length;
  }
  peek(text?: string): Token | undefined {
    const token = this.tokens[this.at];
    return text === undefined || token?.text === text ? token : undefined;
  }
  take(text?: string): Token {
    const token = this.tokens[this.at];
    if (!token || (text !== undefined && token.text !== text)) throw new Error(`KQL: expected ${text ?? "a token"} at ${token?.text ?? "the end"}`);
    this.at += 1;
    return token;
  }

  expression(): Node {
    return this.binaryLevel(0);
  }

  private static readonly LEVELS: string[][] = [
    ["or"],
    ["and"],
    ["==", "!=", "=~", "!~", "<", "<=", ">", ">=", "has", "!has", "in", "!in", "matches"],
    ["+", "-"],
    ["*", "/"],
  ];

  private binaryLevel(level: number): Node {
    if (level === Parser.LEVELS.length) return this.unary();
    let left = this.binaryLevel(level + 1);
    for (;;) {
      const token = this.peek();
      if (!token || !Parser.LEVELS[level]!.includes(token.text) || token.kind === "str") return left;
      this.take();
      if (token.text === "in" || token.text === "!in") {
        this.take("(");
        const list = this.list(")");
        left = { kind: "in", negated: token.text === "!in", left, list };
      } else if (token.text === "matches") {
        this.take("regex");
        left = { kind: "binary", op: "matches", left, right: this.binaryLevel(level + 1) };
      } else {
        left = { kind: "binary", op: token.text, left, right: this.binaryLevel(level + 1) };
      }
    }
  }

  private unary(): Node {
    if (this.peek("-")) {
      this.take();
      return { kind: "unary", op: "-", operand: this.unary() };
    }
    return this.postfix();
  }

  private postfix(): Node {
    let node = this.primary();
    for (;;) {
      if (this.peek(".")) {
        this.take();
        node = { kind: "member", target: node, name: this.take().text };
      } else if (this.peek("[")) {
        this.take();
        const index = this.expression();
        this.take("]");
        node = { kind: "index", target: node, index };
      } else return node;
    }
  }

  private primary(): Node {
    const token = this.take();
    if (token.kind === "str") return { kind: "lit", value: token.value as string };
    if (token.kind === "num") {
      const match = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)?$/.exec(token.text)!;
      return { kind: "lit", value: match[2] ? { spanMs: Number(match[1]) * SPAN_UNITS[match[2]]! } : Number(match[1]) };
    }
    if (token.text === "(") {
      const inner = this.expression();
      this.take(")");
      return inner;
    }
    if (token.kind !== "ident") throw new Error(`KQL: unexpected ${token.text}`);
    if (token.text === "true" || token.text === "false") return { kind: "lit", value: token.text === "true" };
    if (this.peek("(")) {
      this.take();
      return { kind: "call", name: token.text, args: this.list(")") };
    }
    return { kind: "col", name: token.text };
  }

  /** Comma-separated expressions up to the closing token. */
  list(close: string): Node[] {
    const items: Node[] = [];
    while (!this.peek(close)) {
      items.push(this.expression());
      if (!this.peek(close)) this.take(",");
    }
    this.take(close);
    return items;
  }

  /** `Name = expr` or `expr` items separated by commas, up to `by` or the end. */
  assignments(): { name?: string; node: Node }[] {
    const items: { name?: string; node: Node }[] = [];
    while (!this.done() && !this.peek("by")) {
      const next = this.tokens[this.at + 1];
      let name: string | undefined;
      if (this.peek()?.kind === "ident" && next?.text === "=") {
        name = this.take().text;
        this.take("=");
      }
      items.push(name === undefined ? { node: this.expression() } : { name, node: this.expression() });
      if (!this.done() && !this.peek("by")) this.take(",");
    }
    return items;
  }
}

/** The context a query runs in: the time `now()` and `ago()` are relative to, and each row's ingestion time. */
export interface KqlContext {
  nowMs: number;
  ingestionTime: (row: KqlRow) => Date;
}

const DAY_MS = 86_400_000;

function isNull(value: Value | undefined): value is null | undefined {
  return value === null || value === undefined;
}
function asNumber(value: Value): number | null {
  if (value instanceof Date) return value.getTime();
  if (typeof value === "object" && value !== null && "spanMs" in value) return (value as Span).spanMs;
  return typeof value === "number" ? value : null;
}
function toText(value: Value): string {
  if (isNull(value)) return "";
  if (value instanceof Date) return value.toISOString();
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}
/** Whole terms of a value as `has` sees them: maximal runs of ASCII letters and digits, lower case. */
export function kqlTerms(text: string): string[] {
  return text.toLowerCase().match(/[a-z0-9]+/g) ?? [];
}

function compare(op: string, left: Value, right: Value): Value {
  if (isNull(left) || isNull(right)) return null;
  if (op === "==" || op === "!=") {
    const same = typeof left === "string" || typeof right === "string" ? toText(left) === toText(right) : asNumber(left) === asNumber(right);
    return op === "==" ? same : !same;
  }
  if (op === "=~" || op === "!~") {
    const same = toText(left).toLowerCase() === toText(right).toLowerCase();
    return op === "=~" ? same : !same;
  }
  const a = asNumber(left);
  const b = asNumber(right);
  if (a === null || b === null) throw new Error(`KQL: ${op} needs numbers, datetimes or timespans`);
  return op === "<" ? a < b : op === "<=" ? a <= b : op === ">" ? a > b : a >= b;
}

function evaluate(node: Node, row: KqlRow, context: KqlContext): Value {
  switch (node.kind) {
    case "lit":
      return node.value;
    case "col":
      if (!(node.name in row)) throw new Error(`KQL: no column ${node.name}`);
      return row[node.name]!;
    case "member": {
      const target = evaluate(node.target, row, context);
      return target !== null && typeof target === "object" && !(target instanceof Date) && !Array.isArray(target)
        ? ((target as Record<string, Value>)[node.name] ?? null)
        : null;
    }
    case "index": {
      const target = evaluate(node.target, row, context);
      const index = evaluate(node.index, row, context);
      return Array.isArray(target) && typeof index === "number" ? (target[index] ?? null) : null;
    }
    case "unary": {
      const value = asNumber(evaluate(node.operand, row, context));
      return value === null ? null : -value;
    }
    case "in": {
      const value = evaluate(node.left, row, context);
      if (isNull(value)) return null;
      const found = node.list.some((item) => toText(evaluate(item, row, context)) === toText(value));
      return node.negated ? !found : found;
    }
    case "binary":
      return binary(node.op, node.left, node.right, row, context);
    case "call":
      return call(node.name, node.args, row, context);
  }
}

function binary(op: string, leftNode: Node, rightNode: Node, row: KqlRow, context: KqlContext): Value {
  const left = evaluate(leftNode, row, context);
  if (op === "and" || op === "or") {
    // Null is not true: `where` drops it, and so do and/or here.
    if (op === "and" && left !== true) return false;
    if (op === "or" && left === true) return true;
    return evaluate(rightNode, row, context) === true;
  }
  const right = evaluate(rightNode, row, context);
  if (op === "has" || op === "!has") {
    const term = toText(right).toLowerCase();
    if (!/^[a-z0-9]+$/.test(term)) throw new Error(`KQL: has with a term that is not letters and digits: ${term}`);
    const found = kqlTerms(toText(left)).includes(term);
    return op === "has" ? found : !found;
  }
  if (op === "matches") return new RegExp(toText(right)).test(toText(left));
  if (["==", "!=", "=~", "!~", "<", "<=", ">", ">="].includes(op)) return compare(op, left, right);
  if (isNull(left) || isNull(right)) return null;
  if (left instanceof Date && op === "-")
    return right instanceof Date ? { spanMs: left.getTime() - right.getTime() } : new Date(left.getTime() - asNumber(right)!);
  const a = asNumber(left)!;
  const b = asNumber(right)!;
  const bothSpans = typeof left === "object" && typeof right === "object";
  if (op === "/") return bothSpans || typeof left === "number" ? a / b : { spanMs: a / b };
  if (op === "*") return a * b;
  return op === "+" ? a + b : a - b;
}

function call(name: string, args: Node[], row: KqlRow, context: KqlContext): Value {
  if (name === "datetime" || name === "real" || name === "long") {
    // datetime(null), real(null): a typed null literal.
    if (args.length === 1 && args[0]!.kind === "col" && args[0]!.name === "null") return null;
    throw new Error(`KQL: ${name}() is only read as ${name}(null)`);
  }
  const values = args.map((arg) => evaluate(arg, row, context));
  const [a, b, c] = values;
  switch (name) {
    case "ago":
      return new Date(context.nowMs - asNumber(a!)!);
    case "now":
      return new Date(context.nowMs);
    case "ingestion_time":
      return context.ingestionTime(row);
    case "isnull":
      return isNull(a);
    case "isnotnull":
      return !isNull(a);
    case "isempty":
      return isNull(a) || a === "";
    case "tostring":
      return toText(a!);
    case "tolower":
      return toText(a!).toLowerCase();
    case "tolong": {
      if (typeof a === "number") return Math.trunc(a);
      return typeof a === "string" && /^\s*[-+]?\d+\s*$/.test(a) ? Number(a) : null;
    }
    case "iff":
      return a === true ? b! : c!;
    case "coalesce":
      return values.find((value) => !isNull(value) && value !== "") ?? (typeof values[0] === "string" ? "" : null);
    case "unixtime_milliseconds_todatetime":
      return typeof a === "number" ? new Date(a) : null;
    case "datetime_diff": {
      const unit = toText(a!);
      const sizes: Record<string, number> = { day: DAY_MS, hour: 3_600_000, minute: 60_000 };
      if (!sizes[unit]) throw new Error(`KQL: datetime_diff unit ${unit}`);
      if (!(b instanceof Date) || !(c instanceof Date)) return null;
      // Calendar boundaries crossed, not whole periods: 23:00 to 01:00 the next day is 1 day.
      return Math.floor(b.getTime() / sizes[unit]) - Math.floor(c.getTime() / sizes[unit]);
    }
    case "bin": {
      const size = asNumber(b!)!;
      if (a instanceof Date) return new Date(Math.floor(a.getTime() / size) * size);
      return typeof a === "number" ? Math.floor(a / size) * size : null;
    }
    case "split":
      return toText(a!).split(toText(b!));
    case "strcat":
      return values.map(toText).join("");
    case "round": {
      const digits = typeof b === "number" ? b : 0;
      return typeof a === "number" ? Math.round(a * 10 ** digits) / 10 ** digits : null;
    }
    case "replace_regex":
      return toText(a!).replace(new RegExp(toText(b!), "g"), toText(c!));
    default:
      throw new Error(`KQL: function ${name}() is not known to this evaluator`);
  }
}

function aggregate(node: Node, rows: KqlRow[], context: KqlContext): Value {
  if (node.kind !== "call") throw new Error("KQL: summarize needs an aggregation call");
  const values = () => rows.map((row) => evaluate(node.args[0]!, row, context)).filter((value) => !isNull(value) && value !== "");
  switch (node.name) {
    case "count":
      return rows.length;
    case "min":
    case "max": {
      const sorted = values().sort((x, y) => asNumber(x)! - asNumber(y)!);
      return (node.name === "min" ? sorted[0] : sorted[sorted.length - 1]) ?? null;
    }
    case "make_set": {
      const limit = node.args[1] ? (evaluate(node.args[1], {}, context) as number) : Infinity;
      const seen = new Map<string, Value>();
      for (const value of values()) if (!seen.has(toText(value)) && seen.size < limit) seen.set(toText(value), value);
      return [...seen.values()];
    }
    default:
      throw new Error(`KQL: aggregation ${node.name}() is not known to this evaluator`);
  }
}

/** Runs a query on the rows of its one source table; returns the rows it produces. */
export function runKql(query: string, tables: Record<string, KqlRow[]>, context: KqlContext): KqlRow[] {
  const stages = splitStages(query);
  const source = stages.shift()!.trim();
  let rows = tables[source];
  if (!rows) throw new Error(`KQL: no table ${source}`);
  for (const stage of stages) {
    const parser = new Parser(tokenize(stage));
    const operator = parser.take().text;
    if (operator === "where") {
      const predicate = parser.expression();
      rows = rows.filter((row) => evaluate(predicate, row, context) === true);
    } else if (operator === "extend" || operator === "project") {
      const items = parser.assignments();
      rows = rows.map((row) => {
        const out: KqlRow = operator === "extend" ? { ...row } : {};
        const scope: KqlRow = { ...row };
        for (const item of items) {
          const name = item.name ?? (item.node.kind === "col" ? item.node.name : undefined);
          if (!name) throw new Error(`KQL: ${operator} of an unnamed expression`);
          const value = evaluate(item.node, scope, context);
          out[name] = value;
          scope[name] = value;
        }
        return out;
      });
    } else if (operator === "summarize") {
      const aggregates = parser.assignments();
      parser.take("by");
      const keys = parser.assignments();
      const groups = new Map<string, { key: KqlRow; rows: KqlRow[] }>();
      for (const row of rows) {
        const key: KqlRow = {};
        for (const item of keys) key[item.name ?? (item.node as { name: string }).name] = evaluate(item.node, row, context);
        const id = JSON.stringify(Object.values(key).map(toText));
        const group = groups.get(id) ?? { key, rows: [] };
        group.rows.push(row);
        groups.set(id, group);
      }
      rows = [...groups.values()].map(({ key, rows: members }) => {
        const out: KqlRow = { ...key };
        for (const item of aggregates) {
          if (!item.name) throw new Error("KQL: summarize of an unnamed aggregation");
          out[item.name] = aggregate(item.node, members, context);
        }
        return out;
      });
    } else {
      throw new Error(`KQL: operator ${operator} is not known to this evaluator`);
    }
    if (!parser.done()) throw new Error(`KQL: unread text after ${operator}: ${parser.peek()?.text}`);
  }
  return rows;
}

/** The query's stages: split at `|` outside strings and parentheses. */
function splitStages(query: string): string[] {
  const stages: string[] = [];
  let depth = 0;
  let current = "";
  const tokens = query.match(/@"(?:[^"]|"")*"|"(?:[^"\\]|\\.)*"|[\s\S]/g) ?? [];
  for (const piece of tokens) {
    if (piece === "(" || piece === "[") depth += 1;
    if (piece === ")" || piece === "]") depth -= 1;
    if (piece === "|" && depth === 0) {
      stages.push(current);
      current = "";
    } else current += piece;
  }
  stages.push(current);
  return stages;
}
