/** @jsxImportSource preact */
/**
 * The small forms of the endpoint screen: a grid of labelled text fields
 * driven by a list of specs, and the state of one form (its values, and the
 * refusal or confirmation of its last submit, shown under the fields).
 */
import { useState } from "preact/hooks";
import { ErrorBox, Field, Notice } from "./components.tsx";

/** One text field of a form. */
export interface FieldSpec {
  key: string;
  label: string;
  hint?: string;
  placeholder?: string;
  numeric?: boolean;
}

/** A form's values and the outcome of its last submit. */
export interface FormState {
  values: Record<string, string>;
  set: (key: string, value: string) => void;
  error?: string;
  done?: string;
  /** Clears the last outcome (call when a submit starts). */
  start: () => void;
  fail: (message: string) => void;
  /** Shows `message` and resets the fields in `reset`. */
  succeed: (message: string, reset?: Record<string, string>) => void;
}

/** State for a form with `initial` values. */
export function useFormState(initial: Record<string, string>): FormState {
  const [values, setValues] = useState(initial);
  const [error, setError] = useState<string>();
  const [done, setDone] = useState<string>();
  return {
    values,
    set: (key, value) => setValues((v) => ({ ...v, [key]: value })),
    error,
    done,
    start: () => {
      setError(undefined);
      setDone(undefined);
    },
    fail: setError,
    succeed: (message, reset = {}) => {
      setDone(message);
      setValues((v) => ({ ...v, ...reset }));
    },
  };
}

/** The fields of `fields` in a responsive grid, then the form's outcome. */
export function FieldGrid(props: { idPrefix: string; fields: FieldSpec[]; form: FormState }) {
  const { form } = props;
  return (
    <>
      <div class="grid4">
        {props.fields.map((f) => (
          <Field
            key={f.key}
            id={`${props.idPrefix}-${f.key}`}
            label={f.label}
            hint={f.hint}
            placeholder={f.placeholder}
            inputMode={f.numeric ? "numeric" : undefined}
            value={form.values[f.key]}
            autocomplete="off"
            onInput={(e) => form.set(f.key, e.currentTarget.value)}
          />
        ))}
      </div>
      <ErrorBox message={form.error} />
      <Notice message={form.done} />
    </>
  );
}
