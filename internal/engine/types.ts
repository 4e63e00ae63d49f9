/**
 * Types the engine's modules share (session.ts, intercept.ts, inspect.ts, flow.ts), kept apart so
 * that the modules a Session drives never import the Session back.
 */

/** The two sides of a connection: the workload inside the cluster, the external server. */
export type Peer = 'workload' | 'server';
