import assert from "node:assert/strict";
import { ZtmError } from "@ztm/shared/errors";
import type { MeshService } from "@ztm/shared/protocol";
import { formatMeshName, parseMeshName, resolveMeshName } from "./names.ts";

function refusal(fn: () => unknown): ZtmError {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof ZtmError, String(err));
    return err;
  }
  throw new Error("no refusal");
}

Deno.test("mesh names parse by the grammar", () => {
  assert.deepEqual(parseMeshName("ssh.mesh"), { service: "ssh" });
  assert.deepEqual(parseMeshName("SSH.MESH."), { service: "SSH" });
  assert.deepEqual(parseMeshName("ssh.office.mesh"), { service: "ssh", endpoint: "office" });
  assert.deepEqual(parseMeshName("ssh.alice.user.mesh"), { service: "ssh", user: "alice" });
  assert.deepEqual(parseMeshName("ssh.office.alice.user.mesh"), {
    service: "ssh",
    endpoint: "office",
    user: "alice",
  });
  // Two labels: the second is an endpoint, even one named "user".
  assert.deepEqual(parseMeshName("ssh.user.mesh"), { service: "ssh", endpoint: "user" });
  assert.equal(parseMeshName("intranet.office.lan"), null);
  assert.equal(parseMeshName("10.0.0.1"), null);
  assert.equal(parseMeshName("mesh"), null);
  assert.equal(formatMeshName({ service: "s", endpoint: "e", user: "u" }), "s.e.u.user.mesh");
});

Deno.test("malformed mesh names are refused with the grammar", () => {
  for (const bad of [".mesh", "a..mesh", "a.b.c.mesh", "a b.mesh", "a.b.c.d.user.mesh", "é.mesh"]) {
    const err = refusal(() => parseMeshName(bad));
    assert.equal(err.code, "bad_mesh_name", bad);
    assert.match(err.message, /SERVICE\[\.ENDPOINT\]\[\.USER\.user\]\.mesh/);
  }
  assert.equal(refusal(() => parseMeshName(`${"a".repeat(64)}.mesh`)).code, "bad_mesh_name");
});

const web = (user: string, providers: [string, string, boolean][]): MeshService => ({
  proto: "tcp",
  name: "web",
  user,
  providers: providers.map(([endpoint, name, online]) => ({ endpoint, name, online, users: [] })),
});

Deno.test("a bare name resolves to the online providers of its only user", () => {
  const r = resolveMeshName({ service: "web" }, [
    web("bob", [["ep-1", "office", true], ["ep-2", "home", false], ["ep-3", "lab", true]]),
  ]);
  assert.deepEqual(r, {
    proto: "tcp",
    service: "web",
    user: "bob",
    providers: [{ endpoint: "ep-1", name: "office" }, { endpoint: "ep-3", name: "lab" }],
  });
  // Case does not matter (browsers lower-case host names) when the spelling is unique.
  assert.equal(
    resolveMeshName({ service: "WEB" }, [web("bob", [["e", "n", true]])]).service,
    "web",
  );
});

Deno.test("an endpoint label pins one provider, by name or id", () => {
  const listing = [web("bob", [["ep-1", "office", true], ["ep-3", "lab", true]])];
  assert.deepEqual(resolveMeshName({ service: "web", endpoint: "Lab" }, listing).providers, [
    { endpoint: "ep-3", name: "lab" },
  ]);
  assert.deepEqual(resolveMeshName({ service: "web", endpoint: "ep-1" }, listing).providers, [
    { endpoint: "ep-1", name: "office" },
  ]);
  assert.equal(
    refusal(() => resolveMeshName({ service: "web", endpoint: "nope" }, listing)).code,
    "unknown_service",
  );
});

Deno.test("a name two users offer is refused naming them, and the user form resolves it", () => {
  const listing = [web("carol", [["ep-c", "c", true]]), web("bob", [["ep-b", "b", true]])];
  const err = refusal(() => resolveMeshName({ service: "web" }, listing));
  assert.equal(err.status, 409);
  assert.equal(err.code, "ambiguous_service");
  assert.match(
    err.message,
    /Several users offer tcp\/web: bob, carol; name one, as in web\.bob\.user\.mesh/,
  );
  assert.equal(
    resolveMeshName({ service: "web", user: "carol" }, listing).providers[0].endpoint,
    "ep-c",
  );
  // A pinned endpoint belongs to one user: no ambiguity left.
  assert.equal(resolveMeshName({ service: "web", endpoint: "b" }, listing).user, "bob");
});

Deno.test("unknown names and offline services are refused with their own codes", () => {
  assert.equal(refusal(() => resolveMeshName({ service: "nope" }, [])).status, 404);
  assert.equal(
    refusal(() =>
      resolveMeshName({ service: "web", user: "dave" }, [web("bob", [["e", "n", true]])])
    )
      .code,
    "unknown_service",
  );
  const off = refusal(() => resolveMeshName({ service: "web" }, [web("bob", [["e", "n", false]])]));
  assert.equal(off.status, 503);
  assert.equal(off.code, "no_provider_online");
});
