/**
 * The engine's chain check (verifyServerChain) enforces what path building alone does not:
 * pathLenConstraint, name constraints and unknown critical extensions (RFC 5280 §6.1.3-4),
 * through validatePath. Certificates made by `openssl`; OpenSSL's own verdict is the oracle.
 */
import { test, beforeAll, afterAll } from '@jest/globals';
import assert from 'node:assert/strict';
import { chainReason } from '../../../internal/engine/pki-reasons';
import fs from 'node:fs';
import { execFileSync } from 'node:child_process';
import { makePki, type Pki } from '../../support/pki';
import { verifyServerChain } from '../../../internal/pki/chain';

let pki: Pki;
beforeAll(() => {
  pki = makePki({ keyType: 'ec' });
});
afterAll(() => pki.cleanup());

function opensslVerifies(leaf: string, chain: string[]): boolean {
  const untrusted = `${pki.dir}/untrusted-${Math.random()}.pem`;
  fs.writeFileSync(untrusted, chain.map((c) => fs.readFileSync(c, 'utf8')).join(''));
  try {
    execFileSync('openssl', ['verify', '-CAfile', pki.root.certPath, '-untrusted', untrusted, leaf], { stdio: 'pipe' });
    return true;
  } catch {
    return false;
  }
}

function check(leafDer: Buffer, chainDer: Buffer[]) {
  return verifyServerChain([leafDer, ...chainDer], { anchors: [pki.root.x509], hostname: null, now: new Date(), revocation: null, leafOnly: false });
}

test('pathLenConstraint 0 on an intermediate forbids a further CA below it', () => {
  const capped = pki.addCa('capped', { issuer: 'root', pathLen: 0 });
  const sub = pki.addCa('sub', { issuer: 'capped' });
  const leaf = pki.issueLeaf('under-sub', { issuer: 'sub', san: ['DNS:a.test'] });
  assert.equal(opensslVerifies(leaf.certPath, [sub.certPath, capped.certPath]), false, 'OpenSSL refuses it too');
  const r = check(leaf.certDer, [sub.certDer, capped.certDer]);
  assert.equal(r.ok, false);
  assert.equal(chainReason(r), 'bad_server_certificate');
  assert.match(r.detail ?? '', /path_length/);
  const direct = pki.issueLeaf('under-capped', { issuer: 'capped', san: ['DNS:a.test'] });
  assert.equal(check(direct.certDer, [capped.certDer]).ok, true, 'a leaf directly below is fine');
});

test('name constraints: a leaf outside the permitted subtree is refused', () => {
  const nc = pki.addCa('nc', { issuer: 'root', extraExtensions: ['nameConstraints = critical,permitted;DNS:.allowed.test'] });
  const inside = pki.issueLeaf('inside', { issuer: 'nc', san: ['DNS:api.allowed.test'] });
  const outside = pki.issueLeaf('outside', { issuer: 'nc', san: ['DNS:api.evil.test'] });
  assert.equal(opensslVerifies(outside.certPath, [nc.certPath]), false, 'OpenSSL refuses it too');
  assert.equal(check(inside.certDer, [nc.certDer]).ok, true);
  const r = check(outside.certDer, [nc.certDer]);
  assert.equal(r.ok, false);
  assert.match(r.detail ?? '', /name_constraints/);
});

test('an unknown critical extension in an intermediate is refused', () => {
  const odd = pki.addCa('odd', { issuer: 'root', extraExtensions: ['1.2.3.4.5 = critical,ASN1:NULL'] });
  const leaf = pki.issueLeaf('under-odd', { issuer: 'odd', san: ['DNS:a.test'] });
  assert.equal(opensslVerifies(leaf.certPath, [odd.certPath]), false, 'OpenSSL refuses it too');
  const r = check(leaf.certDer, [odd.certDer]);
  assert.equal(r.ok, false);
  assert.match(r.detail ?? '', /unsupported_critical_extension/);
});
