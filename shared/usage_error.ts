/** The error of a bad command line (its own module so `config.ts` and `flags.ts` share it). */

/** Thrown for a bad command line; `parseCommandLine` turns it into exit status 2. */
export class UsageError extends Error {}
