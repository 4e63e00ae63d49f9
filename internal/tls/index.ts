/** Public surface of internal/tls: record framing, handshake framing and parsers, alerts. */
export { BoundedReader, ParseError } from '../bytes/reader';
export * from './record';
export * from './handshake';
export * from './alert';
