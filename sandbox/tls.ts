import { mkdirSync, readFileSync, renameSync, writeFileSync, existsSync, statSync } from "node:fs";
import { X509Certificate, createPrivateKey } from "node:crypto";
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
    // Write the key first, each file atomically: a reader that finds the certificate also finds
    // its key. Two processes racing here each write a matching pair; the check below catches a mix.
    writeAtomically(keyPath, result.private, 0o600);
    writeAtomically(caCertPath, result.cert, 0o644);
  }
  return { cert: readFileSync(caCertPath, "utf8"), key: readFileSync(keyPath, "utf8"), caCertPath, keyPath };
}

function writeAtomically(path: string, content: string, mode: number): void {
  const temporary = `${path}.${process.pid}.tmp`;
  writeFileSync(temporary, content, { mode });
  renameSync(temporary, path);
}

function isUsable(certPath: string, keyPath: string): boolean {
  if (!existsSync(certPath) || !existsSync(keyPath) || statSync(keyPath).size === 0) return false;
  try {
    const cert = new X509Certificate(readFileSync(certPath));
    if (!cert.checkPrivateKey(createPrivateKey(readFileSync(keyPath)))) return false;
    return new Date(cert.validTo).getTime() > Date.now() + 7 * 24 * 3600_000;
  } catch {
    return false;
  }
}
