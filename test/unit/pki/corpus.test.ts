/**
 * The CRL corpus in ../shared/testdata/crls (manifest.json): every CRL parses or is refused exactly
 * as the manifest says (strict RFC 5280 / DER), and for every CRL that parses, the entry count,
 * cRLNumber, thisUpdate and nextUpdate equal what `openssl crl -inform DER -text` prints, run here
 * as the independent oracle. Bundles with a `revocation_check` are checked through the revocation
 * core (revocation.ts `certStatus`, what the RevocationStore runs) with the bundle's CA
 * certificates as trusted CRL signers: GOOD / REVOKED / UNKNOWN at the manifest's time.
 *
 * Where OpenSSL accepts what RFC 5280 forbids, the disagreement is listed in OPENSSL_LENIENT with
 * the clause, and written to docs/conformance.md (compared; rewritten with CA_PROXY_WRITE_CONFORMANCE=1).
 */
import { test } from '@jest/globals';
import { testdataSuite } from '../../support/testdata';
import { note } from '../../support/note';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { parseCrl, type ParsedCrl } from '../../../internal/pki/crl';
import { verifyCrlSignatureSync } from '../../../internal/pki/crl-verify';
import { CrlError } from '../../../internal/pki/errors';
import { decodeCrlFile } from '../../../internal/pki/crl-worker';
import { pemBlocks } from '../../../internal/pki/pem';
import { certInfo } from '../../../internal/pki/certinfo';
import { certStatus, crlRecord } from '../../../internal/pki/revocation';
import { sharedTestdata } from '../../support/root';
import { updateConformanceSection } from '../../support/conformance-doc';

interface Entry {
  file: string;
  expected: 'parse ok' | 'parse error';
  entries: number | null;
  special: string;
  revocation_check?: { verify_time: string; expected_status: 'GOOD' | 'REVOKED' | 'UNKNOWN' };
}

/** Files OpenSSL 3.0 decodes although RFC 5280 / X.690 make them malformed, and why ca-proxy refuses them. */
const OPENSSL_LENIENT: Record<string, string> = {
  'bssl_invalid_v1_with_extension.pem': 'RFC 5280 §5.1.2.1: crlExtensions require version v2; a CRL without the version field is v1',
  'bssl_invalid_v3.pem': 'RFC 5280 §5.1.2.1: the version, when present, MUST be v2 (INTEGER 1); 2 is not a CRL version',
  'pyca_crl_bad_version.pem': 'RFC 5280 §5.1.2.1: the version, when present, MUST be v2 (INTEGER 1)',
  'bssl_invalid_idp_onlycontains_user_and_ca_certs.pem': 'RFC 5280 §5.2.5: at most one of onlyContainsUserCerts, onlyContainsCACerts, onlyContainsAttributeCerts may be TRUE',
  'pyca_crl_invalid_time.der': 'RFC 5280 §5.1.2.4 / §4.1.2.5.1: UTCTime MUST be YYMMDDHHMMSSZ (13 characters)',
};

interface OpensslView {
  ok: boolean;
  entries: number;
  crlNumber: bigint | null;
  thisUpdate: Date | null;
  nextUpdate: Date | null;
}

function openssl(der: Buffer): OpensslView {
  const r = spawnSync('openssl', ['crl', '-inform', 'DER', '-noout', '-text'], { input: der, maxBuffer: 256 * 1024 * 1024 });
  const out = r.stdout.toString('latin1');
  if (r.status !== 0) return { ok: false, entries: 0, crlNumber: null, thisUpdate: null, nextUpdate: null };
  const date = (label: string): Date | null => {
    const m = new RegExp(`${label}: (.*)`).exec(out);
    return !m || m[1]!.trim() === 'NONE' ? null : new Date(m[1]!.trim());
  };
  const num = /X509v3 CRL Number:(?: critical)?\s*\n\s*(\S+)/.exec(out);
  let crlNumber: bigint | null = null;
  if (num) crlNumber = num[1]!.startsWith('0x') ? BigInt(num[1]!) : /:/.test(num[1]!) ? BigInt('0x' + num[1]!.replace(/:/g, '')) : BigInt(num[1]!);
  return { ok: true, entries: (out.match(/^\s+Serial Number: /gm) ?? []).length, crlNumber, thisUpdate: date('Last Update'), nextUpdate: date('Next Update') };
}

const dir = sharedTestdata('crls');

