/**
 * `ztm ca|hub|agent|start`: runs a component with its own flags and `--help`,
 * exactly as its entry point does (`ca/main.ts`, `hub/main.ts`,
 * `agent/main.ts`, `cli/start.ts`), loaded only when asked for so client
 * commands stay quick to start.
 */

/** Runs a component with its arguments until it is stopped (it exits the process itself). */
export type ComponentMain = (args: string[]) => Promise<void>;

/** The components, each with a one-line summary for `ztm --help`. */
export const COMPONENTS: Record<string, { summary: string; main: () => Promise<ComponentMain> }> = {
  ca: {
    summary: "run the certificate authority (REST API on 127.0.0.1:9999)",
    main: async () => (await import("@ztm/ca/main")).main,
  },
  hub: {
    summary: "run a hub (agents dial 0.0.0.0:8888; data port 8889)",
    main: async () => (await import("@ztm/hub/main")).main,
  },
  agent: {
    summary: "run this endpoint's agent (API on 127.0.0.1:7777)",
    main: async () => (await import("@ztm/agent/main")).main,
  },
  start: {
    summary: "run a CA, a hub and an agent here, joined to a local mesh as root",
    main: async () => (await import("./start.ts")).main,
  },
};
