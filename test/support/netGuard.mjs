// Network guard for tests, loaded with `node --import <this file>` (vitest passes it to every
// worker through `test.execArgv`). Any attempt to open a TCP/TLS connection, send a UDP datagram
// or resolve a DNS name that is not loopback throws synchronously, before a packet can leave the
// machine. Loopback means 127.0.0.0/8, ::1 (and its IPv4-mapped forms) and the name "localhost".
// Unix sockets, named pipes and the IPC channel a parent process opens (vitest's worker channel)
// are not TCP connects and keep working.
//
// It follows the code it guards into worker threads and child processes (see passItOn):
// - child processes: it adds itself to NODE_OPTIONS, in this process's environment (which
//   children inherit) and in any `env` a child_process call is given;
// - worker threads (Node 20): a worker created from a file runs the `--import` preloads of
//   its execArgv, which it inherits from the parent thread unless `execArgv` is given, and of
//   NODE_OPTIONS as the process started or as its `env` option says; a worker from `eval`
//   code runs no preloads at all. So the guard adds itself to a given `execArgv` and `env`,
//   and puts a synchronous `require` of itself in front of `eval` code.
import childProcess from "node:child_process";
import dgram from "node:dgram";
import dns from "node:dns";
import { syncBuiltinESMExports } from "node:module";
import net from "node:net";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import workerThreads from "node:worker_threads";

const MARK = Symbol.for("dbx-audit.netGuard");

if (!globalThis[MARK]) {
  globalThis[MARK] = { installed: true, blocked: [] };
  install();
}

function install() {
  const state = globalThis[MARK];

  /** True for the loopback addresses and the name localhost. */
  function isLoopback(host) {
    if (host === undefined || host === null || host === "") return true; // Node defaults to localhost
    let h = String(host).trim().toLowerCase();
    if (h.startsWith("[") && h.endsWith("]")) h = h.slice(1, -1);
    const zone = h.indexOf("%");
    if (zone >= 0) h = h.slice(0, zone);
    if (h === "localhost" || h === "localhost.") return true;
    const kind = net.isIP(h);
    if (kind === 4) return h.split(".")[0] === "127";
    if (kind === 6) {
      // The URL parser gives the canonical compressed form: "[::1]", "[::ffff:7f00:1]".
      const canonical = new URL(`http://[${h}]`).hostname;
      return canonical === "[::1]" || /^\[::ffff:7f[0-9a-f]{2}:[0-9a-f]{1,4}\]$/.test(canonical);
    }
    return false; // any other DNS name
  }

  function refuse(what, host, port) {
    const target = port === undefined || port === null || port === "" ? String(host) : `${host}:${port}`;
    state.blocked.push(target);
    const error = new Error(`netGuard: a test tried to reach ${target} (${what}); only loopback (127.0.0.0/8, ::1, localhost) is allowed`);
    error.code = "ERR_NET_GUARD";
    error.address = String(host);
    throw error;
  }

  /** The options object behind the many call shapes of `socket.connect(...)`. */
  function connectOptions(args) {
    const first = args[0];
    if (Array.isArray(first)) return first[0] ?? {}; // net.connect/tls.connect pass normalized args
    if (first !== null && typeof first === "object") return first;
    if (typeof first === "number" || (typeof first === "string" && /^\d+$/.test(first))) {
      return { port: first, host: typeof args[1] === "string" ? args[1] : undefined };
    }
    if (typeof first === "string") return { path: first };
    return {};
  }

  const originalConnect = net.Socket.prototype.connect;
  net.Socket.prototype.connect = function guardedConnect(...args) {
    const options = connectOptions(args);
    // Node treats any truthy `path` as a Unix socket / named pipe (`const pipe = !!path`).
    if (!options.path && !isLoopback(options.host)) {
      refuse("TCP connect", options.host, options.port);
    }
    return originalConnect.apply(this, args);
  };

  // DNS: only "localhost" (and literal loopback addresses) may be looked up.
  const guardName = (fn, what) =>
    function guardedDns(hostname, ...rest) {
      if (!isLoopback(hostname)) refuse(what, hostname);
      return fn.call(this, hostname, ...rest);
    };
  const resolverMethods = [
    "resolve",
    "resolve4",
    "resolve6",
    "resolveAny",
    "resolveCaa",
    "resolveCname",
    "resolveMx",
    "resolveNaptr",
    "resolveNs",
    "resolvePtr",
    "resolveSoa",
    "resolveSrv",
    "resolveTxt",
  ];
  for (const target of [dns, dns.promises]) {
    if (typeof target.lookup === "function") target.lookup = guardName(target.lookup, "DNS lookup");
    for (const name of resolverMethods) {
      if (typeof target[name] === "function") target[name] = guardName(target[name], "DNS query");
    }
    const proto = target.Resolver?.prototype;
    if (proto) {
      for (const name of resolverMethods) {
        if (typeof proto[name] === "function") proto[name] = guardName(proto[name], "DNS query");
      }
    }
  }
  // Reverse lookups would also query a resolver.
  for (const target of [dns, dns.promises]) {
    if (typeof target.reverse === "function") {
      const original = target.reverse;
      target.reverse = function guardedReverse(ip, ...rest) {
        if (!isLoopback(ip)) refuse("DNS reverse lookup", ip);
        return original.call(this, ip, ...rest);
      };
    }
  }

  // UDP: connect(port[, address]) and send(msg[, offset, length], port[, address][, cb]).
  const originalUdpConnect = dgram.Socket.prototype.connect;
  dgram.Socket.prototype.connect = function guardedUdpConnect(port, address, ...rest) {
    if (typeof address === "string" && !isLoopback(address)) refuse("UDP connect", address, port);
    return originalUdpConnect.call(this, port, address, ...rest);
  };
  const originalSend = dgram.Socket.prototype.send;
  dgram.Socket.prototype.send = function guardedSend(...args) {
    const address = args.slice(1).find((a) => typeof a === "string");
    const port = args.slice(1).find((a) => typeof a === "number");
    if (address !== undefined && !isLoopback(address)) refuse("UDP send", address, port);
    return originalSend.apply(this, args);
  };

  passItOn();

  // Make `import { lookup } from "node:dns"` (and child_process, worker_threads) in ES modules
  // see the guarded functions too.
  syncBuiltinESMExports();
}

