/** @jsxImportSource preact */
/**
 * Small pieces every screen uses: labelled fields, the refusal box, online
 * badges, a pager, times. Every control gets a visible `<label>`, or an
 * `aria-label` where the text around it already says what it is.
 */
import type { ComponentChildren, JSX } from "preact";

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

/** A time in the browser's time zone, `2026-11-25 10:44:37`, with the ISO time in `datetime`. */
export function Time(props: { iso: string }) {
  const d = new Date(props.iso);
  if (Number.isNaN(d.getTime())) return <span>{props.iso}</span>;
  const pad = (n: number) => String(n).padStart(2, "0");
  const text = `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  return <time dateTime={props.iso}>{text}</time>;
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
