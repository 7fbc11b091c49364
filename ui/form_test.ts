/**
 * The endpoint screen's small forms: the grid of fields made from specs
 * (ids, labels, hints, numeric keyboards, the values), and the outcome of
 * the last submit under them, rendered on the server; and `useFormState`
 * typed into and submitted in a real browser.
 */
import assert from "node:assert/strict";
import { h } from "preact";
import { renderToString } from "preact-render-to-string";
import { FieldGrid, type FieldSpec, type FormState } from "./form.tsx";
import { serveModulePage, uiModule } from "./_fixture.ts";

const FIELDS: FieldSpec[] = [
  { key: "service", label: "Service", hint: "tcp/NAME", placeholder: "tcp/ssh" },
  { key: "port", label: "Local port", numeric: true },
];

function form(values: Record<string, string>, outcome: { error?: string; done?: string } = {}) {
  const noop = () => {};
  const state: FormState = {
    values,
    set: noop,
    start: noop,
    fail: noop,
    succeed: noop,
    ...outcome,
  };
  return renderToString(h(FieldGrid, { idPrefix: "map", fields: FIELDS, form: state }));
}

Deno.test("FieldGrid makes one labelled field per spec, ids from the prefix and key", () => {
  const html = form({ service: "tcp/web", port: "8080" });
  assert.equal(
    html,
    '<div class="grid4">' +
      '<div class="field"><label for="map-service">Service</label>' +
      '<input id="map-service" aria-describedby="map-service-hint" placeholder="tcp/ssh" ' +
      'value="tcp/web" autocomplete="off"/><small id="map-service-hint">tcp/NAME</small></div>' +
      '<div class="field"><label for="map-port">Local port</label>' +
      '<input id="map-port" inputmode="numeric" value="8080" autocomplete="off"/></div>' +
      "</div>",
  );
});

Deno.test("FieldGrid shows the last submit's refusal or confirmation under the fields", () => {
  const refused = form({}, { error: 'No service "web"' });
  assert.ok(
    refused.endsWith('</div><div class="error" role="alert"> No service &quot;web&quot;</div>'),
    refused,
  );
  const done = form({}, { done: "Port 8080 mapped" });
  assert.ok(done.endsWith('</div><div class="notice" role="status">Port 8080 mapped</div>'), done);
  assert.ok(!form({}).includes("role="), "no outcome, no box");
});

const FORM_ENTRY = `
import { render } from "preact";
import { FieldGrid, useFormState } from "${uiModule("form.tsx")}";
const w = window as any;
function Form() {
  const form = useFormState({ service: "tcp/ssh", port: "" });
  w.form = form;
  return <FieldGrid idPrefix="map" form={form} fields={[
    { key: "service", label: "Service" },
    { key: "port", label: "Local port", numeric: true },
  ]} />;
}
render(<Form />, document.getElementById("root")!);
`;

// deno-lint-ignore no-explicit-any
type Win = any;

Deno.test("useFormState keeps what is typed, shows a refusal or a confirmation, and resets chosen fields", async () => {
  await using s = await serveModulePage({ entry: FORM_ENTRY });
  const page = await s.open("/");
  const timeout = { timeout: 10_000 };
  const values = () => page.evaluate(() => (window as Win).form.values);
  await page.getByLabel("Local port").fill("2222", timeout);
  await page.getByLabel("Service").fill("tcp/web", timeout);
  assert.deepEqual(await values(), { service: "tcp/web", port: "2222" });

  await page.evaluate(() => (window as Win).form.fail('No service "web"'));
  await page.getByRole("alert").waitFor(timeout);
  assert.equal(await page.getByRole("alert").textContent(), ' No service "web"');
  await page.evaluate(() => (window as Win).form.start());
  await page.getByRole("alert").waitFor({ state: "detached", ...timeout });

  await page.evaluate(() => (window as Win).form.succeed("Port 2222 mapped", { port: "" }));
  await page.getByRole("status").waitFor(timeout);
  assert.equal(await page.getByRole("status").textContent(), "Port 2222 mapped");
  assert.deepEqual(await values(), { service: "tcp/web", port: "" });
  assert.equal(await page.getByLabel("Local port").inputValue(), "");
  assert.equal(await page.getByLabel("Service").inputValue(), "tcp/web");
});
