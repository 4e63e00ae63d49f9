/**
 * PEM (RFC 7468) reading and writing: the textual wrapper around DER that certificate,
 * key and CRL files use. Only the strict encapsulation form is accepted
 * (`-----BEGIN LABEL-----`, base64 lines, `-----END LABEL-----` with the same label);
 * text between blocks (OpenSSL's "Bag Attributes", comments) is ignored, as RFC 7468 §2 allows.
 */
import fs from 'node:fs';
import { errText } from './errors';

/** A PEM file or text that cannot be used. `source` names the file (or `<text>`). */
export class PemError extends Error {
  constructor(
    readonly source: string,
    message: string,
  ) {
    super(`${source}: ${message}`);
    this.name = 'PemError';
  }
}

const BLOCK = /-----BEGIN ([A-Z0-9 #]+)-----\r?\n([\s\S]*?)-----END ([A-Z0-9 #]+)-----/g;
/** RFC 7468 §3 "stricttextualmsg" body: base64 alphabet and padding only (whitespace stripped first). */
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

/** One PEM block: its label and the decoded DER. */
export interface PemBlock {
  label: string;
  der: Buffer;
}

/**
 * Every PEM block of `text` (all labels when `label` is omitted), in file order.
 * Encapsulated headers (RFC 1421 `Proc-Type:`, used by legacy encrypted keys) are skipped.
 * @throws PemError on a BEGIN/END label mismatch or a body that is not base64.
 */
export function pemBlocks(text: string, label?: string, source = '<text>'): PemBlock[] {
  const out: PemBlock[] = [];
  for (const m of text.matchAll(BLOCK)) {
    const [, begin, body, end] = m as unknown as [string, string, string, string];
    if (begin !== end) throw new PemError(source, `PEM block BEGIN ${begin} closed by END ${end}`);
    if (label !== undefined && begin !== label) continue;
    // Legacy encrypted PEM keys carry "Name: value" headers before a blank line.
    const lines = body.split(/\r?\n/);
    const headerEnd = lines.findIndex((l) => l.trim() === '');
    const hasHeaders = lines[0]?.includes(':') === true && headerEnd > 0;
    const b64 = (hasHeaders ? lines.slice(headerEnd + 1) : lines).join('').replace(/\s+/g, '');
    if (!BASE64.test(b64) || b64.length === 0) throw new PemError(source, `PEM block ${begin} is not valid base64`);
    out.push({ label: begin, der: Buffer.from(b64, 'base64') });
  }
  return out;
}

function looksLikePem(pathOrText: string): boolean {
  return pathOrText.includes('-----BEGIN ');
}

/**
 * DER of every CERTIFICATE block of a PEM bundle, in order (a chain file is leaf first).
 * @param pathOrText a file path, or PEM text itself (recognised by a `-----BEGIN ` line)
 * @throws PemError naming the file when it cannot be read, holds no certificate, or is malformed
 */
export function readPemBundle(pathOrText: string): Buffer[] {
  const isText = looksLikePem(pathOrText);
  const source = isText ? '<text>' : pathOrText;
  let text: string;
  if (isText) {
    text = pathOrText;
  } else {
    try {
      text = fs.readFileSync(pathOrText, 'utf8');
    } catch (e) {
      throw new PemError(source, `cannot read certificate file (${(e as NodeJS.ErrnoException).code ?? errText(e)})`);
    }
  }
  return pemCertificates(text, source);
}

/**
 * DER of every CERTIFICATE block of PEM `text`, in order.
 * @param source names the origin in errors (a file path)
 * @throws PemError when there is none, or a block is malformed
 */
export function pemCertificates(text: string, source = '<text>'): Buffer[] {
  const certs = pemBlocks(text, 'CERTIFICATE', source).map((b) => b.der);
  if (certs.length === 0) throw new PemError(source, 'no PEM CERTIFICATE block found');
  return certs;
}

/** PEM text for `der` under `label` (e.g. `CERTIFICATE`, `X509 CRL`), 64-column lines, trailing newline. */
export function toPem(der: Buffer | Uint8Array | ArrayBuffer, label: string): string {
  const buf = der instanceof ArrayBuffer ? Buffer.from(der) : Buffer.from(der.buffer, der.byteOffset, der.byteLength);
  const b64 = buf.toString('base64');
  const lines: string[] = [];
  for (let i = 0; i < b64.length; i += 64) lines.push(b64.slice(i, i + 64));
  return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n`;
}