/** Loads this guard into every worker thread and child process started from here on. */
function passItOn() {
  const url = import.meta.url; // file:///...: no spaces or quotes to escape in NODE_OPTIONS
  const path = fileURLToPath(url);
  const mentionsGuard = (text) => typeof text === "string" && (text.includes(url) || text.includes(path));
  const withGuard = (nodeOptions) => (mentionsGuard(nodeOptions) ? nodeOptions : `${nodeOptions ? `${nodeOptions} ` : ""}--import=${url}`);
  const guardedEnv = (env) => (mentionsGuard(env.NODE_OPTIONS) ? env : { ...env, NODE_OPTIONS: withGuard(env.NODE_OPTIONS) });

  // Children that inherit this environment (no `env` option) start with the guard.
  process.env.NODE_OPTIONS = withGuard(process.env.NODE_OPTIONS);

  // Children given an `env` of their own: every public way to start one takes its options as
  // the first plain object after the command.
  const withGuardedEnv = (original) =>
    function guardedChildProcess(...args) {
      const at = args.findIndex((a, i) => i > 0 && a !== null && typeof a === "object" && !Array.isArray(a));
      if (at > 0 && args[at].env && typeof args[at].env === "object") args[at] = { ...args[at], env: guardedEnv(args[at].env) };
      return original.apply(this, args);
    };
  for (const name of ["spawn", "spawnSync", "execFile", "execFileSync", "exec", "execSync", "fork"]) {
    const original = childProcess[name];
    if (typeof original !== "function") continue;
    const guarded = withGuardedEnv(original);
    // exec and execFile resolve to { stdout, stderr } under util.promisify through this hook.
    const promisified = original[promisify.custom];
    if (typeof promisified === "function") guarded[promisify.custom] = withGuardedEnv(promisified);
    childProcess[name] = guarded;
  }

  const OriginalWorker = workerThreads.Worker;
  workerThreads.Worker = class GuardedWorker extends OriginalWorker {
    constructor(filename, options = {}) {
      const guarded = { ...options };
      let code = filename;
      if (guarded.eval) {
        // Same line, so the code's own line numbers stay as they were.
        code = `require(${JSON.stringify(path)});${filename}`;
      } else {
        // execArgv may not repeat the parent's V8 flags, so add to a given one, never copy.
        if (Array.isArray(guarded.execArgv) && !mentionsGuard(guarded.execArgv.join(" "))) guarded.execArgv = [...guarded.execArgv, `--import=${url}`];
        if (guarded.env && typeof guarded.env === "object") guarded.env = guardedEnv(guarded.env);
      }
      super(code, guarded);
    }
  };
}
