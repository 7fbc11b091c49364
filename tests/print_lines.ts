/**
 * A stand-in process for the harness's own tests: writes each argument as one
 * line on stderr and exits. Used to check that the log scan catches a key.
 */
for (const line of Deno.args) console.error(line);
