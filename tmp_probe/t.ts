import { checkCsr, altNamesOf, x509 } from "../shared/certs.ts";
for (const f of ["tmp_probe/ed.csr","tmp_probe/p384.csr","tmp_probe/rsa.csr","tmp_probe/hub.csr"]) {
  try { console.log(f, await checkCsr(Deno.readTextFileSync(f))); } catch (e) { console.log(f, "ERR", (e as Error).constructor.name, (e as Error).message); }
}
