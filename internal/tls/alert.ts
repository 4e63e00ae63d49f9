/**
 * TLS alerts (RFC 8446 §6, RFC 5246 §7.2): `struct { AlertLevel level; AlertDescription
 * description; } Alert;` carried in a record of ContentType alert. ca-proxy sends alerts in
 * the clear to end a handshake it refuses (e.g. certificate_revoked) before any keys exist.
 */
import { ContentType } from './record';
import { BoundedReader, ParseError } from '../bytes/reader';

/** AlertLevel (RFC 5246 §7.2; TLS 1.3 keeps the field but ignores it except for close_notify/user_canceled). */
export const AlertLevel = { warning: 1, fatal: 2 } as const;

/**
 * AlertDescription values: RFC 8446 §6 and RFC 5246 §7.2. Values marked RESERVED in RFC 8446
 * keep their RFC 5246 names because earlier versions still send them.
 */
export const AlertDescription = {
  close_notify: 0,
  unexpected_message: 10,
  bad_record_mac: 20,
  decryption_failed: 21,
  record_overflow: 22,
  decompression_failure: 30,
  handshake_failure: 40,
  no_certificate: 41,
  bad_certificate: 42,
  unsupported_certificate: 43,
  certificate_revoked: 44,
  certificate_expired: 45,
  certificate_unknown: 46,
  illegal_parameter: 47,
  unknown_ca: 48,
  access_denied: 49,
  decode_error: 50,
  decrypt_error: 51,
  export_restriction: 60,
  protocol_version: 70,
  insufficient_security: 71,
  internal_error: 80,
  inappropriate_fallback: 86,
  user_canceled: 90,
  no_renegotiation: 100,
  missing_extension: 109,
  unsupported_extension: 110,
  certificate_unobtainable: 111,
  unrecognized_name: 112,
  bad_certificate_status_response: 113,
  bad_certificate_hash_value: 114,
  unknown_psk_identity: 115,
  certificate_required: 116,
  no_application_protocol: 120,
} as const;

const ALERT_NAMES: Record<number, string> = Object.fromEntries(
  Object.entries(AlertDescription).map(([k, v]) => [v, k]),
);

/** The RFC name of an AlertDescription ('certificate_revoked'), or 'unknown(N)'. */
export function alertName(code: number): string {
  return ALERT_NAMES[code] ?? `unknown(${code})`;
}

/** Bytes in an alert record: 5-byte header + level + description. */
export const ALERT_RECORD_BYTES = 7;

export interface BuildAlertOptions {
  /** AlertLevel; default fatal (2). */
  level?: number;
  /** legacy_record_version of the record; default 0x0303 (what TLS 1.2 and 1.3 put there). */
  version?: number;
}

/**
 * A complete plaintext alert record (7 bytes), ready to write to the wire.
 * @param description AlertDescription, 0..255
 * @throws RangeError for a description, level or version out of range (programming errors)
 */
export function buildAlert(description: number, opts: BuildAlertOptions = {}): Buffer {
  const level = opts.level ?? AlertLevel.fatal;
  const version = opts.version ?? 0x0303;
  if (!Number.isInteger(description) || description < 0 || description > 255) {
    throw new RangeError(`alert description ${description} is not a byte`);
  }
  if (level !== AlertLevel.warning && level !== AlertLevel.fatal) throw new RangeError(`alert level ${level}`);
  if (!Number.isInteger(version) || version < 0 || version > 0xffff) throw new RangeError(`record version ${version}`);
  return Buffer.from([ContentType.alert, version >> 8, version & 0xff, 0, 2, level, description]);
}

/** A parsed alert. */
export interface Alert {
  /** AlertLevel: 1 warning, 2 fatal. */
  level: number;
  /** AlertDescription. */
  description: number;
}

/**
 * Parse the fragment of a plaintext alert record. RFC 8446 §5.1 forbids fragmenting or
 * coalescing alerts, so the fragment must be exactly 2 bytes.
 * @throws ParseError 'truncated' (fewer than 2 bytes), 'malformed' (more than 2, or a level
 *         other than warning/fatal — OpenSSL rejects those as well)
 */
export function parseAlert(fragment: Buffer): Alert {
  const r = new BoundedReader(fragment);
  const level = r.u8('alert level');
  const description = r.u8('alert description');
  r.expectEnd('alert');
  if (level !== AlertLevel.warning && level !== AlertLevel.fatal) {
    throw new ParseError('malformed', `alert: unknown level ${level}`);
  }
  return { level, description };
}
