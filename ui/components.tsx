/** @jsxImportSource preact */
/**
 * Small pieces every screen uses: labelled fields, the refusal box, online
 * badges, a pager, times. Every control gets a visible `<label>`, or an
 * `aria-label` where the text around it already says what it is.
 */
import type { ComponentChildren, JSX } from "preact";
import { useEffect, useRef, useState } from "preact/hooks";

/** A labelled input; extra props go to the `<input>`. */
export function Field(
  props: { id: string; label: string; hint?: string } & JSX.InputHTMLAttributes<HTMLInputElement>,
) {
  const { id, label, hint, ...input } = props;
  return (
    <div class="field">
      <label for={id}>{label}</label>
      <input id={id} aria-describedby={hint ? `${id}-hint` : undefined} {...input} />
      {hint && <small id={`${id}-hint`}>{hint}</small>}
    </div>
  );
}

/** The two names every join form asks for: the mesh (as this machine calls it) and this endpoint. */
export function MeshAndEndpointFields(props: {
  /** Prefix of the inputs' ids (`{prefix}-mesh`, `{prefix}-endpoint`). */
  prefix: string;
  meshLabel: string;
  endpointLabel: string;
  mesh: string;
  endpointName: string;
  onMesh: (value: string) => void;
  onEndpointName: (value: string) => void;
}) {
  return (
    <div class="grid2">
      <Field
        id={`${props.prefix}-mesh`}
        label={props.meshLabel}
        hint="Your name for this mesh on this machine, e.g. work"
        value={props.mesh}
        required
        autocomplete="off"
        onInput={(e) => props.onMesh(e.currentTarget.value)}
      />
      <Field
        id={`${props.prefix}-endpoint`}
        label={props.endpointLabel}
        hint="How this machine appears to others in the mesh"
        value={props.endpointName}
        autocomplete="off"
        onInput={(e) => props.onEndpointName(e.currentTarget.value)}
      />
    </div>
  );
}

/** A refusal or failure, announced to screen readers. Renders nothing without a message. */
export function ErrorBox(props: { message?: string; title?: string }) {
  if (!props.message) return null;
  return (
    <div class="error" role="alert">
      {props.title && <strong>{props.title}:</strong>} {props.message}
    </div>
  );
}

/** A short confirmation of a change. */
export function Notice(props: { message?: string }) {
  if (!props.message) return null;
  return <div class="notice" role="status">{props.message}</div>;
}

/** Online / offline badge. */
export function OnlineBadge(props: { online: boolean; onText?: string; offText?: string }) {
  return (
    <span class={props.online ? "badge on" : "badge off"}>
      {props.online ? (props.onText ?? "online") : (props.offText ?? "offline")}
    </span>
  );
}

/** A titled block of a screen. */
export function Section(props: { title: string; children: ComponentChildren; id?: string }) {
  const headingId = `${props.id ?? slug(props.title)}-title`;
  return (
    <section class="card" id={props.id} aria-labelledby={headingId}>
      <h2 id={headingId}>{props.title}</h2>
      {props.children}
    </section>
  );
}

/**
 * "1–50 of 2,000" with previous/next buttons, for the page that was answered
 * (`offset` from the answer, so the numbers never run ahead of the rows shown);
 * pages count from 1.
 */
export function Pager(
  props: {
    offset: number;
    size: number;
    total: number;
    onPage: (page: number) => void;
    what: string;
  },
) {
  const { size, total } = props;
  const page = Math.floor(props.offset / size) + 1;
  const pages = Math.max(1, Math.ceil(total / size));
  const first = total === 0 ? 0 : (page - 1) * size + 1;
  const last = Math.min(total, page * size);
  const range = (
    <span class="range" aria-live="polite">
      {first.toLocaleString("en")}–{last.toLocaleString("en")} of {total.toLocaleString("en")}
    </span>
  );
  if (pages === 1 && page === 1) return <div class="pager">{range}</div>;
  return (
    <nav class="pager" aria-label={`${props.what} pages`}>
      <button type="button" disabled={page <= 1} onClick={() => props.onPage(page - 1)}>
        ← Previous
      </button>
      {range}
      <button type="button" disabled={page >= pages} onClick={() => props.onPage(page + 1)}>
        Next →
      </button>
    </nav>
  );
}

/**
 * A time in the browser's time zone with the zone's name and how long ago
 * (or ahead) it is: `2026-11-25 10:44:37 UTC (3 min ago)`; the ISO time is in
 * `datetime`. Screens re-render as they poll, so "ago" stays current.
 */
