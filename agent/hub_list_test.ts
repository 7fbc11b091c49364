import assert from "node:assert/strict";
import { parseCertificate, serialOf } from "@ztm/shared/certs";
import { peerName } from "@ztm/shared/peer_protocol";
import { checkHubEntry } from "./hub_list.ts";
import { newCa, newLeaf } from "../tests/fixtures/test_pki.ts";

const DAY = 86_400_000;

Deno.test("a hub list entry is taken only for a hub certificate of this mesh, on its own names", async () => {
  const ca = await newCa();
  const hub = await newLeaf(ca, {
    name: "hub",
    role: "server",
    altNames: ["hub.example.net", "192.0.2.7"],
  });
  const serial = serialOf(parseCertificate(hub.certificate));
  const ok = await checkHubEntry(
    { addresses: ["hub.example.net:8888", "192.0.2.7:8888"], certificate: hub.certificate },
    ca.pem,
    new Set(),
  );
  assert.deepEqual(ok.addresses, ["hub.example.net:8888", "192.0.2.7:8888"]);
  assert.equal(ok.serial, serial);

  // Only the addresses the certificate names are kept; none named: refused.
  const some = await checkHubEntry(
    { addresses: ["evil.example.org:8888", "HUB.example.net:9000"], certificate: hub.certificate },
    ca.pem,
    new Set(),
  );
  assert.deepEqual(some.addresses, ["HUB.example.net:9000"]);
  await assert.rejects(
    checkHubEntry(
      { addresses: ["evil.example.org:8888", "127.0.0.1:22"], certificate: hub.certificate },
      ca.pem,
      new Set(),
    ),
    /names none of its addresses/,
  );

  // A revoked hub.
  await assert.rejects(
    checkHubEntry(
      { addresses: ["hub.example.net:8888"], certificate: hub.certificate },
      ca.pem,
      new Set([serial]),
    ),
    /is revoked/,
  );

  // Expired, or not yet valid.
  await assert.rejects(
    checkHubEntry(
      { addresses: ["hub.example.net:8888"], certificate: hub.certificate },
      ca.pem,
      new Set(),
      Date.now() + 400 * DAY,
    ),
    /not valid now/,
  );

  // A user's certificate (even one with serverAuth for end-to-end tunnels) is not a hub's.
  const user = await newLeaf(ca, {
    name: "mallory",
    role: "peer",
    altNames: [peerName("mallory"), "hub.example.net"],
  });
  await assert.rejects(
    checkHubEntry(
      { addresses: ["hub.example.net:8888"], certificate: user.certificate },
      ca.pem,
      new Set(),
    ),
    /not a hub certificate/,
  );

  // A hub certificate of another CA.
  const other = await newCa();
  const foreign = await newLeaf(other, {
    name: "hub",
    role: "server",
    altNames: ["hub.example.net"],
  });
  await assert.rejects(
    checkHubEntry(
      { addresses: ["hub.example.net:8888"], certificate: foreign.certificate },
      ca.pem,
      new Set(),
    ),
    /not signed by this mesh's CA/,
  );

  // Garbage.
  await assert.rejects(
    checkHubEntry({ addresses: ["hub.example.net:8888"], certificate: "junk" }, ca.pem, new Set()),
    /does not parse/,
  );
});
