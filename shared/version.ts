/** The ztm release and mesh protocol versions, shown by `--version` and sent with every session. */

/** Release version of every ztm component. */
export const VERSION = "0.1.0";
