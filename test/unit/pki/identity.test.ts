import { describe, test, beforeAll, afterAll } from '@jest/globals';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import crypto, { X509Certificate } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import tls from 'node:tls';
import { certInfo, formatName } from '../../../internal/pki/certinfo';
import { IdentityError, loadIdentities } from '../../../internal/pki/identity';
import { makePki, type LeafHandle, type Pki } from '../../support/pki';

function openssl(args: string[]): void {
  execFileSync('openssl', args, { stdio: ['ignore', 'pipe', 'pipe'] });
}

const subject = (l: LeafHandle) => formatName(certInfo(l.certDer).subjectDer);
const sha256 = (der: Buffer) => crypto.createHash('sha256').update(der).digest('hex');

function isIdentityError(name: string, pattern: RegExp) {
  return (e: unknown) => {
    assert.ok(e instanceof IdentityError, `expected IdentityError, got ${String(e)}`);
    assert.equal(e.identity, name);
    assert.match(e.message, pattern);
    return true;
  };
}

describe('loadIdentities', () => {
  let pki: Pki;
  let leaf: LeafHandle;
  let other: LeafHandle;
  const env = { ID_PASS: 'correct horse', WRONG_PASS: 'nope' };
  beforeAll(() => {
    pki = makePki({ keyType: 'ec' });
    leaf = pki.issueLeaf('proxy-id', { clientAuth: true, san: ['DNS:proxy.test'] });
    other = pki.issueLeaf('other', { clientAuth: true });
    // A chain file (leaf first), an encrypted PKCS#8 key and a PKCS#12 made by OpenSSL 3 defaults.
    fs.writeFileSync(path.join(pki.dir, 'chain.pem'), leaf.certPem + pki.intermediate.certPem);
    openssl(['pkey', '-in', leaf.keyPath, '-aes256', '-passout', `pass:${env.ID_PASS}`, '-out', path.join(pki.dir, 'enc.key')]);
    openssl(['pkcs12', '-export', '-in', leaf.certPath, '-inkey', leaf.keyPath, '-certfile', pki.intermediate.certPath,
      '-passout', `pass:${env.ID_PASS}`, '-out', path.join(pki.dir, 'id.p12')]);
  });
  afterAll(() => pki.cleanup());

  test('PEM identity: chain and key load, with subject, SHA-256 and notAfter of the leaf', () => {
    const ids = loadIdentities([{ name: 'pem', cert: 'chain.pem', key: path.relative(pki.dir, leaf.keyPath) }], pki.dir, { env });
    const id = ids.get('pem');
    assert.ok(id);
    assert.equal(id.leafSubject, subject(leaf));
    assert.equal(id.leafSha256, sha256(leaf.certDer));
    assert.equal(id.notAfter.getTime(), new Date(leaf.x509.validTo).getTime());
    assert.ok('cert' in id.secureContextOptions);
    // Leaf first, then the intermediate, as sent on the wire.
    const certs = id.secureContextOptions.cert.match(/-----BEGIN CERTIFICATE-----/g);
    assert.equal(certs?.length, 2);
    assert.ok(new X509Certificate(id.secureContextOptions.cert).checkPrivateKey(crypto.createPrivateKey(id.secureContextOptions.key)));
  });

  test('PEM identity with an encrypted key and passphraseEnv', () => {
    const ids = loadIdentities([{ name: 'enc', cert: leaf.certPath, key: 'enc.key', passphraseEnv: 'ID_PASS' }], pki.dir, { env });
    const id = ids.get('enc')!;
    assert.equal(id.leafSubject, subject(leaf));
    assert.ok('key' in id.secureContextOptions && !id.secureContextOptions.key.includes('ENCRYPTED'));
    assert.throws(
      () => loadIdentities([{ name: 'enc', cert: leaf.certPath, key: 'enc.key', passphraseEnv: 'WRONG_PASS' }], pki.dir, { env }),
      isIdentityError('enc', /enc\.key.*cannot decrypt the private key.*passphrase/s),
    );
    assert.throws(
      () => loadIdentities([{ name: 'enc', cert: leaf.certPath, key: 'enc.key' }], pki.dir, { env }),
      isIdentityError('enc', /enc\.key/),
    );
    assert.throws(
      () => loadIdentities([{ name: 'enc', cert: leaf.certPath, key: 'enc.key', passphraseEnv: 'UNSET_VAR' }], pki.dir, { env }),
      isIdentityError('enc', /UNSET_VAR/),
    );
  });

  test('PKCS#12 identity made by openssl pkcs12 -export loads with its passphrase', () => {
    const ids = loadIdentities([{ name: 'p12', pfx: 'id.p12', passphraseEnv: 'ID_PASS' }], pki.dir, { env });
    const id = ids.get('p12')!;
    assert.ok('pfx' in id.secureContextOptions);
    assert.equal(id.secureContextOptions.passphrase, env.ID_PASS);
    // The leaf is read back from OpenSSL's SecureContext (see pfxLeaf); 'unknown' is the documented
    // fallback for a Node without the internal getCertificate(), which this Node has.
    const nativeHasIt = typeof (tls.createSecureContext().context as { getCertificate?: unknown }).getCertificate === 'function';
    assert.equal(id.leafSubject === 'unknown', !nativeHasIt);
    if (nativeHasIt) {
      assert.equal(id.leafSubject, subject(leaf));
      assert.equal(id.leafSha256, sha256(leaf.certDer));
      assert.equal(id.notAfter.getTime(), new Date(leaf.x509.validTo).getTime());
    }
  });

  test('PKCS#12 with a wrong passphrase is a clear error naming the file', () => {
    assert.throws(
      () => loadIdentities([{ name: 'p12', pfx: 'id.p12', passphraseEnv: 'WRONG_PASS' }], pki.dir, { env }),
      isIdentityError('p12', /id\.p12.*wrong passphrase/),
    );
  });

  test('a key that does not match the certificate is refused', () => {
    assert.throws(
      () => loadIdentities([{ name: 'mismatch', cert: leaf.certPath, key: other.keyPath }], pki.dir, { env }),
      isIdentityError('mismatch', /does not match certificate/),
    );
  });

  test('missing files and files without PEM are clear errors naming the file', () => {
    assert.throws(
      () => loadIdentities([{ name: 'gone', cert: 'missing.pem', key: leaf.keyPath }], pki.dir, { env }),
      isIdentityError('gone', /missing\.pem.*ENOENT/),
    );
    assert.throws(
      () => loadIdentities([{ name: 'gone', pfx: 'missing.p12' }], pki.dir, { env }),
      isIdentityError('gone', /missing\.p12.*ENOENT/),
    );
    fs.writeFileSync(path.join(pki.dir, 'empty.pem'), 'not pem\n');
    assert.throws(
      () => loadIdentities([{ name: 'nopem', cert: 'empty.pem', key: leaf.keyPath }], pki.dir, { env }),
      isIdentityError('nopem', /empty\.pem.*no PEM CERTIFICATE/),
    );
    assert.throws(
      () => loadIdentities([{ name: 'nokey', cert: leaf.certPath, key: 'empty.pem' }], pki.dir, { env }),
      isIdentityError('nokey', /empty\.pem.*PRIVATE KEY/),
    );
  });

  test('expired certificates are refused; ones expiring within 7 days load with a warning', () => {
    const notAfter = new Date(leaf.x509.validTo);
    assert.throws(
      () => loadIdentities([{ name: 'old', cert: leaf.certPath, key: leaf.keyPath }], pki.dir, { env, now: new Date(notAfter.getTime() + 1000) }),
      isIdentityError('old', /expired/),
    );
    assert.throws(
      () => loadIdentities([{ name: 'old', pfx: 'id.p12', passphraseEnv: 'ID_PASS' }], pki.dir, { env, now: new Date(notAfter.getTime() + 1000) }),
      (e: unknown) => e instanceof IdentityError && /expired/.test(e.message),
    );
    const warnings: string[] = [];
    const ids = loadIdentities([{ name: 'soon', cert: leaf.certPath, key: leaf.keyPath }], pki.dir, {
      env,
      now: new Date(notAfter.getTime() - 3 * 86400_000),
      warn: (m) => warnings.push(m),
    });
    assert.ok(ids.has('soon'));
    assert.equal(warnings.length, 1);
    assert.match(warnings[0]!, /"soon".*expires/);
    loadIdentities([{ name: 'fine', cert: leaf.certPath, key: leaf.keyPath }], pki.dir, { env, warn: (m) => warnings.push(m) });
    assert.equal(warnings.length, 1, 'no warning for a certificate valid for months');
  });

  test('configuration mistakes: duplicate names, both pfx and PEM, neither', () => {
    const good = { name: 'a', cert: leaf.certPath, key: leaf.keyPath };
    assert.throws(() => loadIdentities([good, good], pki.dir, { env }), isIdentityError('a', /duplicate/));
    assert.throws(() => loadIdentities([{ ...good, pfx: 'id.p12' }], pki.dir, { env }), isIdentityError('a', /either pfx or cert/));
    assert.throws(() => loadIdentities([{ name: 'b', cert: leaf.certPath }], pki.dir, { env }), isIdentityError('b', /needs cert and key/));
  });

  test('the identity is what a server that requests a client certificate receives (PEM and PKCS#12)', async () => {
    const ids = loadIdentities(
      [
        { name: 'pem', cert: 'chain.pem', key: leaf.keyPath },
        { name: 'p12', pfx: 'id.p12', passphraseEnv: 'ID_PASS' },
      ],
      pki.dir,
      { env },
    );
    const server = pki.issueLeaf('server', { san: ['DNS:localhost'] });
    const seen: string[] = [];
    const srv = tls.createServer(
      { cert: server.certPem + pki.intermediate.certPem, key: fs.readFileSync(server.keyPath), requestCert: true, rejectUnauthorized: true, ca: pki.root.certPem },
      (s) => {
        seen.push(s.getPeerX509Certificate()?.subject ?? 'none');
        s.end();
      },
    );
    await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
    try {
      const port = (srv.address() as { port: number }).port;
      for (const name of ['pem', 'p12']) {
        await new Promise<void>((resolve, reject) => {
          const c = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', ca: pki.root.certPem, ...ids.get(name)!.secureContextOptions });
          c.on('data', () => undefined);
          c.on('end', resolve);
          c.on('error', reject);
        });
      }
    } finally {
      srv.close();
    }
    assert.deepEqual(seen, [leaf.x509.subject, leaf.x509.subject]);
  });
});
