/**
 * The message of anything thrown, for decision details and logs: pki's `errText` (one line, at
 * most 300 characters; realm-safe, so errors made by Node's core — sockets, DNS — are recognised
 * even where `instanceof Error` is false, as in jest's test realm).
 */
import { errText } from '../pki/errors';

export function errorText(err: unknown): string {
  return errText(err);
}
