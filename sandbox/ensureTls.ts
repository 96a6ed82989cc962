// `node dist/sandbox/ensureTls.js`: makes sure the sandbox CA exists and prints its path (the CLI launcher uses it).
import { ensureLocalTls } from "./tls";

ensureLocalTls().then(
  (tls) => process.stdout.write(`${tls.caCertPath}\n`),
  (error: unknown) => {
    process.stderr.write(`Could not create the sandbox's TLS certificate: ${String(error)}\n`);
    process.exit(1);
  },
);
