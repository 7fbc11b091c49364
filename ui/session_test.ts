import { strictEqual } from "node:assert/strict";
import { SESSION_HEADER as CONTRACT_HEADER } from "@ztm/shared/agent_api";
import { SESSION_HEADER } from "./session.ts";

Deno.test("the dashboard sends its session's secret in the header the agent API's contract names", () => {
  strictEqual(SESSION_HEADER, CONTRACT_HEADER);
});