testdataSuite('the CRL corpus (testdata/crls)', path.join(dir, 'manifest.json')).test('CRL corpus: parse or refuse as the manifest says; entries, cRLNumber and dates as OpenSSL reads them', async () => {
  const files = (JSON.parse(fs.readFileSync(path.join(dir, 'manifest.json'), 'utf8')) as { files: Entry[] }).files.filter((f) => !/cert\.pem$/.test(f.file));
  const rows: string[] = [];
  const problems: string[] = [];
  let agree = 0;
  for (const f of files) {
    const buf = fs.readFileSync(path.join(dir, f.file));
    let der: Buffer;
    try {
      der = decodeCrlFile(buf, f.file)[0]!;
    } catch (e) {
      problems.push(`${f.file}: no CRL found (${(e as Error).message})`);
      continue;
    }
    let crl: ParsedCrl | null = null;
    let code = '';
    try {
      crl = parseCrl(der, { collectUnsupportedCritical: true });
    } catch (e) {
      code = e instanceof CrlError ? e.code : String(e);
    }
    const ours = crl ? 'parse ok' : 'parse error';
    if (ours !== f.expected) problems.push(`${f.file}: manifest says ${f.expected}, ca-proxy ${ours} ${code}`);
    const o = openssl(der);
    let oracle: string;
    if (crl && o.ok) {
      const diffs: string[] = [];
      if (crl.entryCount !== o.entries) diffs.push(`entries ${crl.entryCount} vs ${o.entries}`);
      if (f.entries !== null && crl.entryCount !== f.entries) diffs.push(`entries ${crl.entryCount} vs manifest ${f.entries}`);
      if (crl.crlNumber !== o.crlNumber) diffs.push(`cRLNumber ${crl.crlNumber} vs ${o.crlNumber}`);
      if (crl.thisUpdate.getTime() !== o.thisUpdate?.getTime()) diffs.push(`thisUpdate ${crl.thisUpdate.toISOString()} vs ${o.thisUpdate?.toISOString()}`);
      if ((crl.nextUpdate?.getTime() ?? null) !== (o.nextUpdate?.getTime() ?? null)) diffs.push(`nextUpdate ${crl.nextUpdate?.toISOString()} vs ${o.nextUpdate?.toISOString()}`);
      if (diffs.length) problems.push(`${f.file}: differs from OpenSSL: ${diffs.join('; ')}`);
      else agree++;
      oracle = diffs.length ? 'differs' : 'agrees';
    } else if (!crl && !o.ok) {
      agree++;
      oracle = 'both refuse';
    } else if (!crl && OPENSSL_LENIENT[f.file]) {
      oracle = `OpenSSL accepts; refused per ${OPENSSL_LENIENT[f.file]}`;
    } else {
      problems.push(`${f.file}: ca-proxy ${ours}, OpenSSL ${o.ok ? 'parses' : 'refuses'} (unexplained)`);
      oracle = 'UNEXPLAINED';
    }

    let status = '';
    if (f.revocation_check) {
      const blocks = pemBlocks(buf.toString('latin1'), undefined, f.file);
      const ca = blocks.filter((b) => b.label.startsWith('CA CERTIFICATE')).map((b) => certInfo(b.der));
      const target = certInfo(blocks.find((b) => b.label === 'CERTIFICATE')!.der);
      const crls = blocks.filter((b) => b.label === 'CRL' || b.label === 'X509 CRL').flatMap((b) => {
        try {
          const c = parseCrl(b.der, { collectUnsupportedCritical: true });
          return c.unsupportedCritical.length ? [] : [crlRecord(c)]; // RFC 5280 §5.2: unusable
        } catch {
          return [];
        }
      });
      // The store's model: the bundle's CA certificates are the trusted CRL signers (name, AKI, cRLSign, signature).
      const signers = ca.map((c) => c.x509);
      const st = certStatus(target, { byIssuer: (k) => crls.filter((r) => r.issuerKey === k) }, {
        now: new Date(f.revocation_check.verify_time),
        skewMs: 0,
        signerOk: (rec) => {
          try {
            verifyCrlSignatureSync(rec.crl, signers);
            return true;
          } catch {
            return false;
          }
        },
      });
      status = st.status === 'good' ? 'GOOD' : st.status === 'revoked' ? 'REVOKED' : 'UNKNOWN';
      if (status !== f.revocation_check.expected_status) problems.push(`${f.file}: revocation ${status}, expected ${f.revocation_check.expected_status} (${st.status === 'unknown' ? st.why : st.status})`);
    }
    const facts = crl ? `${crl.entryCount} entries, cRLNumber ${crl.crlNumber ?? '—'}, next ${crl.nextUpdate?.toISOString().slice(0, 10) ?? 'absent'}${crl.unsupportedCritical.length ? `, unsupported critical ${crl.unsupportedCritical.join(' ')}` : ''}` : code;
    rows.push(`| ${f.file} | ${f.expected} | ${ours} | ${facts} | ${oracle} | ${status ? `${status} (expected ${f.revocation_check!.expected_status})` : ''} |`);
  }
  const summary = `${files.length} CRL files: ${files.length - problems.length} as the manifest says, ${agree} agree with OpenSSL 3.0 (same decision; same entries, cRLNumber, thisUpdate, nextUpdate), ${Object.keys(OPENSSL_LENIENT).length} refused that OpenSSL decodes (each with its RFC clause).`;
  note(summary);
  updateConformanceSection(
    'corpus',
    [
      summary,
      'Unsupported critical extensions are parsed here (they make a CRL unusable, RFC 5280 §5.2, not malformed). "revocation" is the end-to-end status of the bundle\'s target certificate at the manifest\'s time.',
      '',
      '| file | manifest | ca-proxy | facts | OpenSSL | revocation |',
      '| --- | --- | --- | --- | --- | --- |',
      ...rows,
    ].join('\n'),
  );
  assert.deepEqual(problems, []);
});
