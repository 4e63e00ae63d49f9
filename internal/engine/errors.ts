/**
 * The message of anything thrown, for decision details and logs. Realm-safe: errors made by Node's
 * core (sockets, DNS) are recognised even where `instanceof Error` is false (jest's test realm).
 */
import { types } from 'node:util';

export function errorText(err: unknown): string {
  return types.isNativeError(err) || err instanceof Error ? (err as Error).message : String(err);
}
