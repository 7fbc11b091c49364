/**
 * Two hubs of one mesh in the NAT lab (`nat_lab.ts`), one of them black-holed
 * from the home network: the home router drops every packet to it (no RST, no
 * ICMP), as a broken upstream route or a firewall would. Both agents joined
 * with both hub addresses; the black-holed hub is first in their bootstraps.
 * Home holds only the other hub, the office both; home and office still list
 * each other and reach each other's services in both directions, through the
 * hub they share. Once the black hole is lifted, home joins that hub by itself.
 *
 * Same requirements and skip rules as `nat_test.ts` (root, `ip`, `iptables`,
 * …; a failure under `CI=true` or `ZTM_NAT_LAB=required`).
 */
import { join } from "node:path";
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { type ApiBody, eventually, type Proc } from "../fixtures/harness.ts";
import { LAB_ADDRESSES, NatLab, natLabTest } from "./nat_lab.ts";
import { HUB_DATA_PORT, HUB_PORT, LAB_MESH, type LabAgent, startLabAgent } from "./nat_mesh.ts";

/** The second hub's address on the internet host (beside the first's, {@link LAB_ADDRESSES}). */
const FAR_HUB_ADDRESS = "198.51.100.2";
const SERVICE_PORT = 8080;
/** The home host's own HTTP service, for tunnels from the office to home. */
const HOME_SERVICE_PORT = 8081;
/** The iptables rule (FORWARD, at the home router) that black-holes the far hub. */
const BLACK_HOLE = ["FORWARD", "-d", FAR_HUB_ADDRESS, "-j", "DROP"];
/** A dial gives up after 10 s, then backs off up to 30 s × 1.5: bound the rejoin generously. */
const REJOIN_DEADLINE_MS = 120_000;

const NAME = "a hub black-holed from home: home and office reach each other through the other hub";

await natLabTest(NAME, async (t, lab) => {
  await lab.exec("internet", "ip", ["addr", "add", `${FAR_HUB_ADDRESS}/24`, "dev", "sw"]);
  await lab.exec("homeRouter", "iptables", ["-I", ...BLACK_HOLE]);

  const caDb = join(lab.dir, "ca.db");
  const ca = lab.spawn("internet", "ca", "ca/main.ts", [`--database=${caDb}`]);
  await ca.waitForLog((l) => l.msg === "listening");
  const startHub = async (address: string, name: string): Promise<Proc> => {
    const hub = lab.spawn("internet", name, "hub/main.ts", [
      "--ca=127.0.0.1:9999",
      `--listen=${address}:${HUB_PORT}`,
      `--data-listen=${address}:${HUB_DATA_PORT}`,
      `--names=${address}`,
      `--data-dir=${join(lab.dir, name)}`,
      `--ca-token-file=${caDb}.token`,
    ]);
    await hub.waitForLog((l) => l.msg === "listening");
    return hub;
  };
  await startHub(LAB_ADDRESSES.internet, "hub-near");
  await startHub(FAR_HUB_ADDRESS, "hub-far");
  const near = `${LAB_ADDRESSES.internet}:${HUB_PORT}`;
  const far = `${FAR_HUB_ADDRESS}:${HUB_PORT}`;
  // The unreachable hub first: home's bootstrap order alone would prefer it.
  const bootstraps = [far, near];
  const [home, office] = await Promise.all([
    startLabAgent(lab, "home", "alice", bootstraps),
    startLabAgent(lab, "office", "bob", bootstraps),
  ]);
  const service = lab.spawn("officeService", "service", "tests/nat/nat_service.ts", [
    `--http=${LAB_ADDRESSES.officeService}:${SERVICE_PORT}`,
  ]);
  const homeService = lab.spawn("home", "home-service", "tests/nat/nat_service.ts", [
    `--http=${LAB_ADDRESSES.home}:${HOME_SERVICE_PORT}`,
  ]);
  await service.waitForLog((l) => l.kind === "http");
  await homeService.waitForLog((l) => l.kind === "http");

  await t.step("the far hub is really black-holed from home, and only from home", async () => {
    const fromHome = await lab.curl("home", `https://${far}/`, { timeoutS: 3 });
    assertEquals(fromHome.code, 28, `home reached the far hub: ${JSON.stringify(fromHome)}`);
    // From the office a TCP connection and a TLS handshake start (curl then refuses the
    // certificate, or the hub asks for one): anything but a timeout or a refusal.
    const fromOffice = await lab.curl("office", `https://${far}/`, { timeoutS: 5 });
    assert(
      fromOffice.code !== 28 && fromOffice.code !== 7,
      `the office did not reach the far hub: ${JSON.stringify(fromOffice)}`,
    );
  });

  await t.step("home holds the near hub only, the office both", async () => {
    await eventually(
      async () => {
        const s = await hubStates(home);
        return s[near]?.connected === true && s[far]?.connected === false &&
          typeof s[far]?.lastError === "string";
      },
      40_000,
      "home on the near hub, its dial to the far hub failed",
    );
    await eventually(
      async () => {
        const s = await hubStates(office);
        return s[near]?.connected === true && s[far]?.connected === true;
      },
      30_000,
      "the office on both hubs",
    );
    const s = await hubStates(home);
    console.log(`  home's far hub: ${s[far].lastError}`);
    assertEquals((await status(home)).connected, true);
  });

  await t.step("each lists the other online", async () => {
    for (const [via, other] of [[home, office], [office, home]] as const) {
      await eventually(
        async () => {
          const res = await via.api("GET", `/api/meshes/${LAB_MESH}/endpoints?limit=500`);
          return res.status === 200 &&
            res.body.items.some((e: ApiBody) => e.id === other.endpointId && e.online);
        },
        20_000,
        `${via.host} lists ${other.host} online`,
      );
    }
  });

  await t.step("home reaches the office service, and the office reaches home's", async () => {
    await offer(office, "web", LAB_ADDRESSES.officeService, SERVICE_PORT, "alice");
    await map(home, SERVICE_PORT, "web", "bob");
    await offer(home, "home-web", LAB_ADDRESSES.home, HOME_SERVICE_PORT, "bob");
    await map(office, HOME_SERVICE_PORT, "home-web", "alice");
    for (const [from, port] of [["home", SERVICE_PORT], ["office", HOME_SERVICE_PORT]] as const) {
      await eventually(
        () => echoes(lab, from, port),
        30_000,
        `a round trip from ${from} through its mapping`,
      );
      for (let i = 0; i < 5; i++) {
        assert(await echoes(lab, from, port), `round trip ${i} from ${from}`);
      }
    }
    // Nothing from home ever crossed its router to the far hub.
    const flows = await lab.routerFlows("homeRouter");
    assert(
      flows.some((f) => f.includes(`dst=${LAB_ADDRESSES.internet}`)) &&
        !flows.some((f) => f.includes(`dst=${FAR_HUB_ADDRESS}`) && f.includes("ASSURED")),
      `home's router shows an established flow to the far hub:\n${flows.join("\n")}`,
    );
  });

  await t.step("the black hole lifted, home joins the far hub by itself", async () => {
    await lab.exec("homeRouter", "iptables", ["-D", ...BLACK_HOLE]);
    const lifted = Date.now();
    await eventually(
      async () => (await hubStates(home))[far]?.connected === true,
      REJOIN_DEADLINE_MS,
      "home on the far hub",
    );
    console.log(
      `  home joined the far hub ${Math.round((Date.now() - lifted) / 100) / 10} s after ` +
        "the black hole was lifted (its dial backoff)",
    );
    assert(await echoes(lab, "home", SERVICE_PORT), "the mapping still works");
  });
});

