/**
 * IANA names of the TLS cipher suites a ServerHello commonly selects (IANA "TLS Cipher Suites"
 * registry; RFC 8446 §B.4, RFC 5289, RFC 7905, RFC 5246 §A.5), for decisions made from the
 * bytes (inspect mode), where no OpenSSL session can name the suite. The same spelling as
 * Node's `getCipher().standardName`.
 */
const NAMES: Record<number, string> = {
  0x1301: 'TLS_AES_128_GCM_SHA256',
  0x1302: 'TLS_AES_256_GCM_SHA384',
  0x1303: 'TLS_CHACHA20_POLY1305_SHA256',
  0x1304: 'TLS_AES_128_CCM_SHA256',
  0xc02b: 'TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256',
  0xc02c: 'TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384',
  0xc02f: 'TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256',
  0xc030: 'TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384',
  0xcca8: 'TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256',
  0xcca9: 'TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256',
  0xc009: 'TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA',
  0xc00a: 'TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA',
  0xc013: 'TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA',
  0xc014: 'TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA',
  0xc023: 'TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256',
  0xc024: 'TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA384',
  0xc027: 'TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256',
  0xc028: 'TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384',
  0xc011: 'TLS_ECDHE_RSA_WITH_RC4_128_SHA',
  0x009e: 'TLS_DHE_RSA_WITH_AES_128_GCM_SHA256',
  0x009f: 'TLS_DHE_RSA_WITH_AES_256_GCM_SHA384',
  0xccaa: 'TLS_DHE_RSA_WITH_CHACHA20_POLY1305_SHA256',
  0x009c: 'TLS_RSA_WITH_AES_128_GCM_SHA256',
  0x009d: 'TLS_RSA_WITH_AES_256_GCM_SHA384',
  0x002f: 'TLS_RSA_WITH_AES_128_CBC_SHA',
  0x0035: 'TLS_RSA_WITH_AES_256_CBC_SHA',
  0x003c: 'TLS_RSA_WITH_AES_128_CBC_SHA256',
  0x000a: 'TLS_RSA_WITH_3DES_EDE_CBC_SHA',
  0x0004: 'TLS_RSA_WITH_RC4_128_MD5',
  0x0005: 'TLS_RSA_WITH_RC4_128_SHA',
};

/** The IANA name of cipher suite `id` (0..0xffff), or `0x` + 4 hex digits when not in the table. */
export function cipherSuiteName(id: number): string {
  return NAMES[id] ?? `0x${id.toString(16).padStart(4, '0')}`;
}

/**
 * Why a cipher suite is refused whatever the rule says, or null: export-grade, NULL (no
 * encryption), anonymous (no server authentication) and RC4 suites (RFC 7465 forbids RC4; RFC
 * 5246 §A.5 and the IANA registry mark the others insecure). The code points are the IANA
 * registry's TLS_*_EXPORT_*, TLS_*_WITH_NULL_*, TLS_DH_anon_* / TLS_ECDH_anon_* and *_RC4_*.
 */
export function refusedCipherSuite(id: number): string | null {
  if (EXPORT.has(id)) return 'an export-grade suite';
  if (NULL_CIPHER.has(id)) return 'a NULL (unencrypted) suite';
  if (ANONYMOUS.has(id)) return 'an anonymous (unauthenticated) suite';
  if (RC4.has(id)) return 'an RC4 suite (RFC 7465)';
  return null;
}

const EXPORT = new Set([0x0003, 0x0006, 0x0008, 0x000b, 0x000e, 0x0011, 0x0014, 0x0017, 0x0019, 0x0026, 0x0027, 0x0028, 0x0029, 0x002a, 0x002b, 0x0062, 0x0063, 0x0064, 0x0065]);
const NULL_CIPHER = new Set([
  0x0000, 0x0001, 0x0002, 0x002c, 0x002d, 0x002e, 0x003b, 0x00b0, 0x00b1, 0x00b4, 0x00b5, 0x00b8, 0x00b9, 0xc001, 0xc006, 0xc00b, 0xc010, 0xc015, 0xc039, 0xc03a, 0xc03b,
]);
const ANONYMOUS = new Set([
  0x0017, 0x0018, 0x0019, 0x001a, 0x001b, 0x0034, 0x003a, 0x0046, 0x006c, 0x006d, 0x0089, 0x009b, 0x00a6, 0x00a7, 0x00bf, 0x00c5, 0xc015, 0xc016, 0xc017, 0xc018, 0xc019, 0xc046, 0xc047,
  0xc05a, 0xc05b, 0xc084, 0xc085,
]);
const RC4 = new Set([0x0003, 0x0004, 0x0005, 0x0017, 0x0018, 0x0020, 0x0024, 0x0028, 0x002b, 0x008a, 0x008e, 0x0092, 0xc002, 0xc007, 0xc00c, 0xc011, 0xc016, 0xc033]);