export function Time(props: { iso: string }) {
  const d = new Date(props.iso);
  if (Number.isNaN(d.getTime())) return <span>{props.iso}</span>;
  const pad = (n: number) => String(n).padStart(2, "0");
  const zone = new Intl.DateTimeFormat("en", { timeZoneName: "short" }).formatToParts(d)
    .find((p) => p.type === "timeZoneName")?.value ?? "";
  const text = `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())} ${zone}`;
  return (
    <time dateTime={props.iso}>
      {text} <span class="ago">({relativeTime(d.getTime(), Date.now())})</span>
    </time>
  );
}

/** `3 min ago`, `just now`, `in 364 days`. */
export function relativeTime(at: number, now: number): string {
  const s = Math.round((now - at) / 1000);
  const abs = Math.abs(s);
  if (abs < 45) return "just now";
  const [n, unit] = abs < 3600
    ? [Math.max(1, Math.round(abs / 60)), "min"]
    : abs < 86_400
    ? [Math.round(abs / 3600), "h"]
    : [Math.round(abs / 86_400), "day"];
  const amount = unit === "day" ? `${n} day${n === 1 ? "" : "s"}` : `${n} ${unit}`;
  return s > 0 ? `${amount} ago` : `in ${amount}`;
}

/**
 * A button that copies `text` to the clipboard (the bundle's one click
 * handler does it, so it also works on pages without the app island).
 */
export function CopyButton(props: { text: string; what: string }) {
  return (
    <button
      type="button"
      class="copy secondary small"
      data-copy={props.text}
      aria-label={`Copy ${props.what}`}
      title={`Copy ${props.what}`}
    >
      Copy
    </button>
  );
}

/**
 * A button whose action asks first: the question with "Yes, …" and Cancel
 * (focused, the safe choice), and the refusal next to it if the action fails.
 */
export function ConfirmButton(
  props: {
    label: string;
    text: string;
    question: ComponentChildren;
    yes: string;
    run: () => Promise<string | undefined>;
    /** The question's name for screen readers; `Confirm: {label}` when not given. */
    confirmLabel?: string;
    /** Full-size buttons (a screen's main action) rather than a table row's small ones. */
    large?: boolean;
  },
) {
  const size = props.large ? "" : " small";
  const [asking, setAsking] = useState(false);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string>();
  const cancel = useRef<HTMLButtonElement>(null);
  useEffect(() => {
    // Keyboard users land on the safe choice when the question appears.
    if (asking) cancel.current?.focus();
  }, [asking]);
  if (!asking) {
    return (
      <button
        type="button"
        class={`danger secondary${size}`}
        aria-label={props.label}
        onClick={() => setAsking(true)}
      >
        {props.text}
      </button>
    );
  }
  return (
    <div class="confirm" role="group" aria-label={props.confirmLabel ?? `Confirm: ${props.label}`}>
      <p>{props.question}</p>
      <button
        type="button"
        class={`danger${size}`}
        disabled={busy}
        onClick={async () => {
          setBusy(true);
          const failed = await props.run();
          setBusy(false);
          setError(failed);
          if (!failed) {
            setAsking(false);
          }
        }}
      >
        {props.yes}
      </button>
      <button
        ref={cancel}
        type="button"
        class={`secondary${size}`}
        onClick={() => {
          setAsking(false);
          setError(undefined);
        }}
      >
        Cancel
      </button>
      <ErrorBox message={error} />
    </div>
  );
}

/** A warning: something was done but will not work yet. */
export function WarningBox(props: { message?: string }) {
  if (!props.message) return null;
  return <div class="warning" role="status">{props.message}</div>;
}

function slug(s: string): string {
  return s.toLowerCase().replace(/[^a-z0-9]+/g, "-");
}

/**
 * A list as a table with `columns` as headers (plus an unlabelled actions
 * column with `actions`); on narrow screens the CSS stacks each row, labelled
 * by its cells' `data-label`.
 */
export function ListTable(
  props: { columns: string[]; actions?: boolean; children: ComponentChildren },
) {
  return (
    <table class="list">
      <thead>
        <tr>
          {props.columns.map((c) => <th key={c} scope="col">{c}</th>)}
          {props.actions && (
            <th scope="col">
              <span class="sr-only">Actions</span>
            </th>
          )}
        </tr>
      </thead>
      <tbody>{props.children}</tbody>
    </table>
  );
}
