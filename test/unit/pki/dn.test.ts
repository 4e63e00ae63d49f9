/**
 * Distinguished names are printed one way (RFC 4514, most specific RDN first): the decision's
 * serverCertificate, `crl show`'s issuer and the CRL metrics' issuer label agree with
 * `openssl x509 -nameopt RFC2253`, never Node's one-RDN-per-line order.
 */
import { test, expect, afterAll } from '@jest/globals';
import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import fs from 'node:fs';
import { dnOf, certInfo } from '../../../internal/pki/certinfo';
import { chainDecisionFields } from '../../../internal/engine/decision';
import { verifyServerChain } from '../../../internal/pki/chain';
import { makePki } from '../../support/pki';

const pki = makePki({ keyType: 'ec' });
afterAll(() => pki.cleanup());

const openssl = (file: string, what: 'subject' | 'issuer'): string =>
  execFileSync('openssl', ['x509', '-in', file, '-noout', `-${what}`, '-nameopt', 'RFC2253'], { encoding: 'utf8' }).trim().replace(/^(subject|issuer)=/, '');

test('dnOf gives the RFC 4514 string openssl prints with -nameopt RFC2253, for X509Certificate and CertInfo alike', () => {
  const leaf = pki.issueLeaf('dn-leaf', { san: ['DNS:dn.example'] });
  const x509 = new X509Certificate(fs.readFileSync(leaf.certPath));
  expect(dnOf(x509)).toBe(openssl(leaf.certPath, 'subject'));
  expect(dnOf(x509, 'issuer')).toBe(openssl(leaf.certPath, 'issuer'));
  expect(dnOf(certInfo(x509))).toBe(dnOf(x509));
  // Node's own form is the other order, one RDN per line: not what we print.
  expect(dnOf(x509)).not.toBe(x509.subject.replace(/\n/g, ', '));
});

test("a decision's serverCertificate subject and issuer are RFC 4514 strings", () => {
  const leaf = pki.issueLeaf('dn-server', { san: ['DNS:localhost'] });
  const chain = verifyServerChain([leaf.certDer, pki.intermediate.x509.raw], { anchors: [pki.root.x509], hostname: 'localhost', now: new Date(), revocation: null, leafOnly: false });
  expect(chain.ok).toBe(true);
  const fields = chainDecisionFields(chain);
  expect(fields.serverCertificate?.subject).toBe(openssl(leaf.certPath, 'subject'));
  expect(fields.serverCertificate?.issuer).toBe(openssl(leaf.certPath, 'issuer'));
});
