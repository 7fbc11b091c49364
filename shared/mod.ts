/**
 * Modules every ztm component shares: errors, logging, flags, certificates,
 * HTTP plumbing and secret files. Import the focused paths (`@ztm/shared/errors`, …).
 *
 * @module
 */
export * from "./errors.ts";
export * from "./log.ts";
export * from "./flags.ts";
export * from "./files.ts";
export * from "./http.ts";
export * from "./certs.ts";
export * from "./version.ts";
