/**
 * `ca-proxy crl show FILE [--ca BUNDLE]`: what a CRL file says, CRL by CRL (a PEM file may
 * hold several), with the same parser and signature check the proxy uses. Exit code 1 when
 * a CRL does not parse or (with --ca) its signature does not verify.
 */
import fs from 'node:fs';
import { X509Certificate } from 'node:crypto';
import { parseCrl } from '../../internal/pki/crl';
import { crlTimeStatus, verifyCrlSignatureSync } from '../../internal/pki/crl-verify';
import { CrlError, errText } from '../../internal/pki/errors';
import { dnOf, formatName } from '../../internal/pki/certinfo';
import { readPemBundle } from '../../internal/pki/pem';
import { decodeCrlFile } from '../../internal/pki/crl-worker';

interface Shown {
  index: number;
  issuer?: string;
  cRLNumber?: string | null;
  deltaCRLIndicator?: string | null;
  thisUpdate?: string;
  nextUpdate?: string | null;
  time?: string;
  entries?: number;
  sha256?: string;
  signature: string;
  /** Why the proxy would refuse this CRL outright (errors.ts CrlErrorCode), with `error`. */
  code?: string;
  error?: string;
}

/** The DER CRLs in a file, read exactly as the RevocationStore reads them (crl-worker.ts). */
function crlDersOf(file: string): Buffer[] {
  if (fs.statSync(file).isDirectory()) throw new Error(`${file} is a directory; give a CRL file (PEM or DER)`);
  return decodeCrlFile(fs.readFileSync(file), file);
}

export async function crlShowCommand(file: string, opts: { ca?: string; json?: boolean }): Promise<void> {
  const cas = opts.ca ? readPemBundle(opts.ca).map((d) => new X509Certificate(d)) : null;
  const shown: Shown[] = crlDersOf(file).map((der, index) => {
    try {
      const crl = parseCrl(der);
      let signature = 'not checked (give --ca)';
      if (cas) {
        try {
          const by = verifyCrlSignatureSync(crl, cas);
          signature = `valid (signed by ${dnOf(by)})`;
        } catch (err) {
          signature = `INVALID: ${errText(err)}`;
        }
      }
      return {
        index,
        issuer: formatName(crl.issuerDer),
        cRLNumber: crl.crlNumber?.toString() ?? null,
        deltaCRLIndicator: crl.deltaCrlIndicator?.toString() ?? null,
        thisUpdate: crl.thisUpdate.toISOString(),
        nextUpdate: crl.nextUpdate?.toISOString() ?? null,
        time: crlTimeStatus(crl, new Date(), 0),
        entries: crl.entryCount,
        sha256: crl.sha256,
        signature,
      };
    } catch (err) {
      const code = err instanceof CrlError ? err.code : 'malformed';
      return { index, signature: 'not checked', code, error: `${code}: ${errText(err)}` };
    }
  });
  if (opts.json) process.stdout.write(JSON.stringify(shown, null, 2) + '\n');
  else {
    for (const s of shown) {
      process.stdout.write(`CRL #${s.index} in ${file}\n`);
      if (s.error) {
        process.stdout.write(`  error:       ${s.error}\n`);
        continue;
      }
      process.stdout.write(
        [
          `  issuer:      ${s.issuer}`,
          `  cRLNumber:   ${s.cRLNumber ?? '(absent)'}${s.deltaCRLIndicator ? `  (delta CRL, base ${s.deltaCRLIndicator})` : ''}`,
          `  thisUpdate:  ${s.thisUpdate}`,
          `  nextUpdate:  ${s.nextUpdate ?? '(absent)'}  [${s.time}]`,
          `  entries:     ${s.entries}`,
          `  sha256:      ${s.sha256}`,
          `  signature:   ${s.signature}`,
          '',
        ].join('\n'),
      );
    }
  }
  // 1 when the proxy would not use a CRL as current: unparsable, bad signature, expired or not yet valid.
  if (shown.some((s) => s.error || s.signature.startsWith('INVALID') || (s.time && s.time !== 'current'))) process.exitCode = 1;
}
