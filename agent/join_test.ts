import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { BadRequest } from "@ztm/shared/errors";
import { ENDPOINT_ID_PATTERN } from "@ztm/shared/protocol";
import { endpointIdOfCertificate } from "@ztm/shared/endpoint_id";
import { checkJoinRequest, defaultEndpointName, MAX_BOOTSTRAPS } from "./join.ts";
import { newCa, newLeaf } from "../tests/fixtures/test_pki.ts";

const ca = await newCa();
const root = await newLeaf(ca);

function body(overrides: Record<string, unknown> = {}, agent: Record<string, unknown> = {}) {
  return {
    ca: ca.pem,
    agent: { name: "laptop", ...root, ...agent },
    bootstraps: ["hub.example.com:8888"],
    ...overrides,
  };
}

/** Awaits `promise` and returns its `BadRequest`, failing when it resolves. */
async function refusal(promise: Promise<unknown>): Promise<BadRequest> {
  try {
    await promise;
  } catch (err) {
    if (err instanceof BadRequest) return err;
    throw err;
  }
  throw new Error("Expected a BadRequest");
}

Deno.test("a valid join yields the mesh config with a new endpoint id and the certificate's user", async () => {
  const first = await checkJoinRequest("home", body({ bootstraps: ["hub:8888", "[::1]:9"] }));
  assertEquals(first.user, "root");
  assertEquals(first.config, {
    name: "home",
    ca: ca.pem,
    certificate: root.certificate,
    privateKey: root.privateKey,
    bootstraps: ["hub:8888", "[::1]:9"],
    endpointId: first.config.endpointId,
    endpointSeed: first.config.endpointSeed,
    endpointName: "laptop",
  });
  assert(ENDPOINT_ID_PATTERN.test(first.config.endpointId));
  assertEquals(
    first.config.endpointId,
    endpointIdOfCertificate(root.certificate, first.config.endpointSeed),
  );
  const second = await checkJoinRequest("home", body());
  assert(second.config.endpointId !== first.config.endpointId);
});

Deno.test("a join without agent.name takes the given endpoint name, else the sanitised host name", async () => {
  const { name: _, ...agent } = body().agent;
  const given = await checkJoinRequest("home", { ...body(), agent }, { endpointName: "box" });
  assertEquals(given.config.endpointName, "box");
  const fallback = await checkJoinRequest("home", { ...body(), agent });
  assertEquals(fallback.config.endpointName, defaultEndpointName());
});

Deno.test("the default endpoint name is the host name made into a valid name", () => {
  assertEquals(defaultEndpointName("laptop.local"), "laptop.local");
  assertEquals(defaultEndpointName("My Laptop (2)"), "My-Laptop--2-");
  assertEquals(defaultEndpointName("-.-box"), "box");
  assertEquals(defaultEndpointName("x".repeat(80)), "x".repeat(64));
  assertEquals(defaultEndpointName(""), "endpoint");
  assertEquals(defaultEndpointName("..."), "endpoint");
});

Deno.test("a join refuses a mesh name outside the name pattern", async () => {
  for (const mesh of ["", ".hidden", "-x", "a b", "x".repeat(65), "ü"]) {
    const err = await refusal(checkJoinRequest(mesh, body()));
    assertEquals(err.code, "bad_mesh_name", mesh);
  }
});

Deno.test("a join refuses files that do not fit together, naming what is wrong", async (t) => {
  const otherCa = await newCa();
  const fromOtherCa = await newLeaf(otherCa);
  const hub = await newLeaf(ca, { name: "hub.example.com", role: "server" });
  const expired = await newLeaf(ca, { now: new Date(Date.now() - 10 * 86_400_000), days: 1 });
  const future = await newLeaf(ca, { now: new Date(Date.now() + 10 * 86_400_000) });
  const stranger = await newLeaf(ca, { name: "stranger" });
  const cases: [string, Record<string, unknown>, string, RegExp][] = [
    ["garbage CA", body({ ca: "not a certificate" }), "bad_ca", /not a PEM X.509/],
    ["CA that is a user certificate", body({ ca: root.certificate }), "bad_ca", /not a CA/],
    ["CA that is not text", body({ ca: 42 }), "bad_ca", /PEM text/],
    [
      "garbage certificate",
      body({}, { certificate: "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----" }),
      "bad_certificate",
      /Not a PEM X.509/,
    ],
    [
      // Both CAs are named "ztm mesh CA": only the signature tells them apart.
      "certificate from another CA with the same name",
      body({}, fromOtherCa),
      "certificate_not_from_ca",
      /was not issued by the CA "CN=ztm mesh CA"/,
    ],
    [
      "the CA certificate as the user certificate",
      body({}, { certificate: ca.pem }),
      "wrong_role",
      /role "ca"/,
    ],
    ["expired certificate", body({}, expired), "certificate_expired", /expired at/],
    ["certificate not yet valid", body({}, future), "certificate_not_yet_valid", /valid only from/],
    ["hub-role certificate", body({}, hub), "wrong_role", /role "server"/],
    [
      "key of another certificate",
      body({}, { privateKey: stranger.privateKey }),
      "key_mismatch",
      /does not belong to certificate "CN=root"/,
    ],
    ["garbage key", body({}, { privateKey: "nope" }), "bad_private_key", /PKCS#8/],
    ["missing key", body({}, { privateKey: undefined }), "bad_private_key", /PKCS#8/],
    ["agent that is not an object", body({ agent: "root" }), "bad_request", /agent must be/],
    ["unknown field", body({ hubs: [] }), "bad_request", /unknown field "hubs"/],
    ["bad endpoint name", body({}, { name: "-bad" }), "bad_endpoint_name", /"-bad"/],
    [
      "endpoint name in the id form",
      body({}, { name: `EP-${"AB".repeat(16)}` }),
      "bad_endpoint_name",
      /id form/,
    ],
  ];
  for (const [what, input, code, message] of cases) {
    await t.step(what, async () => {
      const err = await refusal(checkJoinRequest("home", input));
      assertEquals(err.status, 400);
      assertEquals(err.code, code);
      assert(message.test(err.message), err.message);
    });
  }
});

Deno.test("a join refuses bootstraps that are not 1 to 16 host:port addresses", async () => {
  const bad: unknown[] = [
    undefined,
    "hub:8888",
    [],
    [42],
    ["hub"],
    ["hub:"],
    [":8888"],
    ["hub:0"],
    ["hub:65536"],
    ["hub:http"],
    ["::1:8888"],
    ["bad host:8888"],
    Array.from({ length: MAX_BOOTSTRAPS + 1 }, (_, i) => `hub${i}:8888`),
  ];
  for (const bootstraps of bad) {
    const err = await refusal(checkJoinRequest("home", body({ bootstraps })));
    assertEquals(err.code, "bad_bootstraps", JSON.stringify(bootstraps));
  }
});

Deno.test("a join keeps each hub address once, in order", async () => {
  const { config } = await checkJoinRequest(
    "home",
    body({ bootstraps: ["b:1", "a:2", "b:1", " c:3 "] }),
  );
  assertEquals(config.bootstraps, ["b:1", "a:2", "c:3"]);
});
