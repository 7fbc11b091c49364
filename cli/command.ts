/** The shape of one `ztm` subcommand that runs and returns (everything but the components). */
import type { CommandSpec, Flags } from "@ztm/shared/flags";

/**
 * A subcommand: its flags and what it does. `run` prints its result and
 * throws a `ZtmError` (exit 1) when the operation is refused or fails, or a
 * `UsageError` (exit 2) for a command line it cannot act on.
 */
export interface Command {
  spec: CommandSpec;
  run(flags: Flags): Promise<void>;
}
