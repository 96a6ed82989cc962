import { mkdirSync, readFileSync, writeFileSync, existsSync, statSync } from "node:fs";
import { X509Certificate } from "node:crypto";
import { tmpdir } from "node:os";
import { join } from "node:path";
import selfsigned from "selfsigned";

/** A TLS identity for every sandbox server on loopback: one self-signed certificate that is its own CA. */
export interface LocalTls {
  cert: string;
  key: string;
  /** PEM file a client trusts (NODE_EXTRA_CA_CERTS, the driver's customCaCert). */
  caCertPath: string;
  keyPath: string;
}

/**
 * The certificate lives in a fixed folder so it stays the same across sandbox starts: a test
 * runner or a shell can point NODE_EXTRA_CA_CERTS at it before Node starts (Node reads that
 * variable only at start-up), and later processes keep trusting it.
 */
export function defaultTlsDir(): string {
  return process.env.DBX_AUDIT_SANDBOX_TLS_DIR ?? join(tmpdir(), "dbx-audit-sandbox-tls");
}

export function caCertPathIn(dir = defaultTlsDir()): string {
  return join(dir, "ca-cert.pem");
}

export async function ensureLocalTls(dir = defaultTlsDir()): Promise<LocalTls> {
  const caCertPath = caCertPathIn(dir);
  const keyPath = join(dir, "ca-key.pem");
  if (!isUsable(caCertPath, keyPath)) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const now = new Date();
    const result = await selfsigned.generate([{ name: "commonName", value: "dbx-audit sandbox" }], {
      keySize: 2048,
      notBeforeDate: new Date(now.getTime() - 24 * 3600_000),
      notAfterDate: new Date(now.getTime() + 365 * 24 * 3600_000),
      extensions: [
        { name: "basicConstraints", cA: true, critical: true },
        { name: "keyUsage", digitalSignature: true, keyEncipherment: true, keyCertSign: true },
        { name: "extKeyUsage", serverAuth: true },
        {
          name: "subjectAltName",
          altNames: [
            { type: 7, ip: "127.0.0.1" },
            { type: 2, value: "localhost" },
          ],
        },
      ],
    });
    // Write the key first: a reader that finds the certificate must also find its key.
    writeFileSync(keyPath, result.private, { mode: 0o600 });
    writeFileSync(caCertPath, result.cert, { mode: 0o644 });
  }
  return { cert: readFileSync(caCertPath, "utf8"), key: readFileSync(keyPath, "utf8"), caCertPath, keyPath };
}

function isUsable(certPath: string, keyPath: string): boolean {
  if (!existsSync(certPath) || !existsSync(keyPath) || statSync(keyPath).size === 0) return false;
  try {
    const cert = new X509Certificate(readFileSync(certPath));
    return new Date(cert.validTo).getTime() > Date.now() + 7 * 24 * 3600_000;
  } catch {
    return false;
  }
}

// `node dist/sandbox/tls.js` makes sure the sandbox CA exists (the CLI launcher uses it).
if (require.main === module) {
  ensureLocalTls().then(
    (tls) => process.stdout.write(`${tls.caCertPath}\n`),
    (error: unknown) => {
      process.stderr.write(`Could not create the sandbox's TLS certificate: ${String(error)}\n`);
      process.exit(1);
    },
  );
}
