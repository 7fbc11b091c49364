/**
 * The small pieces every screen uses, rendered on the server: labels tied to
 * their inputs, boxes that render nothing without a message, the pager's
 * numbers, times in words, and the buttons' accessible names; and
 * `ConfirmButton`'s question, answered in a real browser.
 */
import assert from "node:assert/strict";
import { type ComponentChildren, h } from "preact";
import { renderToString } from "preact-render-to-string";
import {
  ConfirmButton,
  CopyButton,
  ErrorBox,
  Field,
  ListTable,
  MeshAndEndpointFields,
  Notice,
  OnlineBadge,
  Pager,
  relativeTime,
  Section,
  Time,
  WarningBox,
} from "./components.tsx";
import { serveModulePage, uiModule } from "./_fixture.ts";

// deno-lint-ignore no-explicit-any
const render = (component: any, props: Record<string, unknown>, ...children: ComponentChildren[]) =>
  renderToString(h(component, props, ...children));

const noop = () => {};

Deno.test("Field ties its label and hint to the input and passes the rest to it", () => {
  assert.equal(
    render(Field, { id: "f-port", label: "Port", hint: "1 to 65535", value: "22", required: true }),
    '<div class="field"><label for="f-port">Port</label>' +
      '<input id="f-port" aria-describedby="f-port-hint" value="22" required/>' +
      '<small id="f-port-hint">1 to 65535</small></div>',
  );
  assert.equal(
    render(Field, { id: "f", label: "Name" }),
    '<div class="field"><label for="f">Name</label><input id="f"/></div>',
  );
  const both = render(MeshAndEndpointFields, {
    prefix: "join",
    meshLabel: "Mesh name",
    endpointLabel: "This endpoint",
    mesh: "work",
    endpointName: "",
    onMesh: noop,
    onEndpointName: noop,
  });
  assert.ok(both.includes('<label for="join-mesh">Mesh name</label>'), both);
  assert.ok(both.includes('<input id="join-mesh" aria-describedby="join-mesh-hint" value="work"'));
  assert.ok(both.includes('<label for="join-endpoint">This endpoint</label>'));
});

Deno.test("ErrorBox, Notice and WarningBox render nothing without a message, and announce one", () => {
  for (const box of [ErrorBox, Notice, WarningBox]) {
    assert.equal(render(box, {}), "");
    assert.equal(render(box, { message: "" }), "");
  }
  assert.equal(
    render(ErrorBox, { message: "Unknown mesh", title: "Join failed" }),
    '<div class="error" role="alert"><strong>Join failed:</strong> Unknown mesh</div>',
  );
  assert.equal(
    render(Notice, { message: "Saved" }),
    '<div class="notice" role="status">Saved</div>',
  );
  assert.equal(
    render(WarningBox, { message: "Nobody offers it" }),
    '<div class="warning" role="status">Nobody offers it</div>',
  );
});

Deno.test("OnlineBadge, Section, CopyButton and ListTable name what they show", () => {
  assert.equal(render(OnlineBadge, { online: true }), '<span class="badge on">online</span>');
  assert.equal(
    render(OnlineBadge, { online: false, offText: "down" }),
    '<span class="badge off">down</span>',
  );
  assert.equal(
    render(Section, { title: "Port mappings & more" }, "x"),
    '<section class="card" aria-labelledby="port-mappings-more-title">' +
      '<h2 id="port-mappings-more-title">Port mappings &amp; more</h2>x</section>',
  );
  assert.ok(render(Section, { title: "T", id: "own" }, "").includes('id="own-title"'));
  assert.equal(
    render(CopyButton, { text: "ztm dashboard", what: "command" }),
    '<button type="button" class="copy secondary small" data-copy="ztm dashboard" ' +
      'aria-label="Copy command" title="Copy command">Copy</button>',
  );
  const table = render(ListTable, { columns: ["Name", "State"], actions: true }, h("tr", {}));
  assert.equal(
    table,
    '<table class="list"><thead><tr><th scope="col">Name</th><th scope="col">State</th>' +
      '<th scope="col"><span class="sr-only">Actions</span></th></tr></thead><tbody><tr></tr></tbody></table>',
  );
  assert.ok(!render(ListTable, { columns: ["Name"] }).includes("Actions"));
});

