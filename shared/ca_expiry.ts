/**
 * When a mesh CA's own certificate is close to its end: the CA, the agent
 * (which holds its mesh's CA certificate) and the dashboard all say so a year
 * ahead, in the same words, so an operator has a year to rotate it (SECURITY.md,
 * "How to rotate the CA"). Deciding and rendering only; the rotation itself is the
 * operator's.
 *
 * @example
 * ```ts
 * const expiry = caExpiry(caCertificate.notAfter, Date.now());
 * if (expiry.warning) console.log(expiry.warning);
 * ```
 *
 * @module
 */

/** How far ahead of the CA certificate's end the warning starts: 365 days. */
export const CA_EXPIRY_WARNING_MS = 365 * 86_400_000;

/** The CA certificate's end as the status APIs show it. */
export interface CaExpiry {
  /** ISO time the CA certificate stops being valid. */
  notAfter: string;
  /** Whole days left (negative once past). */
  daysLeft: number;
  /** A plain-words warning when under {@link CA_EXPIRY_WARNING_MS} is left; null otherwise. */
  warning: string | null;
}

/** Where a CA certificate ending at `notAfter` stands at `now` (ms). Never throws. */
export function caExpiry(notAfter: Date, now: number): CaExpiry {
  const left = notAfter.getTime() - now;
  const daysLeft = Math.floor(left / 86_400_000);
  const date = notAfter.toISOString().slice(0, 10);
  let warning: string | null = null;
  if (left <= 0) {
    warning = `The mesh CA's certificate expired on ${date}: no certificate it issued is ` +
      "accepted any more; rotate the CA (SECURITY.md, How to rotate the CA)";
  } else if (left < CA_EXPIRY_WARNING_MS) {
    warning =
      `The mesh CA's certificate expires on ${date} (in ${daysLeft} day${
        daysLeft === 1 ? "" : "s"
      }): every certificate of the mesh stops working then unless the CA is rotated before ` +
      "(SECURITY.md, How to rotate the CA)";
  }
  return { notAfter: notAfter.toISOString(), daysLeft, warning };
}