async function status(agent: LabAgent): Promise<ApiBody> {
  const res = await agent.api("GET", `/api/meshes/${LAB_MESH}`);
  assertEquals(res.status, 200, JSON.stringify(res.body));
  return res.body.status;
}

/** The agent's per-hub states by address. */
async function hubStates(agent: LabAgent): Promise<Record<string, ApiBody>> {
  const hubs: ApiBody[] = (await status(agent)).hubs ?? [];
  return Object.fromEntries(hubs.map((h) => [h.address, h]));
}

/** `agent` offers `tcp/name` (`host:port`) to `user`. */
async function offer(agent: LabAgent, name: string, host: string, port: number, user: string) {
  const res = await agent.api(
    "POST",
    `/api/meshes/${LAB_MESH}/endpoints/${agent.endpointId}/services/tcp/${name}`,
    { host, port, users: [user] },
  );
  assertEquals(res.status, 201, JSON.stringify(res.body));
}

/** `agent` maps `127.0.0.1:port` to `owner`'s `tcp/name`. */
async function map(agent: LabAgent, port: number, name: string, owner: string) {
  const res = await agent.api(
    "POST",
    `/api/meshes/${LAB_MESH}/endpoints/${agent.endpointId}/ports/127.0.0.1/tcp/${port}`,
    { target: { service: name, user: owner } },
  );
  assertEquals(res.status, 201, JSON.stringify(res.body));
}

/** A POST through `host`'s mapping on `port` comes back byte for byte. */
async function echoes(lab: NatLab, host: "home" | "office", port: number): Promise<boolean> {
  const body = crypto.randomUUID().repeat(64);
  const res = await lab.curl(host, `http://127.0.0.1:${port}/echo`, {
    method: "POST",
    body,
    timeoutS: 5,
  });
  return res.code === 0 && res.status === 200 && res.body === body;
}