Deno.test("Pager shows the answered page's range and disables the way past either end", () => {
  const pager = (offset: number, total: number) =>
    render(Pager, { offset, size: 50, total, onPage: noop, what: "Endpoints" });
  assert.equal(
    pager(0, 0),
    '<div class="pager"><span class="range" aria-live="polite">0–0 of 0</span></div>',
  );
  assert.ok(!pager(0, 50).includes("<button"), "one page needs no buttons");
  const first = pager(0, 2000);
  assert.ok(first.includes('<nav class="pager" aria-label="Endpoints pages">'), first);
  assert.ok(first.includes(">1–50 of 2,000<"));
  assert.match(first, /<button type="button" disabled>← Previous<\/button>/);
  assert.match(first, /<button type="button">Next →<\/button>/);
  const last = pager(1950, 2000);
  assert.ok(last.includes(">1,951–2,000 of 2,000<"), last);
  assert.match(last, /<button type="button">← Previous<\/button>/);
  assert.match(last, /<button type="button" disabled>Next →<\/button>/);
});

Deno.test("relativeTime says how long ago or ahead, in the unit a person would use", () => {
  const now = Date.parse("2026-06-01T12:00:00Z");
  const at = (s: number) => relativeTime(now - s * 1000, now);
  assert.equal(at(0), "just now");
  assert.equal(at(44), "just now");
  assert.equal(at(-44), "just now");
  assert.equal(at(50), "1 min ago");
  assert.equal(at(180), "3 min ago");
  assert.equal(at(2 * 3600), "2 h ago");
  assert.equal(at(86_400), "1 day ago");
  assert.equal(at(-364 * 86_400), "in 364 days");
});

Deno.test("Time shows a local time with its zone and how long ago; a bad time as it came", () => {
  const iso = new Date(Date.now() - 3 * 60_000).toISOString();
  const html = render(Time, { iso });
  assert.match(
    html,
    new RegExp(
      `^<time datetime="${iso}">\\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d:\\d\\d \\S+ ` +
        '<span class="ago">\\(3 min ago\\)</span></time>$',
    ),
  );
  assert.equal(render(Time, { iso: "soon" }), "<span>soon</span>");
});

Deno.test("ConfirmButton first shows only its button, named for screen readers", () => {
  const html = render(ConfirmButton, {
    label: "Delete port 2222",
    text: "Delete",
    question: "Delete it?",
    yes: "Yes, delete",
    run: () => Promise.resolve(undefined),
  });
  assert.equal(
    html,
    '<button type="button" class="danger secondary small" aria-label="Delete port 2222">Delete</button>',
  );
  assert.ok(
    render(ConfirmButton, {
      label: "Leave",
      text: "Leave",
      question: "?",
      yes: "Yes",
      run: () => Promise.resolve(undefined),
      large: true,
    }).includes('class="danger secondary"'),
  );
});

/** A ConfirmButton whose action waits until the test settles it (`settle(refusal?)`). */
const CONFIRM_ENTRY = `
import { render } from "preact";
import { ConfirmButton } from "${uiModule("components.tsx")}";
const w = window as any;
w.runs = 0;
const run = () => {
  w.runs++;
  return new Promise<string | undefined>((resolve) => (w.settle = resolve));
};
render(
  <ConfirmButton label="Delete port 2222" text="Delete" question="Delete port 2222?"
    yes="Yes, delete" run={run} />,
  document.getElementById("root")!,
);
`;

Deno.test("ConfirmButton asks first, lands on Cancel, shows a refusal, and closes once done", async () => {
  await using s = await serveModulePage({ entry: CONFIRM_ENTRY });
  const page = await s.open("/");
  const ask = page.getByRole("button", { name: "Delete port 2222" });
  const question = page.getByRole("group", { name: "Confirm: Delete port 2222" });
  const yes = question.getByRole("button", { name: "Yes, delete" });
  const timeout = { timeout: 10_000 };

  await ask.click(timeout);
  await question.waitFor(timeout);
  assert.equal(await question.locator("p").textContent(), "Delete port 2222?");
  // Keyboard users land on the safe choice.
  await page.waitForFunction(() => document.activeElement?.textContent === "Cancel", null, timeout);
  await question.getByRole("button", { name: "Cancel" }).click(timeout);
  await ask.waitFor(timeout);
  assert.equal(await page.evaluate(() => (window as Win).runs), 0, "Cancel runs nothing");

  await ask.click(timeout);
  await yes.click(timeout);
  await page.waitForFunction(() => (window as Win).settle, null, timeout);
  assert.equal(await yes.isDisabled(), true, "no second run while one is out");
  await page.evaluate(() => (window as Win).settle("The agent refused: busy"));
  await question.getByRole("alert").waitFor(timeout);
  assert.equal(await question.getByRole("alert").textContent(), " The agent refused: busy");
  assert.equal(await yes.isDisabled(), false);

  await yes.click(timeout);
  await page.waitForFunction(() => (window as Win).runs === 2, null, timeout);
  await page.evaluate(() => (window as Win).settle(undefined));
  await ask.waitFor(timeout);
  assert.equal(await question.count(), 0);
  assert.deepEqual(s.browser.unexpectedErrors(), []);
});

// deno-lint-ignore no-explicit-any
type Win = any;
