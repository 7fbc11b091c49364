/**
 * Every code the `ztm` command line raises itself, with its status (the
 * error class it is raised as). Refusals of the agent and the CA keep their
 * own codes (`AGENT_ERRORS` in `@ztm/shared/agent_api`, `CA_ERRORS`).
 *
 * @module
 */
import { type CodeCatalogue, type ErrorMaker, errorMaker } from "@ztm/shared/errors";

/** The command line's codes and their statuses. */
export const CLI_ERRORS = {
  // Finding the agent and the mesh (`connect.ts`)
  no_token: 404,
  no_mesh: 404,
  // Talking to the CA (`cert_commands.ts`)
  ca_unreachable: 503,
  // Installing the system service (`service_commands.ts`)
  service_unreachable_code: 400,
  service_install_failed: 500,
} as const satisfies CodeCatalogue;

/** Makes the errors of `CLI_ERRORS`. */
export const cliError: ErrorMaker<typeof CLI_ERRORS> = errorMaker(CLI_ERRORS);
